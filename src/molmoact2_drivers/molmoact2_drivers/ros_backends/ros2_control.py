"""ros2_control bridge: drive an arm that already has a ros2_control driver (franka_ros2, ...).

It commands an existing controller through its topic interface and reads joint states:

- ``command_interface: joint_trajectory`` (Franka): a JointTrajectoryController's
  ``<controller>/joint_trajectory`` (trajectory_msgs/JointTrajectory). Every servo tick sends a
  time-parameterised trajectory of the controller's joints only: ``header.stamp`` zero ("start on
  arrival", so the driver's and the controller manager's clocks need not agree) and one point, the
  new target, ``trajectory_lookahead_s`` ahead. JTC samples it in its own loop (1 kHz on a
  Franka), interpolating from where the joints are to the point; the next tick's trajectory
  replaces it before it is reached, so the arm moves continuously instead of in servo-rate steps
  (with a lookahead of L the desired motion settles to the target stream's velocity, lagging it by
  velocity x L). Positions only: franka_ros2's stock ``fr3_arm_controller`` accepts that as is
  (points with velocities would need ``allow_nonzero_velocity_at_trajectory_end``). The lookahead
  must exceed the servo period, or the arm stops at every point.
- ``command_interface: forward_position``: a forward position controller's ``<controller>/commands``
  (std_msgs/Float64MultiArray, one value per controller joint, in ``controller_joints`` order).

control_msgs actions (FollowJointTrajectory, GripperCommand) and franka_msgs' gripper actions
(franka_gripper's Move / Grasp / Homing) need apt ROS packages that the PyPI wheels do not ship, so
the bridge uses the topic interfaces only. An arm joint that no controller carries (the Franka's
gripper: franka_gripper is action-only, and DROID's Robotiq 2F-85 is not on franka_ros2 at all) must
be listed in ``undriven_joints``: its commands are accepted, counted and logged (throttled) as not
driven, never sent; its reading comes from a ``state_joint`` in the joint states when one is
published (franka_gripper's ``fr3_finger_joint1``, half the opening in metres, mapped
``closed``..``open`` onto 0..1), else it echoes the last command.

Backend fields (``arms[].backend`` in the embodiment config): ``command_interface``,
``controller`` (e.g. /fr3_arm_controller: the topic follows from the interface) or
``command_topic`` (the exact topic; wins), ``joint_states_topic`` (default /joint_states),
``joint_map`` ({our name: controller joint name}, default identical), ``controller_joints`` (the
controller's joints in its order; default the arm's driven joints, mapped), ``undriven_joints``
({our name: {state_joint, closed, open, initial}} or a list of names), ``trajectory_lookahead_s``
(default 0.03), ``state_timeout_s`` (feedback freshness, default 0.5), ``connect_timeout_s``
(default 10).

The bridge runs its own small rclpy node and executor on a thread, so joint states keep arriving
while the driver node is busy in a lifecycle transition (configure waits for the first state).
The driver's safety layer validates every command before it reaches the controller.
"""

from __future__ import annotations

import math
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

INTERFACES = {"forward_position": "commands", "joint_trajectory": "joint_trajectory"}
MESSAGE_TYPES = {"forward_position": "std_msgs/Float64MultiArray", "joint_trajectory": "trajectory_msgs/JointTrajectory"}


class UndrivenJoint:
    """An arm joint no controller carries: commands are counted, the reading is fed back or echoed."""

    def __init__(self, arm_name: str, name: str, spec: Any) -> None:
        spec = {} if spec is None else spec
        if not isinstance(spec, dict):
            raise BackendError(f"arm '{arm_name}': backend.undriven_joints.{name} must be a mapping "
                               "{state_joint, closed, open, initial} (or empty)")
        unknown = sorted(set(spec) - {"state_joint", "closed", "open", "initial"})
        if unknown:
            raise BackendError(f"arm '{arm_name}': backend.undriven_joints.{name}: unknown fields {', '.join(unknown)} "
                               "(known: state_joint, closed, open, initial)")
        self.name = name
        self.state_joint = str(spec.get("state_joint", "") or "")
        try:
            self.closed = float(spec.get("closed", 0.0))
            self.open = float(spec.get("open", 1.0))
            self.value = float(spec.get("initial", 1.0))
        except (TypeError, ValueError):
            raise BackendError(f"arm '{arm_name}': backend.undriven_joints.{name}: closed, open and initial must be numbers") from None
        if not (math.isfinite(self.closed) and math.isfinite(self.open) and math.isfinite(self.value)) or self.open == self.closed:
            raise BackendError(f"arm '{arm_name}': backend.undriven_joints.{name}: closed ({self.closed}) and open ({self.open}) "
                               "must be finite and differ; initial finite")
        self.measured = False
        self.commands_not_driven = 0
        self.last_command: float | None = None

    def observe(self, raw: float) -> None:
        if math.isfinite(raw):
            self.value = float(np.clip((raw - self.closed) / (self.open - self.closed), 0.0, 1.0))
            self.measured = True

    def command(self, value: float) -> bool:
        """Note a command; True when it asks for a change (a command that is not carried out)."""
        changed = self.last_command is None or abs(value - self.last_command) > 1e-6
        self.last_command = value
        if not self.measured:
            self.value = value  # no feedback: the reading echoes the command
        if changed:
            self.commands_not_driven += 1
        return changed


class Ros2ControlBackend(ArmBackend):
    simulated = False

    def __init__(self, arm_name: str, joint_names: list[str], context, command_topic: str = "", controller: str = "",
                 joint_states_topic: str = "/joint_states", command_interface: str = "forward_position",
                 joint_map: dict | None = None, controller_joints: list[str] | None = None,
                 undriven_joints: dict | list | None = None,
                 state_timeout_s: float = 0.5, connect_timeout_s: float = 10.0,
                 trajectory_lookahead_s: float = 0.03, simulated: bool = False, node_name: str = "",
                 node_namespace: str = "/") -> None:
        super().__init__(arm_name, joint_names)
        if command_interface not in INTERFACES:
            raise BackendError(f"arm '{arm_name}': backend.command_interface '{command_interface}' must be one of {', '.join(INTERFACES)}")
        if not command_topic:
            if not controller:
                raise BackendError(f"arm '{arm_name}': backend.controller (e.g. /fr3_arm_controller) or backend.command_topic "
                                   "is required for ros2_control")
            command_topic = f"/{str(controller).strip('/')}/{INTERFACES[command_interface]}"
        self.simulated = bool(simulated)
        self.context = context
        self.command_topic = command_topic
        self.joint_states_topic = joint_states_topic
        self.command_interface = command_interface
        if isinstance(undriven_joints, (list, tuple)):
            undriven_joints = {str(j): {} for j in undriven_joints}
        if undriven_joints is not None and not isinstance(undriven_joints, dict):
            raise BackendError(f"arm '{arm_name}': backend.undriven_joints must be a mapping {{joint: {{state_joint, closed, open}}}} or a list")
        undriven_joints = dict(undriven_joints or {})
        strange = sorted(set(undriven_joints) - set(joint_names))
        if strange:
            raise BackendError(f"arm '{arm_name}': backend.undriven_joints names joints the arm lacks: {', '.join(strange)}")
        self.undriven = {j: UndrivenJoint(arm_name, j, undriven_joints[j]) for j in joint_names if j in undriven_joints}
        jm = dict(joint_map or {})
        unknown = sorted(set(jm) - set(joint_names))
        if unknown:
            raise BackendError(f"arm '{arm_name}': backend.joint_map names joints the arm lacks: {', '.join(unknown)}")
        driven = [j for j in joint_names if j not in self.undriven]
        if not driven:
            raise BackendError(f"arm '{arm_name}': every joint is in backend.undriven_joints: nothing to command")
        self.to_controller = {j: str(jm.get(j, j)) for j in driven}
        self.from_controller = {v: k for k, v in self.to_controller.items()}
        self.controller_joints = list(controller_joints) if controller_joints else [self.to_controller[j] for j in driven]
        on_undriven = [c for c in self.controller_joints if c not in self.from_controller
                       and (c in self.undriven or any(jm.get(u) == c for u in self.undriven))]
        if on_undriven:
            raise BackendError(f"arm '{arm_name}': backend.controller_joints {', '.join(on_undriven)} are in backend.undriven_joints")
        strangers = [c for c in self.controller_joints if c not in self.from_controller]
        if strangers:
            raise BackendError(f"arm '{arm_name}': backend.controller_joints {', '.join(strangers)} map to none of the arm's joints")
        if len(set(self.controller_joints)) != len(self.controller_joints):
            raise BackendError(f"arm '{arm_name}': backend.controller_joints names a joint twice: {self.controller_joints}")
        missing = [j for j in driven if self.to_controller[j] not in self.controller_joints]
        if missing:
            raise BackendError(f"arm '{arm_name}': joints {', '.join(missing)} are on no controller: add them to "
                               "backend.controller_joints, or list them in backend.undriven_joints (their commands are then not driven)")
        self._driven = driven
        self._driven_index = [joint_names.index(j) for j in driven]
        self._cmd_index = [joint_names.index(self.from_controller[c]) for c in self.controller_joints]
        self.state_timeout_s = float(state_timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.lookahead = float(trajectory_lookahead_s)
        if not (math.isfinite(self.lookahead) and self.lookahead > 0.0):
            raise BackendError(f"arm '{arm_name}': backend.trajectory_lookahead_s = {trajectory_lookahead_s} must be > 0 "
                               "(and above the servo period)")
        self.node_name = node_name or f"{arm_name}_ros2_control_bridge"
        self.node_namespace = node_namespace or "/"
        self._lock = threading.Lock()
        self._pos: np.ndarray | None = None  # driven joints, arm order
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
            # the process's global arguments (``-r __node:=driver`` from the launcher) would rename
            # this node to the driver's own name: two /driver nodes answer its parameter services
            self._node = Node(self.node_name, context=self.context, namespace=self.node_namespace,
                              use_global_arguments=False)
            msg_type = Float64MultiArray if self.command_interface == "forward_position" else JointTrajectory
            # the controllers subscribe with the system default QoS (reliable, volatile, depth 10)
            self._pub = self._node.create_publisher(msg_type, self.command_topic, qos.JOINT_STATE)
            self._node.create_subscription(JointState, self.joint_states_topic, self._on_state, qos.JOINT_STATE)
            self._executor = SingleThreadedExecutor(context=self.context)
            self._executor.add_node(self._node)
            self._thread = threading.Thread(target=self._spin, name=self.node_name, daemon=True)
            self._thread.start()
            for u in self.undriven.values():
                self._node.get_logger().warning(
                    f"arm '{self.arm_name}': joint '{u.name}' is on no controller: its commands are NOT driven "
                    f"(counted); its reading {'comes from ' + repr(u.state_joint) + ' on ' + self.joint_states_topic + ' when published, else ' if u.state_joint else ''}"
                    "echoes the last command")
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
                               f"({MESSAGE_TYPES[self.command_interface]}) within {self.connect_timeout_s} s (is the controller active?)")

    def _spin(self) -> None:
        try:
            while self._executor is not None and self.context.ok():
                self._executor.spin_once(timeout_sec=0.05)
        except Exception:  # context shut down under us
            pass

    def _on_state(self, msg: JointState) -> None:
        idx = {n: i for i, n in enumerate(msg.name)}
        for u in self.undriven.values():
            if u.state_joint and u.state_joint in idx and idx[u.state_joint] < len(msg.position):
                with self._lock:
                    u.observe(float(msg.position[idx[u.state_joint]]))
        names = [self.to_controller[j] for j in self._driven]
        if not all(n in idx for n in names):
            return  # joint_state_broadcaster may publish other arms' (or the gripper's) joints on separate messages
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
            n = len(self.joint_names)
            pos = np.zeros(n)
            pos[self._driven_index] = self._pos
            vel = eff = None
            if self._vel is not None:
                vel = np.zeros(n)
                vel[self._driven_index] = self._vel
            if self._eff is not None:
                eff = np.zeros(n)
                eff[self._driven_index] = self._eff
            extra = {}
            for u in self.undriven.values():
                pos[self.joint_names.index(u.name)] = u.value
                extra[u.name] = {"driven": False, "measured": u.measured, "commands_not_driven": u.commands_not_driven}
            return JointReading(pos, vel, eff, self._stamp, extra)

    def send_target(self, positions: np.ndarray) -> np.ndarray:
        if self._pub is None:
            raise BackendError(f"arm '{self.arm_name}': not connected")
        q = np.asarray(positions, dtype=np.float64)
        values = [float(q[i]) for i in self._cmd_index]
        if self.command_interface == "forward_position":
            msg = Float64MultiArray()
            msg.data = values
        else:
            msg = JointTrajectory()  # header.stamp zero: start on arrival
            msg.joint_names = list(self.controller_joints)
            pt = JointTrajectoryPoint()
            pt.positions = values
            sec = int(self.lookahead)
            pt.time_from_start.sec = sec
            pt.time_from_start.nanosec = int(round((self.lookahead - sec) * 1e9))
            msg.points = [pt]
        self._pub.publish(msg)
        for u in self.undriven.values():
            with self._lock:
                asked = u.command(float(q[self.joint_names.index(u.name)]))
            if asked and self._node is not None:
                self._node.get_logger().warning(
                    f"arm '{self.arm_name}': {u.name} command {q[self.joint_names.index(u.name)]:.3f} not driven "
                    f"(on no controller; {u.commands_not_driven} so far)", throttle_duration_sec=5.0)
        self._last_sent = q.copy()
        return q.copy()

    def undriven_counts(self) -> dict[str, int]:
        """Per undriven joint: how many commands asked for a change that was not carried out."""
        with self._lock:
            return {u.name: u.commands_not_driven for u in self.undriven.values()}

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
    try:
        return Ros2ControlBackend(
            arm_config.name, arm_config.joints, node.context,
            command_topic=str(options.get("command_topic", "") or ""),
            controller=str(options.get("controller", "") or ""),
            joint_states_topic=str(options.get("joint_states_topic", "/joint_states")),
            command_interface=str(options.get("command_interface", "forward_position")),
            joint_map=options.get("joint_map"),
            controller_joints=options.get("controller_joints"),
            undriven_joints=options.get("undriven_joints"),
            state_timeout_s=float(options.get("state_timeout_s", 0.5)),
            connect_timeout_s=float(options.get("connect_timeout_s", 10.0)),
            trajectory_lookahead_s=float(options.get("trajectory_lookahead_s", 0.03)),
            simulated=bool(options.get("simulated", False)),
            node_name=f"{node.get_name()}_{arm_config.name}_ros2_control",
            node_namespace=node.get_namespace(),
        )
    except (TypeError, ValueError) as exc:
        raise BackendError(f"arm '{arm_config.name}': ros2_control backend fields: {exc}") from None
