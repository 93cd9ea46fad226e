"""The lifecycle node base class every lifecycle node of the stack derives from."""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn


class StackLifecycleNode(LifecycleNode):
    """A LifecycleNode whose ``destroy_node`` also destroys its lifecycle state machine.

    rclpy (Jazzy, Kilted) leaves the state machine alive after ``destroy_node``: its
    ``change_state``/``get_state`` services outlive the node under the node's name until the Python
    object is collected, so a lifecycle manager (or a later node of the same name) can end up
    talking to a dead node's services.
    """

    def destroy_node(self):
        state_machine = getattr(self, "_state_machine", None)
        result = super().destroy_node()
        if state_machine is not None:
            state_machine.destroy_when_not_in_use()
        return result

    def schedule_autostart(self, mode: str, clock=None) -> None:
        """Run ``configure`` (and ``activate`` when mode is 'activate') once spinning starts, for
        nodes started without a lifecycle manager; 'none' leaves the node unconfigured."""
        if mode == "none":
            return

        def once() -> None:
            self.destroy_timer(timer)
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS and mode == "activate":
                self.trigger_activate()

        timer = self.create_timer(0.0, once, clock=clock)
