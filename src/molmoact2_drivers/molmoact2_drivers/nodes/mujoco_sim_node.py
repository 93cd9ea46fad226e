"""A MuJoCo simulated robot for the closed-loop main job: /clock, joint states and cameras.

It plays the robot's ros2_control side, so the driver drives it through the same ros2_control
bridge it uses for Franka (one tested path for both; the driver runs unchanged against sim or
robot):

  subscribes  <controller>/commands (std_msgs/Float64MultiArray, the arm's joints in config order,
              wire units; a message of the wrong size is ignored with an error, as
              forward_command_controller does)
  publishes   /clock (simulated time), <joint_states_topic> (sensor_msgs/JointState at
              joint_state_rate_hz of simulated time), cameras/<name>/image_raw (sensor_msgs/Image
              rgb8, offscreen-rendered at camera_rate_hz of simulated time)

The physics advances with wall time times ``real_time_factor`` on a steady timer; ``paused``
stops it (and /clock with it: a driver on use_sim_time then holds). Rendering on CPU is slow
(the arm meshes: ~0.1-0.25 s for a 160x120 frame here), so cameras default to a low rate and a
small size, with shadows, reflections, skybox and collision geometry off; on a GPU machine
(MUJOCO_GL=egl) raise both.
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

from molmoact2_common import qos  # noqa: E402
from molmoact2_common.embodiment import load_embodiment  # noqa: E402
from molmoact2_common.node_main import run_node  # noqa: E402
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, non_negative, positive  # noqa: E402

from ..core.sim.arm_sim import ArmSim  # noqa: E402
from ..core.sim.models import model_for_arm, model_spec  # noqa: E402

PARAMS = [
    ParamSpec("embodiment", str, "so101", "embodiment config name or path"),
    ParamSpec("arm", str, "", "arm to simulate ('' = the only arm)"),
    ParamSpec("sim_model", str, "", "MuJoCo model (so101, panda, yam; '' = the arm's sim_model)"),
    ParamSpec("controller", str, "arm_controller", "controller name: commands arrive on /<controller>/commands"),
    ParamSpec("joint_states_topic", str, "/joint_states", "where the simulated joint_state_broadcaster publishes"),
    ParamSpec("joint_state_rate_hz", float, 200.0, "joint state rate (simulated time)", positive, "> 0"),
    ParamSpec("real_time_factor", float, 1.0, "simulated seconds per wall second", positive, "> 0"),
    ParamSpec("step_rate_hz", float, 200.0, "how often the physics catches up with wall time", positive, "> 0"),
    ParamSpec("camera_rate_hz", float, 2.0, "camera frame rate (simulated time); 0 = no cameras", non_negative, ">= 0"),
    ParamSpec("camera_width", int, 160, "rendered width, px", positive, "> 0"),
    ParamSpec("camera_height", int, 120, "rendered height, px", positive, "> 0"),
    ParamSpec("cameras", "str[]", [], "NAME=MUJOCO_CAMERA pairs (publish cameras/NAME/image_raw); empty = each embodiment camera from the model's first camera"),
    ParamSpec("initial_position", "float[]", [], "initial joint positions, wire units (empty = the model's default pose)"),
    ParamSpec("paused", bool, False, "start paused (no physics, /clock stands still)"),
]


class MujocoSimNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("mujoco_sim", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        emb = load_embodiment(self.p["embodiment"])
        if not self.p["arm"] and len(emb.arms) != 1:
            raise ParameterError(f"parameter 'arm' = '': embodiment '{emb.name}' has arms {', '.join(a.name for a in emb.arms)}: name one")
        arm = emb.arm(self.p["arm"]) if self.p["arm"] else emb.arms[0]
        spec = model_spec(self.p["sim_model"]) if self.p["sim_model"] else model_for_arm(emb, arm)
        initial = np.asarray(self.p["initial_position"], dtype=np.float64) if self.p["initial_position"] else None
        if initial is not None and initial.shape != (len(arm.joints),):
            raise ParameterError(f"parameter 'initial_position': {initial.size} values for {len(arm.joints)} joints")
        self.joints = list(arm.joints)
        self.sim = ArmSim(spec, len(self.joints), arm.joints.index(arm.gripper) if arm.gripper else None, initial)
        self.paused = bool(self.p["paused"])
        self.clock_pub = self.create_publisher(ClockMsg, "/clock", qos.CLOCK)
        self.js_pub = self.create_publisher(JointState, self.p["joint_states_topic"], qos.JOINT_STATE)
        self.create_subscription(Float64MultiArray, f"/{self.p['controller']}/commands", self._on_commands, qos.JOINT_STATE)
        self.cameras: list[tuple[str, str, object]] = []
        self._renderer = None
        if self.p["camera_rate_hz"] > 0:
            model_cams = self.sim.camera_names()
            pairs = [c.split("=", 1) for c in self.p["cameras"]] if self.p["cameras"] else \
                [(c.name, model_cams[0]) for c in emb.cameras] if model_cams else []
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
        self.get_logger().info(
            f"simulating '{spec.name}' for arm '{arm.name}' of '{emb.name}': commands on /{self.p['controller']}/commands, "
            f"joint states on {self.p['joint_states_topic']}, cameras {[c[0] for c in self.cameras]} at {self.p['camera_rate_hz']} Hz")

    def _on_commands(self, msg: Float64MultiArray) -> None:
        if len(msg.data) != len(self.joints):
            self.get_logger().error(f"command size {len(msg.data)} does not match number of joints {len(self.joints)}",
                                    throttle_duration_sec=1.0)
            return
        q = np.asarray(msg.data, dtype=np.float64)
        if not np.all(np.isfinite(q)):
            self.get_logger().error("non-finite command ignored", throttle_duration_sec=1.0)
            return
        self.sim.set_target(q)

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
            for name, cam, pub in self.cameras:
                self._renderer.update_scene(self.sim.data, camera=cam, scene_option=self._scene_opt)
                rgb = self._renderer.render()
                img = Image()
                img.header.stamp = stamp
                img.header.frame_id = f"{name}_camera_optical_frame"
                img.height, img.width = rgb.shape[:2]
                img.encoding = "rgb8"
                img.step = rgb.shape[1] * 3
                img.data = rgb.tobytes()
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
