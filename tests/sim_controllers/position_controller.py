"""A simulated ros2_control arm for bridge tests over real DDS.

It behaves like a ros2_control hardware + controller pair seen from outside: a forward position
controller (``<controller>/commands``, std_msgs/Float64MultiArray; a message with the wrong number
of values is ignored with an error, as forward_command_controller does) and a
JointTrajectoryController (``<controller>/joint_trajectory``), a joint_state_broadcaster
(``/joint_states``, reliable) at ``--rate`` Hz, and joints that move towards their command with a
first-order lag. ``--stop-after N`` stops publishing joint states after N messages (a driver that
dies). Every received command is appended, with its monotonic receive time, to ``--log`` (for
backend-side latency measurements).

  python tests/sim_controllers/position_controller.py --controller fr3_arm_controller \
      --joints j1,j2 [--initial 0,0] [--rate 200] [--tau 0.02] [--log FILE] [--stop-after N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory


class SimController(Node):
    def __init__(self, controller: str, joints: list[str], rate: float, tau: float, log: str, stop_after: int,
                 initial: list[float] | None = None) -> None:
        super().__init__("sim_ros2_control")
        self.joints = joints
        self.q = np.zeros(len(joints)) if not initial else np.asarray(initial, dtype=np.float64)
        self.target = self.q.copy()
        self.tau = tau
        self.dt = 1.0 / rate
        self.log = open(log, "a") if log else None
        self.stop_after = stop_after
        self.published = 0
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.js_pub = self.create_publisher(JointState, "/joint_states", qos)
        self.create_subscription(Float64MultiArray, f"/{controller}/commands", self._on_commands, qos)
        self.create_subscription(JointTrajectory, f"/{controller}/joint_trajectory", self._on_trajectory, qos)
        self.create_timer(self.dt, self._step)

    def _record(self, values) -> None:
        if self.log:
            self.log.write(f"{time.monotonic():.9f} " + " ".join(f"{v:.12g}" for v in values) + "\n")
            self.log.flush()

    def _on_commands(self, msg: Float64MultiArray) -> None:
        if len(msg.data) != len(self.joints):
            self.get_logger().error(f"command size {len(msg.data)} does not match number of joints {len(self.joints)}")
            return
        self.target = np.asarray(msg.data, dtype=np.float64)
        self._record(self.target)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if not msg.points or sorted(msg.joint_names) != sorted(self.joints):
            self.get_logger().error("trajectory joints do not match the controller's")
            return
        order = [list(msg.joint_names).index(j) for j in self.joints]
        self.target = np.asarray(msg.points[-1].positions, dtype=np.float64)[order]
        self._record(self.target)

    def _step(self) -> None:
        a = 1.0 if self.tau <= 0 else min(1.0, self.dt / self.tau)
        self.q = self.q + a * (self.target - self.q)
        if self.stop_after and self.published >= self.stop_after:
            return
        js = JointState()
        js.header.stamp = self.get_clock().now().to_msg()
        js.name = self.joints
        js.position = self.q.tolist()
        js.velocity = [0.0] * len(self.joints)
        js.effort = [0.0] * len(self.joints)
        self.js_pub.publish(js)
        self.published += 1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--controller", required=True)
    ap.add_argument("--joints", required=True)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--tau", type=float, default=0.0)
    ap.add_argument("--log", default="")
    ap.add_argument("--stop-after", type=int, default=0)
    ap.add_argument("--initial", default="", help="comma-separated initial joint positions")
    args, ros_args = ap.parse_known_args()
    rclpy.init(args=ros_args)
    node = SimController(args.controller, args.joints.split(","), args.rate, args.tau, args.log, args.stop_after,
                         [float(v) for v in args.initial.split(",")] if args.initial else None)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
