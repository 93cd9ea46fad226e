"""The lifecycle manager as a process, for ``ros2 launch`` (launch_ros does not transition
lifecycle nodes by itself): brings the named nodes up in order (a refusal exits 1 with the node's
own error, read from /rosout), arms the drivers only when each reports a simulated backend, stays
alive watching the nodes (one that dies or leaves the active state makes the others deactivate:
the drivers hold), and on SIGINT (its own handler: under ``ros2 launch`` every node gets it at
once, and they wait for it) tears them down in reverse: deactivate -> cleanup -> shutdown.

    lifecycle_manager --ros-args -p nodes:="['/robot/policy', '/robot/left/driver']" \
        -p arm_drivers:="['/robot/left/driver']" -p autostart_arms:=true
"""

from __future__ import annotations

import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from ..node_main import init_with_own_signals
from ..params import ParamSpec, declare_parameters
from .graph import NodeSpec
from .lifecycle_manager import BringUpError, LifecycleManager, NodeWatch, RosoutReasons

PARAMS = [
    ParamSpec("nodes", "str[]", [], "fully qualified lifecycle node names, in bring-up order"),
    ParamSpec("arm_drivers", "str[]", [], "which of them are arm drivers (get 'start' when autostart_arms)"),
    ParamSpec("autostart_arms", bool, False, "call each arm driver's start service after activation, only if every "
              "driver reports a simulated backend (its own parameters, checked before any start)"),
    ParamSpec("transition_timeout_s", float, 120.0, "longest a configure/activate may take (model loading)",
              check=lambda v: v > 0, requirement="> 0"),
    ParamSpec("heartbeat_period_s", float, 1.0, "how often each managed node is asked its state once the graph is up",
              check=lambda v: v > 0, requirement="> 0"),
    ParamSpec("heartbeat_timeout_s", float, 5.0, "a managed node that gives no answer for this long is lost: the others are deactivated",
              check=lambda v: v > 0, requirement="> 0"),
]


def _specs(names: list[str], arm_drivers: list[str]) -> list[NodeSpec]:
    specs = []
    for order, fqn in enumerate(names):
        ns, _, name = fqn.rpartition("/")
        specs.append(NodeSpec(name=name, package="", executable="", namespace=ns, lifecycle=True,
                              lifecycle_order=order, arm_driver=fqn in arm_drivers))
    return specs


class _Interrupted(Exception):
    """SIGINT/SIGTERM during bring-up: stop bringing up, tear down what is up."""


def main(args: list[str] | None = None) -> int:
    signals = init_with_own_signals(args)
    node = rclpy.create_node("lifecycle_manager")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    log = node.get_logger()
    state = {"tearing_down": False}

    def spin_until(pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and rclpy.ok():
            if signals.requested and not state["tearing_down"]:
                raise _Interrupted()
            if signals.urgent:
                break
            if pred():
                return True
            executor.spin_once(timeout_sec=0.05)
        return pred()

    specs: list[NodeSpec] = []
    manager = None
    code = 0
    try:
        p = declare_parameters(node, PARAMS)
        specs = _specs(p["nodes"], p["arm_drivers"])
        reasons = RosoutReasons(node)

        def reason_for(fqn: str) -> str:
            # the node logs its refusal as it returns FAILURE; give /rosout a moment to deliver it
            spin_until(lambda: bool(reasons.reason_for(fqn)), 2.0)
            return reasons.reason_for(fqn)

        manager = LifecycleManager(node, spin_until, reason_for=reason_for,
                                   transition_timeout=p["transition_timeout_s"], log=log.info)
        manager.bring_up(specs)
        if not (p["autostart_arms"] and manager.start_arms(specs)):
            for s in specs:
                if s.arm_driver:
                    log.info(f"{s.fully_qualified_name} holds until the operator starts it: "
                             f"ros2 service call {s.fully_qualified_name}/start std_srvs/srv/Trigger")
        log.info("graph is up")
        watch = NodeWatch(manager, specs, period_s=p["heartbeat_period_s"], timeout_s=p["heartbeat_timeout_s"])
        while rclpy.ok() and not signals.requested:
            lost = watch.poll()
            if lost:
                for fqn, why in lost:
                    log.error(f"managed node {fqn} is lost: {why}; the other nodes are deactivated (the drivers hold)")
                state["tearing_down"] = True
                for problem in manager.hold_others(specs, set(watch.lost)):
                    log.warning(f"hold: {problem}")
                state["tearing_down"] = False
                watch.specs = []  # the graph holds until it is stopped; nothing is re-activated
                log.error("the graph holds: stop the launch and start it again")
            executor.spin_once(timeout_sec=0.1)
    except BringUpError as exc:
        log.error(str(exc))
        code = 1
    except (_Interrupted, KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        state["tearing_down"] = True
        if signals.requested:
            log.info(f"{signals.last}: tearing the graph down in reverse order")
        if manager is not None and specs and rclpy.ok():
            try:
                for problem in manager.tear_down(specs):
                    log.warning(f"tear-down: {problem}")
            except KeyboardInterrupt:
                log.warning("tear-down interrupted; the nodes finish it themselves")
        node.destroy_node()
        rclpy.try_shutdown()
        signals.ignore_from_now()
    return code


if __name__ == "__main__":
    sys.exit(main())
