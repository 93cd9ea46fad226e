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

Tasks (``task``, core.sim.tasks; '' = none): the scene is randomised from ``task_seed`` (episode
k uses seed ``task_seed + k``) and success is detected from the simulator's state:

  publishes   ~/task/success (std_msgs/Bool, latched: on change and at task_rate_hz), ~/task/state
              (std_msgs/String, JSON of core.sim.tasks.TaskStatus plus ``phase``: 'resetting' while
              the services in reset_services answer, then 'running'), and the task's instruction on
              instruction_topic (std_msgs/String, latched; '' = not published)
  service     ~/reset_episode (std_srvs/Trigger): every arm to its home pose at rest, the scene
              re-randomised with the next seed, the next episode published; arm commands are ignored
              (the arms hold home) until each service of reset_services (std_srvs/Trigger: the
              drivers' ~/clear_faults, so they hold where the arm now is but an e-stop stays
              latched; the policy's ~/reset) has answered

Pacing: the physics advances with wall time times ``real_time_factor`` on a steady timer, and it
never steps past a camera frame that is due before rendering it, so cameras render at exactly
camera_rate_hz of simulated time; when rendering (or the machine) cannot keep up, simulated time
runs slower than requested instead of dropping frames. ``lockstep``: once a chunk has arrived on
lockstep_chunk_topic, simulated time stops at that chunk's stamp + lockstep_latency_s until the
next chunk arrives (inference then looks like lockstep_latency_s of simulated time whatever it
costs on this machine; lockstep_timeout_s of wall time without a chunk releases it). ``paused``
stops it (and /clock with it: a driver on use_sim_time then holds). Rendering on CPU is slow and
vertex-bound (the SO-101 meshes as modelled: ~0.14 s for a 160x120 frame here), so meshes are
drawn simplified on a render_mesh_cell_m grid (2 mm: front 29 ms, wrist 20 ms; the physics keeps
the full meshes), cameras default to a low rate and a small size, with shadows, reflections,
skybox and collision geometry off; on a GPU machine (MUJOCO_GL=egl) raise the rate and size and
set render_mesh_cell_m to 0. A single arm whose model
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
from std_msgs.msg import Bool, Float64MultiArray, String  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from molmoact2_common import qos  # noqa: E402
from molmoact2_common.embodiment import load_embodiment  # noqa: E402
from molmoact2_common.node_main import run_node  # noqa: E402
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, non_negative, positive  # noqa: E402

from ..core.sim.models import SimModelError  # noqa: E402
from ..core.sim.multi_arm import MultiArmSim  # noqa: E402
from ..core.sim.pacing import physics_steps  # noqa: E402
from ..core.sim.tasks import TASKS, make_task  # noqa: E402
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
    ParamSpec("blank_cameras", bool, False, "publish black frames at the camera rate instead of renders (a control: "
              "does a policy use its images?)"),
    ParamSpec("render_mesh_cell_m", float, 0.002, "meshes are drawn simplified by vertex clustering on this grid, m "
              "(CPU rendering is vertex-bound; 0 = as modelled; the physics always uses the full meshes)", non_negative, ">= 0"),
    ParamSpec("cameras", "str[]", [], "NAME=MUJOCO_CAMERA pairs (publish cameras/NAME/image_raw); empty = each embodiment camera "
              "from its default model camera (one arm's own scene: its first camera; built scene: <arm>_wrist for a camera "
              "named like an arm, else overview)"),
    ParamSpec("initial_position", "float[]", [], "initial joint positions of every simulated joint in embodiment order, wire units "
              "(empty = the model's default pose)"),
    ParamSpec("paused", bool, False, "start paused (no physics, /clock stands still)"),
    ParamSpec("task", str, "", "task with success detection ('' = none)", choices=("", *sorted(TASKS))),
    ParamSpec("task_seed", int, 0, "episode k's scene is randomised with seed task_seed + k", non_negative, ">= 0"),
    ParamSpec("task_rate_hz", float, 10.0, "~/task/state and ~/task/success rate (simulated time; success also on change)",
              positive, "> 0"),
    ParamSpec("task_radius_m", float, 0.0, "success distance of the tool point to its goal, m (0 = the task's default)",
              non_negative, ">= 0"),
    ParamSpec("task_hold_s", float, -1.0, "seconds the success condition must hold (-1 = the task's default)",
              lambda v: v >= -1, ">= -1"),
    ParamSpec("task_start_jitter_rad", float, 0.0, "each episode starts with every arm joint at home + a uniform draw in "
              "+-this, from the episode's seed (0 = at home)", non_negative, ">= 0"),
    ParamSpec("instruction_topic", str, "", "publish the task's instruction here (std_msgs/String, latched); '' = not"),
    ParamSpec("reset_services", "str[]", [], "std_srvs/Trigger services ~/reset_episode calls after homing the arms "
              "(the drivers' ~/clear_faults, the policy's ~/reset)"),
    ParamSpec("reset_timeout_s", float, 5.0, "wall seconds ~/reset_episode waits for reset_services before resuming", positive, "> 0"),
    ParamSpec("lockstep", bool, False, "hold simulated time at the newest chunk's stamp + lockstep_latency_s until the next chunk"),
    ParamSpec("lockstep_chunk_topic", str, "action_chunk", "lockstep: the policy's ActionChunk topic"),
    ParamSpec("lockstep_latency_s", float, 0.1, "lockstep: simulated inference latency, s", positive, "> 0"),
    ParamSpec("lockstep_timeout_s", float, 3.0, "lockstep: wall seconds without a chunk before the simulation runs free", positive, "> 0"),
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
        self.task = None
        if self.p["task"]:
            opts = {}
            if self.p["task_radius_m"] > 0:
                opts["radius_m"] = self.p["task_radius_m"]
            if self.p["task_hold_s"] >= 0:
                opts["hold_s"] = self.p["task_hold_s"]
            opts["start_jitter_rad"] = self.p["task_start_jitter_rad"]
            try:
                self.task = make_task(self.p["task"], emb.name, **opts)
            except SimModelError as exc:
                raise ParameterError(f"parameter 'task' = '{self.p['task']}' on '{emb.name}': {exc}") from None
        try:
            self.sim = MultiArmSim(emb, self.p["arms"], self.p["sim_model"], initial,
                                   markers=self.task.markers(emb) if self.task else ())
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
            self._renderer = self.sim.renderer(self.p["camera_width"], self.p["camera_height"],
                                              self.p["render_mesh_cell_m"]) if pairs else None
            self._scene_opt = self.sim.scene_option()
            for name, cam in pairs:
                pub = self.create_publisher(Image, f"cameras/{name}/image_raw", qos.CAMERA_IMAGE)
                self.cameras.append((name, cam, pub))
        self._setup_task(emb)
        self._lock_bound: float | None = None
        self._lock_wall = 0.0
        self.lockstep_waits = 0
        if self.p["lockstep"]:
            from molmoact2_msgs.msg import ActionChunk

            self.create_subscription(ActionChunk, self.p["lockstep_chunk_topic"], self._on_lockstep_chunk, qos.ACTION_CHUNK)
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

    # -- tasks ------------------------------------------------------------------------------
    def _setup_task(self, emb) -> None:
        self._phase = "running"
        self._reset_calls: list[str] = []  # services still to answer this reset
        self._reset_fire_at: float | None = None  # simulated time to call them (after the home pose is published)
        self._reset_deadline = 0.0
        self._next_task = 0.0
        self._last_success: bool | None = None
        self._status = None
        if self.task is None:
            return
        task = self.task
        try:
            task.check(self.sim)
        except SimModelError as exc:
            raise ParameterError(f"parameter 'task' = '{self.p['task']}' on '{emb.name}': {exc}") from None
        self.success_pub = self.create_publisher(Bool, "~/task/success", qos.LATCHED)
        self.state_pub = self.create_publisher(String, "~/task/state", qos.LATCHED)
        self.instruction_pub = (self.create_publisher(String, self.p["instruction_topic"], qos.INSTRUCTION)
                                if self.p["instruction_topic"] else None)
        self.create_service(Trigger, "~/reset_episode", self._on_reset_episode)
        self._reset_clients = {name: self.create_client(Trigger, name) for name in self.p["reset_services"]}
        task.reset(self.sim, self.p["task_seed"], episode=0)
        self._publish_instruction()
        self._publish_task(force=True)
        self.get_logger().info(f"task '{task.name}' ({task.instruction!r}): episode 0, seed {task.seed}, "
                               f"goals {', '.join(f'{k}={[round(float(x), 3) for x in v]}' for k, v in task.goals.items())}")

    def _publish_instruction(self) -> None:
        if self.task is not None and self.instruction_pub is not None:
            self.instruction_pub.publish(String(data=self.task.instruction))

    def _publish_task(self, force: bool = False) -> None:
        import json

        st = self.task.evaluate(self.sim)
        self._status = st
        changed = st.success != self._last_success
        if changed or force or self.sim.time >= self._next_task:
            self._next_task = self.sim.time + 1.0 / self.p["task_rate_hz"]
            self._last_success = st.success
            self.success_pub.publish(Bool(data=bool(st.success)))
            d = st.as_dict()
            d["phase"] = self._phase
            self.state_pub.publish(String(data=json.dumps(d)))
            if changed and st.success:
                self.get_logger().info(f"task '{self.task.name}' episode {st.episode}: SUCCESS at {st.episode_time:.2f} s")

    def _on_reset_episode(self, request, response):
        episode = self.task.episode + 1
        seed = self.p["task_seed"] + episode
        self.task.reset(self.sim, seed, episode=episode)
        for arm in self.jtc:
            self.jtc[arm] = None
        self._lock_bound = None
        self._phase = "resetting" if self._reset_clients else "running"
        self._reset_calls = list(self._reset_clients)
        self._reset_fire_at = self.sim.time + 0.05  # the drivers read the home pose from joint states first
        self._reset_deadline = time.monotonic() + self.p["reset_timeout_s"]
        # the 'resetting' state goes out before the home pose: whoever commands the arms (the scripted
        # expert) hears that the episode is over before the drivers see the jump and fault on it
        self._publish_task(force=True)
        self._publish_instruction()
        self._publish_joint_states(self._stamp())
        response.success = True
        response.message = (f"episode {episode} (seed {seed}): arms home, scene re-randomised"
                            + (f"; resetting {', '.join(self._reset_calls)}" if self._reset_calls else ""))
        self.get_logger().info(response.message)
        return response

    def _service_resets(self) -> None:
        """Call reset_services once the home pose is out; resume when all answered (or on timeout)."""
        if self._phase != "resetting":
            return
        if self._reset_fire_at is not None and self.sim.time >= self._reset_fire_at:
            self._reset_fire_at = None
            for name in list(self._reset_calls):
                client = self._reset_clients[name]
                if not client.service_is_ready():
                    self.get_logger().warning(f"reset_episode: service {name} is not available: skipped")
                    self._reset_calls.remove(name)
                    continue
                client.call_async(Trigger.Request()).add_done_callback(lambda f, n=name: self._reset_answered(n, f))
        if not self._reset_calls or time.monotonic() > self._reset_deadline:
            if self._reset_calls:
                self.get_logger().warning(f"reset_episode: no answer from {', '.join(self._reset_calls)} in "
                                          f"{self.p['reset_timeout_s']} s: resuming")
            self._reset_calls = []
            self._phase = "running"
            self._publish_task(force=True)

    def _reset_answered(self, name: str, future) -> None:
        try:
            res = future.result()
            if not res.success:
                self.get_logger().warning(f"reset_episode: {name} refused: {res.message}")
        except Exception as exc:  # the service's process went away
            self.get_logger().warning(f"reset_episode: {name} failed: {exc}")
        if name in self._reset_calls:
            self._reset_calls.remove(name)

    def _on_lockstep_chunk(self, msg) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self._lock_bound = max(self._lock_bound or 0.0, stamp + self.p["lockstep_latency_s"])
        self._lock_wall = time.monotonic()

    def _on_commands(self, arm: str, msg: Float64MultiArray) -> None:
        if self._phase == "resetting":  # the arms hold home until the drivers have re-read it
            return
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
        if self._phase == "resetting":
            return
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
        if self._lock_bound is not None:
            if wall - self._lock_wall > self.p["lockstep_timeout_s"]:
                self.get_logger().warning(f"lockstep: no chunk for {self.p['lockstep_timeout_s']} s: running free")
                self._lock_bound = None
            elif due > self._lock_bound:  # wait for the policy; no catching up afterwards
                self._sim_wall_offset += due - max(self._lock_bound, self.sim.time)
                due = max(self._lock_bound, self.sim.time)
        lag = due - self.sim.time
        if lag > 0.25:  # rendering or the machine fell behind: simulated time slows rather than races
            self._sim_wall_offset += lag - 0.25
            lag = 0.25
        dt = self.sim.timestep
        # never step past a due camera frame: it renders at its simulated time, none is skipped
        n = physics_steps(lag, dt, self.sim.time, self._next_cam if self._renderer is not None else None)
        if n <= 0:
            if self.task is not None:
                self._service_resets()
            if self._lock_bound is not None and self.sim.time >= self._lock_bound - dt:
                # waiting for the policy: like a paused simulator, still report where the arm is
                self.lockstep_waits += 1
                if self.lockstep_waits % max(1, int(self.p["step_rate_hz"] / 50)) == 0:
                    self._publish_joint_states(self._stamp())
            return
        driven = [(a, c) for a, c in self.jtc.items() if c is not None]
        if driven:  # JTC samples its trajectory every control step (here: every physics step)
            for _ in range(n):
                for arm, jtc in driven:
                    self.sim.set_target(arm, jtc.sample(self.sim.time + self.sim.timestep)[0])
                self.sim.step(1)
        else:
            self.sim.step(n)
        if self.task is not None:
            self._publish_task()
            self._service_resets()
        stamp = self._stamp()
        clock = ClockMsg()
        clock.clock = stamp
        self.clock_pub.publish(clock)
        t = self.sim.time
        if t >= self._next_js:
            self._next_js = t + 1.0 / self.p["joint_state_rate_hz"]
            self._publish_joint_states(stamp)
        if self._renderer is not None and t >= self._next_cam - 1e-9:
            period = 1.0 / self.p["camera_rate_hz"]
            self._next_cam = self._next_cam + period if self._next_cam + period > t else t + period
            self.sim.sync_scene()
            frames: dict[str, bytes] = {}  # cameras sharing a model camera render it once
            for name, cam, pub in self.cameras:
                if cam not in frames:
                    frames[cam] = (bytes(self.p["camera_width"] * self.p["camera_height"] * 3) if self.p["blank_cameras"]
                                   else self.sim.render(self._renderer, cam, self._scene_opt).tobytes())
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
