"""A simulated ros2_control arm for bridge tests over real DDS.

It behaves like a ros2_control hardware + controller pair seen from outside:

- ``--interface joint_trajectory`` (franka_ros2's ``fr3_arm_controller``): a JointTrajectoryController
  on ``/<controller>/joint_trajectory`` (trajectory_msgs/JointTrajectory) that validates, replaces
  and interpolates trajectories in time as ros2_controllers' JTC does
  (``molmoact2_drivers.core.sim.trajectory``), sampled every update (``--rate`` Hz); the joints follow
  the sampled desired positions exactly (a position command interface). A rejected message is
  logged with JTC's error and leaves the running trajectory alone.
- ``--interface forward_position``: a forward position controller (``/<controller>/commands``,
  std_msgs/Float64MultiArray; a message with the wrong number of values is ignored with an error,
  as forward_command_controller does); joints move towards the command with a first-order lag
  ``--tau``.

A joint_state_broadcaster publishes ``/joint_states`` (reliable) every update, with ``--extra-joints``
NAME=VALUE appended (fixed joints another driver reports into the same message, as franka_bringup
merges franka_gripper's fingers into /joint_states). ``--stop-after N`` stops publishing joint
states after N messages (a driver that dies). ``--log FILE`` gets one line per received command
(forward: ``<monotonic> v1 v2 ...``; trajectory: a JSON object with the message, whether it was
accepted and JTC's error); ``--trace FILE`` one line per update, ``<monotonic> q1 q2 ...``.

  python tests/sim_controllers/position_controller.py --controller fr3_arm_controller \
      --joints j1,j2 [--interface joint_trajectory] [--initial 0,0] [--rate 250] [--tau 0.02] \
      [--log FILE] [--trace FILE] [--stop-after N] [--extra-joints fr3_finger_joint1=0.02]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from molmoact2_drivers.core.sim.trajectory import SimJointTrajectoryController, Trajectory, TrajectoryPoint


def _seconds(d) -> float:
    return float(d.sec) + float(d.nanosec) * 1e-9


class SimController(Node):
    def __init__(self, controller: str, joints: list[str], interface: str, rate: float, tau: float, log: str, trace: str,
                 stop_after: int, initial: list[float] | None = None, extra: dict[str, float] | None = None,
                 allow_partial: bool = False) -> None:
        super().__init__("sim_ros2_control")
        self.joints = joints
        self.interface = interface
        self.q = np.zeros(len(joints)) if not initial else np.asarray(initial, dtype=np.float64)
        self.target = self.q.copy()
        self.tau = tau
        self.dt = 1.0 / rate
        self.log = open(log, "a", buffering=1) if log else None
        self.trace = open(trace, "a", buffering=1) if trace else None
        self.stop_after = stop_after
        self.extra = dict(extra or {})
        self.published = 0
        self.jtc = SimJointTrajectoryController(joints, self.q, allow_partial_joints_goal=allow_partial)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.js_pub = self.create_publisher(JointState, "/joint_states", qos)
        if interface == "forward_position":
            self.create_subscription(Float64MultiArray, f"/{controller}/commands", self._on_commands, qos)
        else:
            self.create_subscription(JointTrajectory, f"/{controller}/joint_trajectory", self._on_trajectory, qos)
        self.create_timer(self.dt, self._step)

    def _on_commands(self, msg: Float64MultiArray) -> None:
        if len(msg.data) != len(self.joints):
            self.get_logger().error(f"command size {len(msg.data)} does not match number of joints {len(self.joints)}")
            return
        self.target = np.asarray(msg.data, dtype=np.float64)
        if self.log:
            self.log.write(f"{time.monotonic():.9f} " + " ".join(f"{v:.12g}" for v in self.target) + "\n")
            self.log.flush()

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        now = time.monotonic()
        traj = Trajectory(list(msg.joint_names),
                          [TrajectoryPoint(_seconds(p.time_from_start), list(p.positions), list(p.velocities)) for p in msg.points],
                          # a stamp on the ROS clock becomes a start time on this controller's monotonic clock
                          0.0 if _seconds(msg.header.stamp) == 0.0
                          else now + (_seconds(msg.header.stamp) - self.get_clock().now().nanoseconds * 1e-9))
        err = self.jtc.receive(traj, now)
        if err:
            self.get_logger().error(err)
        if self.log:
            self.log.write(json.dumps({
                "t": now, "joint_names": list(msg.joint_names), "stamp": _seconds(msg.header.stamp),
                "points": [{"time_from_start": p.time_from_start, "positions": p.positions, "velocities": p.velocities}
                           for p in traj.points],
                "accepted": not err, "error": err}) + "\n")
            self.log.flush()

    def _step(self) -> None:
        now = time.monotonic()
        if self.interface == "forward_position":
            a = 1.0 if self.tau <= 0 else min(1.0, self.dt / self.tau)
            self.q = self.q + a * (self.target - self.q)
        else:
            self.q, _ = self.jtc.sample(now)
        if self.trace:
            self.trace.write(f"{now:.9f} " + " ".join(f"{v:.12g}" for v in self.q) + "\n")
        if self.stop_after and self.published >= self.stop_after:
            return
        js = JointState()
        js.header.stamp = self.get_clock().now().to_msg()
        js.name = self.joints + list(self.extra)
        js.position = self.q.tolist() + list(self.extra.values())
        js.velocity = [0.0] * len(js.name)
        js.effort = [0.0] * len(js.name)
        self.js_pub.publish(js)
        self.published += 1

    def destroy_node(self):
        for f in (self.log, self.trace):
            if f:
                f.close()
        return super().destroy_node()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--controller", required=True)
    ap.add_argument("--joints", required=True)
    ap.add_argument("--interface", choices=["forward_position", "joint_trajectory"], default="forward_position")
    ap.add_argument("--allow-partial-joints-goal", action="store_true")
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--tau", type=float, default=0.0)
    ap.add_argument("--log", default="")
    ap.add_argument("--trace", default="")
    ap.add_argument("--stop-after", type=int, default=0)
    ap.add_argument("--initial", default="", help="comma-separated initial joint positions")
    ap.add_argument("--extra-joints", default="", help="comma-separated NAME=VALUE joints published alongside")
    args, ros_args = ap.parse_known_args()
    rclpy.init(args=ros_args)
    extra = {k: float(v) for k, v in (kv.split("=", 1) for kv in args.extra_joints.split(",") if kv)}
    node = SimController(args.controller, args.joints.split(","), args.interface, args.rate, args.tau, args.log, args.trace,
                         args.stop_after, [float(v) for v in args.initial.split(",")] if args.initial else None, extra,
                         args.allow_partial_joints_goal)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
