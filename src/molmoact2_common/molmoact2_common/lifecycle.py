"""The lifecycle node base class every lifecycle node of the stack derives from."""

from __future__ import annotations

import time
from collections.abc import Callable

from lifecycle_msgs.msg import State
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

#: how long a managed node, asked to stop, keeps spinning (and holding) for its lifecycle
#: manager's ordered tear-down before doing it itself; under ``ros2 launch`` the SIGINT -> SIGTERM
#: escalation of lifecycle nodes is longer (bringup/launch_mapping.py)
MANAGED_STOP_GRACE_S = 8.0


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

    def lifecycle_state(self) -> int:
        """The primary (or transition) state id, lifecycle_msgs/State."""
        return int(self._state_machine.current_state[0])

    def managed(self) -> bool:
        """Whether a lifecycle manager (a node named ``*lifecycle_manager``: the stack's manager
        under ``ros2 launch`` or ``molmoact2-run``) runs and holds a client of this node's
        change_state service. A test or a CLI calling change_state is no manager to wait for."""
        try:
            if self.count_clients(f"{self.get_fully_qualified_name().rstrip('/')}/change_state") == 0:
                return False
            return any(name.endswith("lifecycle_manager") for name, _ in self.get_node_names_and_namespaces())
        except Exception:  # the context is already gone
            return False

    def stop_in_order(self, spin_once: Callable[[float], None], abort: Callable[[], bool] = lambda: False,
                      grace_s: float = MANAGED_STOP_GRACE_S) -> None:
        """The end of the process, after SIGINT (every node of a ``ros2 launch`` gets it at once).

        A node a manager brought up keeps spinning for up to ``grace_s``, still holding, while the
        manager deactivates, cleans up and shuts the graph down in reverse order; then (or when no
        manager drives it, or ``abort()`` turns true: a second signal) it runs whatever is left of
        deactivate -> cleanup -> shutdown itself. The context stays valid throughout, so nothing
        publishes into a dead one.
        """
        busy = (State.PRIMARY_STATE_INACTIVE, State.PRIMARY_STATE_ACTIVE, State.TRANSITION_STATE_CONFIGURING,
                State.TRANSITION_STATE_ACTIVATING, State.TRANSITION_STATE_DEACTIVATING, State.TRANSITION_STATE_CLEANINGUP,
                State.TRANSITION_STATE_SHUTTINGDOWN)
        if self.lifecycle_state() in busy and self.managed():
            end = time.monotonic() + grace_s
            while (time.monotonic() < end and not abort() and self.managed()
                   and self.lifecycle_state() != State.PRIMARY_STATE_FINALIZED):
                spin_once(0.05)
        for state, trigger in ((State.PRIMARY_STATE_ACTIVE, self.trigger_deactivate),
                               (State.PRIMARY_STATE_INACTIVE, self.trigger_cleanup),
                               (State.PRIMARY_STATE_UNCONFIGURED, self.trigger_shutdown)):
            if self.lifecycle_state() == state:
                try:
                    trigger()
                except Exception as exc:  # never mask the shutdown path
                    self.get_logger().warning(f"stopping: {exc}")

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
