"""ros2_control bridge: drive an arm that already has a ros2_control driver (franka_ros2, ...).

It commands an existing controller through its topic interface and reads ``/joint_states``:

- ``command_interface: forward_position``: a forward position controller's ``commands``
  (std_msgs/Float64MultiArray, one value per controller joint, in ``controller_joints`` order);
- ``command_interface: joint_trajectory``: a JointTrajectoryController's ``joint_trajectory``
  (trajectory_msgs/JointTrajectory, one point ``trajectory_lookahead_s`` ahead).

control_msgs actions (FollowJointTrajectory, GripperCommand) need apt ROS's control_msgs, which the
PyPI wheels do not ship; the topic interfaces work everywhere.

Backend fields (``arms[].backend`` in the embodiment config): ``command_topic``,
``joint_states_topic`` (default /joint_states), ``command_interface``, ``joint_map`` ({our name:
controller joint name}, default identical), ``controller_joints`` (the controller's joint order;
default the arm's joints, mapped), ``state_timeout_s`` (feedback freshness, default 0.5),
``connect_timeout_s`` (default 10).

The bridge runs its own small rclpy node and executor on a thread, so joint states keep arriving
while the driver node is busy in a lifecycle transition (configure waits for the first state).
This bridge is Franka's path to a tested deployment: the driver's safety layer validates every
command before it reaches franka_ros2's controller.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from molmoact2_common import qos

from ..core.backend import ArmBackend, BackendError, BackendHealth, JointReading

INTERFACES = ("forward_position", "joint_trajectory")


class Ros2ControlBackend(ArmBackend):
    simulated = False

    def __init__(self, arm_name: str, joint_names: list[str], context, command_topic: str,
                 joint_states_topic: str = "/joint_states", command_interface: str = "forward_position",
                 joint_map: dict | None = None, controller_joints: list[str] | None = None,
                 state_timeout_s: float = 0.5, connect_timeout_s: float = 10.0,
                 trajectory_lookahead_s: float = 0.02, simulated: bool = False, node_name: str = "") -> None:
        super().__init__(arm_name, joint_names)
        if command_interface not in INTERFACES:
            raise BackendError(f"arm '{arm_name}': backend.command_interface '{command_interface}' must be one of {', '.join(INTERFACES)}")
        if not command_topic:
            raise BackendError(f"arm '{arm_name}': backend.command_topic is required for ros2_control")
        self.simulated = bool(simulated)
        self.context = context
        self.command_topic = command_topic
        self.joint_states_topic = joint_states_topic
        self.command_interface = command_interface
        jm = dict(joint_map or {})
        unknown = sorted(set(jm) - set(joint_names))
        if unknown:
            raise BackendError(f"arm '{arm_name}': backend.joint_map names joints the arm lacks: {', '.join(unknown)}")
        self.to_controller = {j: str(jm.get(j, j)) for j in joint_names}
        self.from_controller = {v: k for k, v in self.to_controller.items()}
        self.controller_joints = list(controller_joints) if controller_joints else [self.to_controller[j] for j in joint_names]
        strangers = [c for c in self.controller_joints if c not in self.from_controller]
        if strangers:
            raise BackendError(f"arm '{arm_name}': backend.controller_joints {', '.join(strangers)} map to none of the arm's joints")
        self._cmd_index = [joint_names.index(self.from_controller[c]) for c in self.controller_joints]
        self.state_timeout_s = float(state_timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.lookahead = float(trajectory_lookahead_s)
        self.node_name = node_name or f"{arm_name}_ros2_control_bridge"
        self._lock = threading.Lock()
        self._pos: np.ndarray | None = None
        self._vel: np.ndarray | None = None
        self._eff: np.ndarray | None = None
        self._stamp = 0.0
        self._last_sent: np.ndarray | None = None
        self._node: Node | None = None
        self._executor: SingleThreadedExecutor | None = None
        self._thread: threading.Thread | None = None
        self._pub = None
        self.enabled = False

    # -- transport --------------------------------------------------------------------------
    def connect(self) -> None:
        if self._node is None:
            self._node = Node(self.node_name, context=self.context)
            msg_type = Float64MultiArray if self.command_interface == "forward_position" else JointTrajectory
            self._pub = self._node.create_publisher(msg_type, self.command_topic, qos.JOINT_STATE)
            self._node.create_subscription(JointState, self.joint_states_topic, self._on_state, qos.JOINT_STATE)
            self._executor = SingleThreadedExecutor(context=self.context)
            self._executor.add_node(self._node)
            self._thread = threading.Thread(target=self._spin, name=self.node_name, daemon=True)
            self._thread.start()
        deadline = time.monotonic() + self.connect_timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._pos is not None:
                    break
            time.sleep(0.01)
        else:
            self.close()
            raise BackendError(f"arm '{self.arm_name}': no joint states with joints {', '.join(self.controller_joints)} on "
                               f"{self.joint_states_topic} within {self.connect_timeout_s} s (is the ros2_control driver running?)")
        # wait for the controller to subscribe, so the first commands are not lost
        while time.monotonic() < deadline and self._pub.get_subscription_count() == 0:
            time.sleep(0.01)
        if self._pub.get_subscription_count() == 0:
            self.close()
            raise BackendError(f"arm '{self.arm_name}': nothing subscribes to {self.command_topic} "
                               f"within {self.connect_timeout_s} s (is the controller active?)")

    def _spin(self) -> None:
        try:
            while self._executor is not None and self.context.ok():
                self._executor.spin_once(timeout_sec=0.05)
        except Exception:  # context shut down under us
            pass

    def _on_state(self, msg: JointState) -> None:
        idx = {n: i for i, n in enumerate(msg.name)}
        names = [self.to_controller[j] for j in self.joint_names]
        if not all(n in idx for n in names):
            return  # joint_state_broadcaster may publish other arms' joints on separate messages
        pos = np.array([msg.position[idx[n]] for n in names], dtype=np.float64)
        vel = np.array([msg.velocity[idx[n]] for n in names]) if len(msg.velocity) == len(msg.name) else None
        eff = np.array([msg.effort[idx[n]] for n in names]) if len(msg.effort) == len(msg.name) else None
        with self._lock:
            self._pos, self._vel, self._eff, self._stamp = pos, vel, eff, time.monotonic()

    # -- ArmBackend -------------------------------------------------------------------------
    def read_state(self) -> JointReading:
        with self._lock:
            if self._pos is None:
                raise BackendError(f"arm '{self.arm_name}': no joint state received yet on {self.joint_states_topic}")
            age = time.monotonic() - self._stamp
            if age > self.state_timeout_s:
                raise BackendError(f"arm '{self.arm_name}': joint states on {self.joint_states_topic} are {age:.2f} s old "
                                   f"(limit {self.state_timeout_s} s): controller or driver stopped?")
            return JointReading(self._pos.copy(), None if self._vel is None else self._vel.copy(),
                                None if self._eff is None else self._eff.copy(), self._stamp)

    def send_target(self, positions: np.ndarray) -> np.ndarray:
        if self._pub is None:
            raise BackendError(f"arm '{self.arm_name}': not connected")
        q = np.asarray(positions, dtype=np.float64)
        values = [float(q[i]) for i in self._cmd_index]
        if self.command_interface == "forward_position":
            msg = Float64MultiArray()
            msg.data = values
        else:
            msg = JointTrajectory()
            msg.joint_names = list(self.controller_joints)
            pt = JointTrajectoryPoint()
            pt.positions = values
            sec = int(self.lookahead)
            pt.time_from_start.sec = sec
            pt.time_from_start.nanosec = int((self.lookahead - sec) * 1e9)
            msg.points = [pt]
        self._pub.publish(msg)
        self._last_sent = q.copy()
        return q.copy()

    def enable(self) -> None:
        # the ros2_control driver owns torque; its controller holds the last command
        self.enabled = True

    def disable(self) -> None:
        raise BackendError(f"arm '{self.arm_name}': torque is owned by the ros2_control driver: "
                           "deactivate its controller (controller_manager) to release the arm")

    def close(self) -> None:
        ex, node = self._executor, self._node
        self._executor = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
        self._thread = None
        try:
            if ex is not None:
                ex.shutdown(timeout_sec=0.5)
            if node is not None:
                node.destroy_node()
        except Exception:  # closing must never raise
            pass
        self._node = None
        self._pub = None

    def health(self) -> BackendHealth:
        with self._lock:
            if self._pos is None:
                return BackendHealth(False, "no joint state yet")
            age = time.monotonic() - self._stamp
        if age > self.state_timeout_s:
            return BackendHealth(False, f"joint states {age:.2f} s old on {self.joint_states_topic} (limit {self.state_timeout_s} s)")
        return BackendHealth(True)


def create(arm_config: Any, options: dict, node=None, **context: Any) -> Ros2ControlBackend:
    if node is None:
        raise BackendError(f"arm '{arm_config.name}': the ros2_control backend needs the driver's rclpy node")
    return Ros2ControlBackend(
        arm_config.name, arm_config.joints, node.context,
        command_topic=str(options.get("command_topic", "")),
        joint_states_topic=str(options.get("joint_states_topic", "/joint_states")),
        command_interface=str(options.get("command_interface", "forward_position")),
        joint_map=options.get("joint_map"),
        controller_joints=options.get("controller_joints"),
        state_timeout_s=float(options.get("state_timeout_s", 0.5)),
        connect_timeout_s=float(options.get("connect_timeout_s", 10.0)),
        trajectory_lookahead_s=float(options.get("trajectory_lookahead_s", 0.02)),
        simulated=bool(options.get("simulated", False)),
        node_name=f"{node.get_name()}_{arm_config.name}_ros2_control",
    )
