"""A leader arm for teleoperation: a thin node over ``core.leader`` (ROS-free).

It reads the leader (SO-100/101 Feetech leader with torque off, or a YAM in i2rt's
gravity-compensation idle) at ``rate_hz`` on a thread with absolute deadlines and publishes its
paired follower's target; the follower's driver runs with ``input:=teleop`` and takes it through
its arming ramp and safety filter (remap ``teleop_target`` onto the follower's namespace).

Topics (relative names):
  publishes  teleop_target (sensor_msgs/JointState: the follower arm's joint names, positions in
             wire units, stamped when read), at the leader's rate, only while the leader reads;
             teleop_status (std_msgs/String, latched QoS, one JSON object per change and at
             ``status_rate_hz``): ``{"leader": <node name>, "arm": <follower arm>,
             "state": "connected" | "lost" | "connecting", "event": <text of the last change>,
             "losses": <count>, "stamp": <ROS time, s>}``. A "lost" message is the event the
             episode manager marks an episode with (the leader went away mid-episode); the
             follower holds by its own teleop watchdog meanwhile.

A leader that is lost is retried at ``reconnect_interval_s``; its first good reading after that
publishes "connected" ("event" says it came back) and targets flow again (the follower re-arms).
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from molmoact2_common import qos
from molmoact2_common.embodiment import load_embodiment
from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, non_negative, positive

from ..core.backend import BackendError
from ..core.leader import LeaderCore, create_leader
from ..core.servo_loop import run_at_deadlines

PARAMS = [
    ParamSpec("embodiment", str, "so101", "the FOLLOWER's embodiment config (config/embodiments/<name>.yaml) or path: its joint names are the targets' names"),
    ParamSpec("arm", str, "", "the follower arm this leader drives ('' = the embodiment's only arm)"),
    ParamSpec("leader_type", str, "feetech", "feetech (SO-100/101 leader, torque off) or yam (a YAM in gravity compensation, i2rt)",
              choices=("feetech", "yam")),
    ParamSpec("leader_options", str, "", "JSON object: feetech {port, calibration | id, model, ...}; yam {channel, arm_type, gripper_type, fixed_gripper, ...}"),
    ParamSpec("rate_hz", float, 0.0, "read and publish rate; 0 = the embodiment's servo_rate_hz", non_negative, ">= 0"),
    ParamSpec("reconnect_interval_s", float, 1.0, "a leader that cannot be opened is retried this often", positive, "> 0"),
    ParamSpec("status_rate_hz", float, 2.0, "teleop_status rate (also published on every change)", positive, "> 0"),
]


class LeaderNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("leader", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        embodiment = load_embodiment(self.p["embodiment"])
        arm_name = self.p["arm"]
        if not arm_name:
            if len(embodiment.arms) != 1:
                raise ParameterError(f"parameter 'arm' = '': embodiment '{embodiment.name}' has arms "
                                     f"{', '.join(a.name for a in embodiment.arms)}: name the follower")
            arm_name = embodiment.arms[0].name
        arm = embodiment.arm(arm_name)
        try:
            options = json.loads(self.p["leader_options"]) if self.p["leader_options"] else {}
        except json.JSONDecodeError as exc:
            raise ParameterError(f"parameter 'leader_options': not JSON: {exc}") from None
        if not isinstance(options, dict):
            raise ParameterError("parameter 'leader_options': must be a JSON object")
        if self.p["leader_type"] == "feetech":
            options.setdefault("gripper", arm.gripper)
        self.arm_name = arm.name
        self.joint_names = list(arm.joints)
        self.core = LeaderCore(create_leader(self.p["leader_type"], self.get_name(), self.joint_names, options))
        self.rate = float(self.p["rate_hz"] or embodiment.servo_rate_hz)
        self.target_pub = self.create_publisher(JointState, "teleop_target", qos.JOINT_STATE)
        self.status_pub = self.create_publisher(String, "teleop_status", qos.LATCHED)
        self.state = "connecting"
        self.last_event = f"leader for arm '{arm.name}' starting"
        self._started = False
        self._next_try = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.create_timer(1.0 / self.p["status_rate_hz"], self._publish_status)
        self._publish_status()
        self._thread = threading.Thread(target=run_at_deadlines, name="leader_loop", daemon=True,
                                        args=(self._tick, 1.0 / self.rate, self._stop,
                                              lambda exc: self.get_logger().error(f"leader loop: {exc}", throttle_duration_sec=1.0)))
        self._thread.start()

    def _set(self, state: str, event: str, warn: bool = False) -> None:
        with self._lock:
            self.state, self.last_event = state, event
        # one call site per severity: rclpy refuses a call site whose severity changes
        if warn:
            self.get_logger().warning(event)
        else:
            self.get_logger().info(event)
        self._publish_status()

    def _tick(self) -> None:
        if not self._started:
            now = time.monotonic()
            if now < self._next_try:
                return
            self._next_try = now + self.p["reconnect_interval_s"]
            try:
                self._set("connected", self.core.start() + f": publishing teleop_target for arm '{self.arm_name}' at {self.rate:g} Hz")
                self._started = True
            except BackendError as exc:
                if self.state != "lost" or self.last_event != f"leader cannot be opened: {exc}":
                    self._set("lost", f"leader cannot be opened: {exc}", warn=True)
            return
        sample = self.core.poll()
        for e in sample.events:
            self._set("connected" if self.core.connected else "lost", e, warn=not self.core.connected)
        if sample.positions is None:
            return
        msg = JointState()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.name = self.joint_names
        msg.position = np.asarray(sample.positions, dtype=np.float64).tolist()
        self.target_pub.publish(msg)

    def _publish_status(self) -> None:
        with self._lock:
            body = {"leader": self.get_fully_qualified_name(), "arm": self.arm_name, "state": self.state,
                    "event": self.last_event, "losses": self.core.losses,
                    "stamp": self.get_clock().now().nanoseconds * 1e-9}
        self.status_pub.publish(String(data=json.dumps(body)))

    def destroy_node(self):
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self.core.close()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(LeaderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
