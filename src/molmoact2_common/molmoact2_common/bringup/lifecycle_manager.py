"""A small lifecycle manager (PyPI ROS has none, and launch_ros does not transition lifecycle
nodes by itself): configures and activates a graph's lifecycle nodes in order, says which node
failed and why, and tears everything down in reverse."""

from __future__ import annotations

import time
from collections.abc import Callable

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.node import Node
from std_srvs.srv import Trigger

from .graph import NodeSpec


class BringUpError(RuntimeError):
    def __init__(self, node: str, step: str, reason: str) -> None:
        super().__init__(f"bring-up failed at node {node} ({step}): {reason}")
        self.node = node
        self.step = step
        self.reason = reason


_LABELS = {
    State.PRIMARY_STATE_UNKNOWN: "unknown",
    State.PRIMARY_STATE_UNCONFIGURED: "unconfigured",
    State.PRIMARY_STATE_INACTIVE: "inactive",
    State.PRIMARY_STATE_ACTIVE: "active",
    State.PRIMARY_STATE_FINALIZED: "finalized",
}


class LifecycleManager:
    """Drives lifecycle nodes through ChangeState/GetState services of ``manager_node``.

    ``spin_until(predicate, timeout)`` is supplied by the caller (it spins the executor that owns
    ``manager_node``); ``reason_for(fqn)`` returns what a failed node said (e.g. its log tail).
    """

    def __init__(self, manager_node: Node, spin_until: Callable[[Callable[[], bool], float], bool],
                 reason_for: Callable[[str], str] = lambda fqn: "", service_timeout: float = 20.0,
                 transition_timeout: float = 120.0, log: Callable[[str], None] = print) -> None:
        self.node = manager_node
        self.spin_until = spin_until
        self.reason_for = reason_for
        self.service_timeout = service_timeout
        self.transition_timeout = transition_timeout
        self.log = log
        self._clients: dict[tuple[str, str], object] = {}

    def _client(self, srv_type, name: str):
        key = (srv_type.__name__, name)
        if key not in self._clients:
            self._clients[key] = self.node.create_client(srv_type, name)
        return self._clients[key]

    def _call(self, srv_type, name: str, request, timeout: float):
        client = self._client(srv_type, name)
        if not self.spin_until(client.service_is_ready, self.service_timeout):
            raise TimeoutError(f"service {name} not available after {self.service_timeout:.0f} s")
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout):
            raise TimeoutError(f"service {name} gave no answer within {timeout:.0f} s")
        return future.result()

    def state(self, fqn: str) -> str:
        reply = self._call(GetState, f"{fqn}/get_state", GetState.Request(), self.service_timeout)
        return _LABELS.get(reply.current_state.id, reply.current_state.label)

    def _transition(self, fqn: str, transition_id: int, step: str) -> None:
        try:
            reply = self._call(ChangeState, f"{fqn}/change_state",
                               ChangeState.Request(transition=Transition(id=transition_id)), self.transition_timeout)
        except TimeoutError as exc:
            raise BringUpError(fqn, step, f"{exc}. {self.reason_for(fqn)}".strip()) from None
        if not reply.success:
            raise BringUpError(fqn, step, self.reason_for(fqn) or "the node refused the transition")

    def bring_up(self, specs: list[NodeSpec]) -> None:
        """Configure all, in order, then activate all, in order. Raises BringUpError."""
        ordered = sorted(specs, key=lambda s: s.lifecycle_order)
        for spec in ordered:
            self.log(f"[bringup] configure {spec.fully_qualified_name}")
            self._transition(spec.fully_qualified_name, Transition.TRANSITION_CONFIGURE, "configure")
        for spec in ordered:
            self.log(f"[bringup] activate {spec.fully_qualified_name}")
            self._transition(spec.fully_qualified_name, Transition.TRANSITION_ACTIVATE, "activate")

    def start_arms(self, specs: list[NodeSpec]) -> None:
        """Operator 'start' for every arm driver (automatic in simulation only)."""
        for spec in specs:
            if not spec.arm_driver:
                continue
            reply = self._call(Trigger, f"{spec.fully_qualified_name}/start", Trigger.Request(), self.service_timeout)
            if not reply.success:
                raise BringUpError(spec.fully_qualified_name, "start", reply.message)
            self.log(f"[bringup] started {spec.fully_qualified_name}: {reply.message}")

    def tear_down(self, specs: list[NodeSpec], deadline_s: float = 20.0) -> list[str]:
        """Deactivate, clean up and shut down in reverse order; best effort. Returns problems."""
        problems = []
        end = time.monotonic() + deadline_s
        for spec in sorted(specs, key=lambda s: s.lifecycle_order, reverse=True):
            fqn = spec.fully_qualified_name
            try:
                state = self.state(fqn)
                if state == "active":
                    self._transition(fqn, Transition.TRANSITION_DEACTIVATE, "deactivate")
                    state = "inactive"
                if state == "inactive":
                    self._transition(fqn, Transition.TRANSITION_CLEANUP, "cleanup")
                    state = "unconfigured"
                if state == "unconfigured":
                    self._transition(fqn, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN, "shutdown")
            except (BringUpError, TimeoutError) as exc:
                problems.append(f"{fqn}: {exc}")
            if time.monotonic() > end:
                problems.append("tear-down deadline passed; remaining nodes are stopped by signal")
                break
        return problems
