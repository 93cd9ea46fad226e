"""A scripted expert that demonstrates a simulated task through the real graph (core.expert).

It does what a teleoperator's side would: it reads the sim's task state (the randomised goal) and
the arm's joint states, plans inverse kinematics to the goal with a minimum-jerk approach from
above (optionally through a seeded random via pose first, detour_rad), or with mode:=servo plans
every chunk afresh from the current command towards the goal pose (no clock, no stop), and publishes ActionChunks to the drivers' ``action_chunk`` at chunk_rate_hz, exactly as a
policy does (stamped now, horizon steps of dt, wire units, every simulated arm's joints in
embodiment order: a bimanual robot's drivers each take their own columns). It plans once per sim
episode, start_delay_s into it, and holds the plan's end afterwards; judging episodes and
resetting the sim is the episode supervisor's (episode_supervisor_node), as it is when a policy
drives. Run it on /clock (use_sim_time:=true).

  subscribes  task_state_topic (std_msgs/String JSON, the sim's ~/task/state), joint_states_topic
              (sensor_msgs/JointState), driver_status_topics (DriverStatus: an episode's motion starts
              once every driver is ready, so a demonstration never begins half-way through its plan),
              supervisor_status_topic (the episode supervisor's ~/status: nothing is published
              once it says done, as the graph then shuts down, the drivers first)
  publishes   action_chunk (molmoact2_msgs/ActionChunk), ~/status (std_msgs/String JSON, latched:
              episode (the sim episode planned last), plans, failures [{episode, seed, error}])
"""

from __future__ import annotations

import json

import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from molmoact2_common import qos
from molmoact2_common.embodiment import load_embodiment
from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, non_negative, positive
from molmoact2_msgs.msg import ActionChunk

from ..core.expert import IKError, ScriptedExpert, servo_chunk
from . import driver_watch

PARAMS = [
    ParamSpec("embodiment", str, "so101", "embodiment config name or path"),
    ParamSpec("arms", "str[]", [], "arms the expert drives (empty = every arm)"),
    ParamSpec("task_state_topic", str, "/sim/robot/task/state", "the sim's ~/task/state"),
    ParamSpec("joint_states_topic", str, "/sim/joint_states", "joint states of every driven joint"),
    ParamSpec("wait_for_drivers", bool, True, "start an episode's motion only once every driver is actuating, started, "
              "neither in error nor e-stopped"),
    *driver_watch.PARAMS,
    ParamSpec("supervisor_status_topic", str, "", "the episode supervisor's ~/status (latched JSON): no chunk once it "
              "says done, when the graph shuts down, the drivers first ('' = not watched)"),
    ParamSpec("start_delay_s", float, 0.5, "simulated seconds into an episode before the expert moves", non_negative, ">= 0"),
    ParamSpec("chunk_rate_hz", float, 10.0, "chunks per simulated second", positive, "> 0"),
    ParamSpec("horizon", int, 30, "steps per chunk", positive, "> 0"),
    ParamSpec("dt", float, 0.0, "seconds between steps (0 = 1 / the embodiment's control_rate_hz)", non_negative, ">= 0"),
    ParamSpec("mode", str, "plan", "plan: one min-jerk plan per episode (via, above, onto the goal); servo: every chunk "
              "from the current command straight towards the goal pose, at max_joint_speed then exponentially "
              "(core.expert.servo_chunk: a function of where the arm is, no stop on the way)", choices=("plan", "servo")),
    ParamSpec("max_joint_speed", float, 0.8, "plan: fastest joint speed of the plan's mean; servo: top speed of the "
              "joint with most to go, rad/s", positive, "> 0"),
    ParamSpec("press_depth_m", float, 0.0, "aim this far below the goal (into the object: the motion is still going "
              "when it touches, and a small error still ends in contact)", non_negative, ">= 0"),
    ParamSpec("servo_time_constant_s", float, 0.25, "servo: the last max_joint_speed x this closes exponentially "
              "with this time constant", positive, "> 0"),
    ParamSpec("approach_height_m", float, 0.06, "go this far above the goal first (0 = straight to it)", non_negative, ">= 0"),
    ParamSpec("detour_rad", float, 0.0, "go first through a via pose: every arm joint moved by a uniform draw in "
              "+-detour_rad, seeded by the episode's scene seed (0 = straight to the goal)", non_negative, ">= 0"),
    ParamSpec("gripper", float, 0.0, "gripper opening during the motion (0 closed .. 1 open)", lambda v: 0 <= v <= 1, "in [0, 1]"),
]


class ScriptedExpertNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("scripted_expert", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        emb = load_embodiment(self.p["embodiment"])
        try:
            self.expert = ScriptedExpert(emb, list(self.p["arms"]) or None, self.p["max_joint_speed"],
                                         self.p["approach_height_m"], self.p["gripper"])
        except KeyError as exc:
            raise ParameterError(f"parameter 'arms' = {list(self.p['arms'])}: {exc}") from None
        self.dt = self.p["dt"] or 1.0 / emb.control_rate_hz
        self.joints = list(self.expert.joints)
        self.q: np.ndarray | None = None
        self.state: dict | None = None
        self.episode = -1  # the sim episode being demonstrated
        self.plan = None  # plan mode: the episode's ExpertPlan; servo mode: the goal pose
        self.last_chunk: tuple[float, np.ndarray] | None = None  # (stamp, table) published last
        self.plans = 0
        self.failures: list[dict] = []
        self.sequence = 0
        self.chunk_pub = self.create_publisher(ActionChunk, "action_chunk", qos.ACTION_CHUNK)
        self.status_pub = self.create_publisher(String, "~/status", qos.LATCHED)
        self.create_subscription(String, self.p["task_state_topic"], self._on_state, qos.LATCHED)
        self.create_subscription(JointState, self.p["joint_states_topic"], self._on_joints, qos.JOINT_STATE)
        self.drivers = (driver_watch.DriverWatch(self, self.p, [a.name for a in self.expert.arms], len(emb.arms))
                        if self.p["wait_for_drivers"] else None)
        self.supervisor_done = False
        if self.p["supervisor_status_topic"]:
            self.create_subscription(String, self.p["supervisor_status_topic"], self._on_supervisor, qos.LATCHED)
        self.create_timer(1.0 / self.p["chunk_rate_hz"], self._tick)  # node clock: /clock with use_sim_time
        self._publish_status()
        self.get_logger().info(f"scripted expert for {', '.join(a.name for a in self.expert.arms)}: chunks of "
                               f"{self.p['horizon']} x {self.dt:.4f} s at {self.p['chunk_rate_hz']} Hz")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joints(self, msg: JointState) -> None:
        pos = dict(zip(msg.name, msg.position))
        if all(j in pos for j in self.joints):
            self.q = np.array([pos[j] for j in self.joints], dtype=np.float64)

    def _on_state(self, msg: String) -> None:
        try:
            self.state = json.loads(msg.data)
        except json.JSONDecodeError as exc:
            self.get_logger().error(f"{self.p['task_state_topic']}: not JSON: {exc}", throttle_duration_sec=5.0)

    def _on_supervisor(self, msg: String) -> None:
        try:
            self.supervisor_done = bool(json.loads(msg.data).get("done"))
        except (json.JSONDecodeError, AttributeError):
            self.get_logger().error(f"{self.p['supervisor_status_topic']}: not a JSON object", throttle_duration_sec=5.0)

    def _drivers_ready(self) -> bool:
        return self.drivers is None or self.drivers.ready()

    def _publish_status(self) -> None:
        self.status_pub.publish(String(data=json.dumps({"episode": self.episode, "plans": self.plans, "failures": self.failures})))

    def _tick(self) -> None:
        if self.state is None or self.q is None or self.supervisor_done:
            return
        st, now = self.state, self._now()
        if st.get("phase") != "running" or st["episode"] < self.episode:
            return
        if st["episode"] > self.episode:  # a new episode: plan afresh once it is time
            self.episode, self.plan = st["episode"], None
            self._publish_status()
        if self.plan is None:
            if st["episode_time"] < self.p["start_delay_s"] or not self._drivers_ready():
                return
            if any(f["episode"] == self.episode for f in self.failures):
                return  # no plan for this scene: the supervisor times the episode out
            press = np.array([0.0, 0.0, self.p["press_depth_m"]])
            goals = {k: np.asarray(v) - press for k, v in st["goals"].items() if k in self.expert.chains}
            try:
                if self.p["mode"] == "servo":
                    self.plan, self.last_chunk = self.expert.reach_pose(self.q, goals), None
                else:
                    via = self.expert.detour(self.q, self.p["detour_rad"], st["seed"]) if self.p["detour_rad"] > 0 else None
                    self.plan = self.expert.plan_reach(self.q, now, goals, via=via)
                self.plans += 1
            except IKError as exc:
                self.get_logger().error(f"episode {self.episode}: {exc}")
                self.failures.append({"episode": self.episode, "seed": st["seed"], "error": str(exc)})
            self._publish_status()
        if self.plan is not None and self._drivers_ready():  # a driver in error (the reset's jump) refuses chunks
            self._publish_chunk(now)

    def _command_now(self, now: float) -> np.ndarray:
        """Servo: where the last chunk commands the arm now (the arm's position before the first)."""
        if self.last_chunk is None:
            return self.q.copy()
        stamp, table = self.last_chunk
        k = float(np.clip((now - stamp) / self.dt, 0.0, len(table) - 1))
        i = min(int(k), len(table) - 2)
        return table[i] + (k - i) * (table[i + 1] - table[i])

    def _publish_chunk(self, now: float) -> None:
        if self.p["mode"] == "servo":
            table = servo_chunk(self._command_now(now), self.plan, self.p["horizon"], self.dt,
                                self.p["max_joint_speed"], self.p["servo_time_constant_s"])
            self.last_chunk = (now, table)
        else:
            table = self.plan.chunk(now, self.p["horizon"], self.dt)
        self.sequence += 1
        msg = ActionChunk()
        msg.header.stamp = Time(nanoseconds=int(round(now * 1e9))).to_msg()
        msg.joint_names = self.joints
        msg.horizon = int(self.p["horizon"])
        msg.dt = float(self.dt)
        msg.positions = table.ravel().tolist()
        msg.sequence = self.sequence
        msg.model_id = "scripted_expert"
        self.chunk_pub.publish(msg)


def main(args=None) -> int:
    return run_node(ScriptedExpertNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
