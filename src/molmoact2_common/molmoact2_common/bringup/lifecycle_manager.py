"""A small lifecycle manager (PyPI ROS has none, and launch_ros does not transition lifecycle
nodes by itself): configures and activates a graph's lifecycle nodes in order, says which node
failed and why, arms the drivers only when each one reports a simulated backend, watches the
managed nodes once they are up (``NodeWatch``: a node that dies or leaves the active state makes
the others hold), and tears everything down in reverse."""

from __future__ import annotations

import time
from collections.abc import Callable

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Log, ParameterType
from rcl_interfaces.srv import GetParameters
from rclpy.node import Node
from std_srvs.srv import Trigger

from .. import qos
from .graph import GraphError, NodeSpec, resolve_arm_backend


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

    def driver_backend(self, fqn: str) -> tuple[str, bool]:
        """(type, simulated) of the backend a running driver builds, from its own parameters."""
        names = ["embodiment", "arm", "backend", "backend_options"]
        reply = self._call(GetParameters, f"{fqn}/get_parameters", GetParameters.Request(names=names), self.service_timeout)
        values = {n: (v.string_value if v.type == ParameterType.PARAMETER_STRING else "") for n, v in zip(names, reply.values)}
        if not values["embodiment"]:
            raise GraphError("it declares no 'embodiment' parameter")
        return resolve_arm_backend(values["embodiment"], values["arm"], values["backend"], values["backend_options"])

    def real_backends(self, specs: list[NodeSpec]) -> list[str]:
        """The arm drivers that are not verified simulated (asked, not assumed), with why."""
        real = []
        for spec in specs:
            if not spec.arm_driver:
                continue
            fqn = spec.fully_qualified_name
            try:
                kind, simulated = self.driver_backend(fqn)
            except (GraphError, TimeoutError) as exc:
                real.append(f"{fqn} (its backend could not be checked: {exc})")
                continue
            if not simulated:
                real.append(f"{fqn} (backend {kind or 'unknown'} drives real hardware)")
        return real

    def start_arms(self, specs: list[NodeSpec]) -> bool:
        """'start' for every arm driver, only when every one reports a simulated backend (its own
        parameters, resolved as the driver does); otherwise none is started: each holds until
        the operator starts it. Returns whether they were started."""
        real = self.real_backends(specs)
        if real:
            self.log(f"[bringup] not arming automatically: {'; '.join(real)}; each driver holds until the operator starts it")
            return False
        for spec in specs:
            if not spec.arm_driver:
                continue
            reply = self._call(Trigger, f"{spec.fully_qualified_name}/start", Trigger.Request(), self.service_timeout)
            if not reply.success:
                raise BringUpError(spec.fully_qualified_name, "start", reply.message)
            self.log(f"[bringup] started {spec.fully_qualified_name}: {reply.message}")
        return True

    def hold_others(self, specs: list[NodeSpec], lost: set[str]) -> list[str]:
        """Deactivate every managed node but ``lost``, in reverse order (drivers first: they stop
        executing and hold with torque on). Best effort; returns problems."""
        problems = []
        for spec in sorted(specs, key=lambda s: s.lifecycle_order, reverse=True):
            fqn = spec.fully_qualified_name
            if fqn in lost:
                continue
            try:
                if self.state(fqn) == "active":
                    self._transition(fqn, Transition.TRANSITION_DEACTIVATE, "deactivate")
                    self.log(f"[bringup] deactivated {fqn}: it holds")
            except (BringUpError, TimeoutError) as exc:
                problems.append(f"{fqn}: {exc}")
        return problems

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


class RosoutReasons:
    """The last errors each node logged, read from /rosout: what a node said when it refused a
    transition, for a manager that does not own the node's log (under ``ros2 launch``)."""

    def __init__(self, node: Node, keep: int = 3) -> None:
        self.keep = keep
        self.errors: dict[str, list[str]] = {}
        self._sub = node.create_subscription(Log, "/rosout", self._on_log, qos.ROSOUT)

    def _on_log(self, msg: Log) -> None:
        if msg.level >= Log.ERROR:
            errors = self.errors.setdefault(msg.name, [])
            errors.append(msg.msg)
            del errors[:-self.keep]

    @staticmethod
    def logger_name(fqn: str) -> str:
        return fqn.strip("/").replace("/", ".")

    def reason_for(self, fqn: str) -> str:
        return " | ".join(self.errors.get(self.logger_name(fqn), []))


class NodeWatch:
    """A heartbeat on the managed nodes once they are up (the role of nav2's bond): every
    ``period_s`` each node is asked its state; a node that leaves the ROS graph, whose get_state
    service is gone, that gives no answer within ``timeout_s``, or that is no longer active is
    lost. ``poll()`` is non-blocking (call it from the spin loop) and returns newly lost nodes with
    the reason."""

    def __init__(self, manager: LifecycleManager, specs: list[NodeSpec], period_s: float = 1.0,
                 timeout_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.manager = manager
        self.specs = list(specs)
        self.period_s = period_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.lost: dict[str, str] = {}
        self._pending: dict[str, tuple[object, float]] = {}
        self._seen_in_graph: set[str] = set()
        self._service_seen: set[str] = set()
        self._due = self._started = clock()

    def _in_graph(self) -> set[str]:
        return {f"{ns.rstrip('/')}/{name}" for name, ns in self.manager.node.get_node_names_and_namespaces()}

    def poll(self) -> list[tuple[str, str]]:
        now = self.clock()
        newly: list[tuple[str, str]] = []

        def lose(fqn: str, why: str) -> None:
            self.lost[fqn] = why
            self._pending.pop(fqn, None)
            newly.append((fqn, why))

        for fqn, (future, sent) in list(self._pending.items()):
            if future.done():
                del self._pending[fqn]
                reply = future.result()
                if reply is None:
                    lose(fqn, "its get_state call failed")
                elif reply.current_state.id != State.PRIMARY_STATE_ACTIVE:
                    label = _LABELS.get(reply.current_state.id, reply.current_state.label)
                    lose(fqn, f"it left the active state (now {label})")
            elif now - sent > self.timeout_s:
                lose(fqn, f"no answer to get_state within {self.timeout_s:g} s (the process died or hangs)")
        if now >= self._due:
            self._due = now + self.period_s
            present = self._in_graph()
            for spec in self.specs:
                fqn = spec.fully_qualified_name
                if fqn in self.lost or fqn in self._pending:
                    continue
                # graph and service discovery lag behind the bring-up's own calls: a node counts
                # as gone only once it had been seen
                if fqn in present:
                    self._seen_in_graph.add(fqn)
                elif fqn in self._seen_in_graph:
                    lose(fqn, "it left the ROS graph (the process exited)")
                    continue
                client = self.manager._client(GetState, f"{fqn}/get_state")
                if client.service_is_ready():
                    self._service_seen.add(fqn)
                elif fqn in self._service_seen:
                    lose(fqn, "its get_state service is gone")
                    continue
                elif now - self._started > self.timeout_s:
                    lose(fqn, f"its get_state service did not appear within {self.timeout_s:g} s")
                    continue
                else:
                    continue  # not matched yet
                self._pending[fqn] = (client.call_async(GetState.Request()), now)
        return newly
