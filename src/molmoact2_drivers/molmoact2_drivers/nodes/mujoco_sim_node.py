"""A MuJoCo simulated robot for the closed-loop main job: /clock, joint states and cameras.

It plays the robot's ros2_control side, so the driver drives it through the same ros2_control
bridge it uses for Franka (one tested path for both; the driver runs unchanged against sim or
robot). One node simulates every arm of the embodiment (``arms``, default all of them) in
lockstep on one simulated clock (``core.sim.multi_arm``), so a bimanual robot has one /clock:

  subscribes  /<controller>/commands (std_msgs/Float64MultiArray, the arm's joints in config order,
              wire units; a message of the wrong size is ignored with an error, as
              forward_command_controller does) and /<controller>/joint_trajectory
              (trajectory_msgs/JointTrajectory: a JointTrajectoryController, as franka_ros2's
              fr3_arm_controller, validating and interpolating in simulated time as ros2_controllers'
              JTC does, core.sim.trajectory; a goal may name some of the arm's joints, the others
              hold: the Franka bridge leaves the gripper out, as on the robot); with several arms one
              controller per arm, /<arm>_<controller>/... (YAM: /left_arm_controller/commands, ...)
  publishes   /clock (simulated time), <joint_states_topic> (sensor_msgs/JointState of every simulated
              joint in one message, as a joint_state_broadcaster does, at joint_state_rate_hz of
              simulated time), cameras/<name>/image_raw (sensor_msgs/Image rgb8, offscreen-rendered at
              camera_rate_hz of simulated time)

The physics advances with wall time times ``real_time_factor`` on a steady timer; ``paused``
stops it (and /clock with it: a driver on use_sim_time then holds). Rendering on CPU is slow
(the SO-101 meshes: ~0.1-0.25 s for a 160x120 frame here; the YAM scene's three cameras ~0.05 s
together), so cameras default to a low rate and a small size, with shadows, reflections, skybox
and collision geometry off; on a GPU machine (MUJOCO_GL=egl) raise both. A single arm whose model
has cameras renders its own scene; several arms (or a model without cameras, YAM) render in a scene
built with MjSpec with an ``overview`` camera and a ``<arm>_wrist`` camera per arm.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported: headless offscreen rendering

import time  # noqa: E402

import numpy as np  # noqa: E402
from rclpy.clock import Clock, ClockType  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.time import Time  # noqa: E402
from rosgraph_msgs.msg import Clock as ClockMsg  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from molmoact2_common import qos  # noqa: E402
from molmoact2_common.embodiment import load_embodiment  # noqa: E402
from molmoact2_common.node_main import run_node  # noqa: E402
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, non_negative, positive  # noqa: E402

from ..core.sim.models import SimModelError  # noqa: E402
from ..core.sim.multi_arm import MultiArmSim  # noqa: E402
from ..core.sim.trajectory import SimJointTrajectoryController, Trajectory, TrajectoryPoint  # noqa: E402

PARAMS = [
    ParamSpec("embodiment", str, "so101", "embodiment config name or path"),
    ParamSpec("arms", "str[]", [], "arms to simulate, in lockstep on one clock (empty = every arm of the embodiment)"),
    ParamSpec("sim_model", str, "", "MuJoCo model for every simulated arm (so101, panda, yam; '' = each arm's sim_model)"),
    ParamSpec("controller", str, "arm_controller",
              "controller name: commands arrive on /<controller>/commands or /<controller>/joint_trajectory; "
              "with several arms on /<arm>_<controller>/..."),
    ParamSpec("joint_states_topic", str, "/joint_states", "where the simulated joint_state_broadcaster publishes (every simulated joint)"),
    ParamSpec("joint_state_rate_hz", float, 200.0, "joint state rate (simulated time)", positive, "> 0"),
    ParamSpec("real_time_factor", float, 1.0, "simulated seconds per wall second", positive, "> 0"),
    ParamSpec("step_rate_hz", float, 200.0, "how often the physics catches up with wall time", positive, "> 0"),
    ParamSpec("camera_rate_hz", float, 2.0, "camera frame rate (simulated time); 0 = no cameras", non_negative, ">= 0"),
    ParamSpec("camera_width", int, 160, "rendered width, px", positive, "> 0"),
    ParamSpec("camera_height", int, 120, "rendered height, px", positive, "> 0"),
    ParamSpec("cameras", "str[]", [], "NAME=MUJOCO_CAMERA pairs (publish cameras/NAME/image_raw); empty = each embodiment camera "
              "from its default model camera (one arm's own scene: its first camera; built scene: <arm>_wrist for a camera "
              "named like an arm, else overview)"),
    ParamSpec("initial_position", "float[]", [], "initial joint positions of every simulated joint in embodiment order, wire units "
              "(empty = the model's default pose)"),
    ParamSpec("paused", bool, False, "start paused (no physics, /clock stands still)"),
]


class MujocoSimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("mujoco_sim", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        emb = load_embodiment(self.p["embodiment"])
        known = [a.name for a in emb.arms]
        unknown = [a for a in self.p["arms"] if a not in known]
        if unknown or len(set(self.p["arms"])) != len(self.p["arms"]):
            raise ParameterError(f"parameter 'arms' = {list(self.p['arms'])}: each must be one arm of '{emb.name}' "
                                 f"({', '.join(known)}), at most once")
        initial = np.asarray(self.p["initial_position"], dtype=np.float64) if self.p["initial_position"] else None
        n_joints = sum(len(emb.arm(a).joints) for a in self.p["arms"]) if self.p["arms"] else len(emb.joint_names)
        if initial is not None and initial.shape != (n_joints,):
            raise ParameterError(f"parameter 'initial_position': {initial.size} values for {n_joints} simulated joints")
        try:
            self.sim = MultiArmSim(emb, self.p["arms"], self.p["sim_model"], initial)
        except SimModelError as exc:
            raise ParameterError(f"parameter 'embodiment' = '{self.p['embodiment']}' / 'sim_model' = '{self.p['sim_model']}': {exc}") from None
        self.joints = list(self.sim.joints)
        self.paused = bool(self.p["paused"])
        self.clock_pub = self.create_publisher(ClockMsg, "/clock", qos.CLOCK)
        self.js_pub = self.create_publisher(JointState, self.p["joint_states_topic"], qos.JOINT_STATE)
        several = len(self.sim.arms) > 1
        self.command_topics: dict[str, str] = {}
        # per arm: a JointTrajectoryController while trajectories drive it (None: forward commands do)
        self.jtc: dict[str, SimJointTrajectoryController | None] = {}
        for arm in self.sim.arms:
            ns = f"/{arm.name}_{self.p['controller']}" if several else f"/{self.p['controller']}"
            self.command_topics[arm.name] = f"{ns}/commands"
            self.jtc[arm.name] = None
            self.create_subscription(Float64MultiArray, f"{ns}/commands", lambda msg, a=arm.name: self._on_commands(a, msg),
                                     qos.JOINT_STATE)
            self.create_subscription(JointTrajectory, f"{ns}/joint_trajectory",
                                     lambda msg, a=arm.name: self._on_trajectory(a, msg), qos.JOINT_STATE)
        self.cameras: list[tuple[str, str, object]] = []
        self._renderer = None
        if self.p["camera_rate_hz"] > 0:
            model_cams = self.sim.camera_names()
            if self.p["cameras"]:
                pairs = [c.split("=", 1) for c in self.p["cameras"]]
            else:
                pairs = [(c.name, self.sim.default_camera(c.name)) for c in emb.cameras]
                pairs = [p for p in pairs if p[1] is not None]
            for pair in pairs:
                if len(pair) != 2 or pair[1] not in model_cams:
                    raise ParameterError(f"parameter 'cameras': {'='.join(pair)!r} must be NAME=CAMERA with CAMERA one of {model_cams}")
            self._renderer = self.sim.renderer(self.p["camera_width"], self.p["camera_height"]) if pairs else None
            self._scene_opt = self.sim.scene_option()
            for name, cam in pairs:
                pub = self.create_publisher(Image, f"cameras/{name}/image_raw", qos.CAMERA_IMAGE)
                self.cameras.append((name, cam, pub))
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._wall0 = time.monotonic()
        self._sim_wall_offset = 0.0
        self._next_js = 0.0
        self._next_cam = 0.0
        self._paused_ticks = 0
        self.add_on_set_parameters_callback(self._on_params)
        self.create_timer(1.0 / self.p["step_rate_hz"], self._step, clock=self._steady)
        models = ", ".join(f"{a.name}: {s.spec.name}" for a, s in zip(self.sim.arms, self.sim.sims))
        self.get_logger().info(
            f"simulating '{emb.name}' ({models}) on one clock: commands on {', '.join(self.command_topics.values())} "
            "(or .../joint_trajectory), "
            f"joint states on {self.p['joint_states_topic']}, cameras {[c[0] for c in self.cameras]} "
            f"({', '.join(f'{c[0]}={c[1]}' for c in self.cameras)}) at {self.p['camera_rate_hz']} Hz")

    def _on_commands(self, arm: str, msg: Float64MultiArray) -> None:
        n = len(self.sim.arm_joints(arm))
        if len(msg.data) != n:
            self.get_logger().error(f"{self.command_topics[arm]}: command size {len(msg.data)} does not match number of joints {n}",
                                    throttle_duration_sec=1.0)
            return
        q = np.asarray(msg.data, dtype=np.float64)
        if not np.all(np.isfinite(q)):
            self.get_logger().error(f"{self.command_topics[arm]}: non-finite command ignored", throttle_duration_sec=1.0)
            return
        self.jtc[arm] = None
        self.sim.set_target(arm, q)

    def _on_trajectory(self, arm: str, msg: JointTrajectory) -> None:
        now = self.sim.time
        jtc = self.jtc[arm]
        if jtc is None:  # take over from where the forward commands left the arm
            sim = self.sim.sims[self.sim.arm_index(arm)]
            jtc = SimJointTrajectoryController(self.sim.arm_joints(arm), sim.target, allow_partial_joints_goal=True)
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9  # simulated time (the driver is on /clock)
        traj = Trajectory(list(msg.joint_names),
                          [TrajectoryPoint(p.time_from_start.sec + p.time_from_start.nanosec * 1e-9, list(p.positions),
                                           list(p.velocities)) for p in msg.points], stamp)
        err = jtc.receive(traj, now)
        if err:
            self.get_logger().error(f"{self.command_topics[arm].rsplit('/', 1)[0]}/joint_trajectory: {err}",
                                    throttle_duration_sec=1.0)
            return
        self.jtc[arm] = jtc

    def _stamp(self):
        return Time(nanoseconds=int(round(self.sim.time * 1e9))).to_msg()

    def _on_params(self, params):
        from rcl_interfaces.msg import SetParametersResult

        for prm in params:
            if prm.name == "paused":
                self.paused = bool(prm.value)
                if not self.paused:  # resume where it stopped: simulated time does not jump
                    self._sim_wall_offset = (time.monotonic() - self._wall0) * self.p["real_time_factor"] - self.sim.time
                self.get_logger().info("paused: /clock stands still" if self.paused else "running")
        return SetParametersResult(successful=True)

    def _publish_joint_states(self, stamp) -> None:
        pos, vel, eff = self.sim.read()
        js = JointState()
        js.header.stamp = stamp
        js.name = self.joints
        js.position, js.velocity, js.effort = pos.tolist(), vel.tolist(), eff.tolist()
        self.js_pub.publish(js)

    def _step(self) -> None:
        if not self.context.ok():  # shutting down (SIGTERM): publishing now would fail
            return
        if self.paused:
            # a paused simulator still reports where the arm is (same stamp), at about 50 Hz wall
            self._paused_ticks += 1
            if self._paused_ticks % max(1, int(self.p["step_rate_hz"] / 50)) == 0:
                self._publish_joint_states(self._stamp())
            return
        wall = time.monotonic()
        due = (wall - self._wall0) * self.p["real_time_factor"] - self._sim_wall_offset
        lag = due - self.sim.time
        if lag > 0.25:  # rendering or the machine fell behind: skip rather than race
            self._sim_wall_offset += lag - 0.25
            lag = 0.25
        n = int(lag / self.sim.timestep)
        if n <= 0:
            return
        driven = [(a, c) for a, c in self.jtc.items() if c is not None]
        if driven:  # JTC samples its trajectory every control step (here: every physics step)
            for _ in range(n):
                for arm, jtc in driven:
                    self.sim.set_target(arm, jtc.sample(self.sim.time + self.sim.timestep)[0])
                self.sim.step(1)
        else:
            self.sim.step(n)
        stamp = self._stamp()
        clock = ClockMsg()
        clock.clock = stamp
        self.clock_pub.publish(clock)
        t = self.sim.time
        if t >= self._next_js:
            self._next_js = t + 1.0 / self.p["joint_state_rate_hz"]
            self._publish_joint_states(stamp)
        if self._renderer is not None and t >= self._next_cam:
            self._next_cam = t + 1.0 / self.p["camera_rate_hz"]
            self.sim.sync_scene()
            frames: dict[str, bytes] = {}  # cameras sharing a model camera render it once
            for name, cam, pub in self.cameras:
                if cam not in frames:
                    frames[cam] = self.sim.render(self._renderer, cam, self._scene_opt).tobytes()
                img = Image()
                img.header.stamp = stamp
                img.header.frame_id = f"{name}_camera_optical_frame"
                img.height, img.width = self.p["camera_height"], self.p["camera_width"]
                img.encoding = "rgb8"
                img.step = self.p["camera_width"] * 3
                img.data = frames[cam]
                pub.publish(img)

    def destroy_node(self):
        if self._renderer is not None:
            try:
                self._renderer.close()
            except Exception:  # EGL teardown at exit is best effort
                pass
            self._renderer = None
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(MujocoSimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
