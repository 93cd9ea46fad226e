"""The lifecycle manager as a process, for ``ros2 launch`` (launch_ros does not transition
lifecycle nodes by itself): brings the named nodes up in order, arms them in simulation, stays
alive, and tears them down in reverse when it is stopped.

    lifecycle_manager --ros-args -p nodes:="['/robot/policy', '/robot/left/driver']" \
        -p arm_drivers:="['/robot/left/driver']" -p autostart_arms:=true
"""

from __future__ import annotations

import sys
import time

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from ..params import ParamSpec, declare_parameters
from .graph import NodeSpec
from .lifecycle_manager import BringUpError, LifecycleManager

PARAMS = [
    ParamSpec("nodes", "str[]", [], "fully qualified lifecycle node names, in bring-up order"),
    ParamSpec("arm_drivers", "str[]", [], "which of them are arm drivers (get 'start' when autostart_arms)"),
    ParamSpec("autostart_arms", bool, False, "call each arm driver's start service after activation (simulation only)"),
    ParamSpec("transition_timeout_s", float, 120.0, "longest a configure/activate may take (model loading)",
              check=lambda v: v > 0, requirement="> 0"),
]


def _specs(names: list[str], arm_drivers: list[str]) -> list[NodeSpec]:
    specs = []
    for order, fqn in enumerate(names):
        ns, _, name = fqn.rpartition("/")
        specs.append(NodeSpec(name=name, package="", executable="", namespace=ns, lifecycle=True,
                              lifecycle_order=order, arm_driver=fqn in arm_drivers))
    return specs


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args if args is not None else sys.argv)
    node = rclpy.create_node("lifecycle_manager")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    log = node.get_logger()

    def spin_until(pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and rclpy.ok():
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
        manager = LifecycleManager(node, spin_until, transition_timeout=p["transition_timeout_s"], log=log.info)
        manager.bring_up(specs)
        if p["autostart_arms"]:
            manager.start_arms(specs)
        else:
            for s in specs:
                if s.arm_driver:
                    log.info(f"{s.fully_qualified_name} holds until the operator starts it: "
                             f"ros2 service call {s.fully_qualified_name}/start std_srvs/srv/Trigger")
        log.info("graph is up")
        executor.spin()
    except BringUpError as exc:
        log.error(str(exc))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if manager is not None and specs and rclpy.ok():
            for problem in manager.tear_down(specs):
                log.warning(f"tear-down: {problem}")
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
