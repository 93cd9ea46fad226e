"""MuJoCo simulation: the packages' models track targets; the sim node closes the loop with the
driver through the ros2_control bridge on simulated time; a stalled sim clock makes the driver hold."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")

from molmoact2_drivers.core.sim.arm_sim import ArmSim  # noqa: E402
from molmoact2_drivers.core.sim.models import MODELS  # noqa: E402

from test_driver_node import Probe  # noqa: E402

SO101 = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


@pytest.mark.parametrize("name,n,gripper", [("so101", 6, 5), ("panda", 8, 7), ("yam", 7, 6)])
def test_each_sim_model_tracks_a_joint_target_including_the_torque_driven_ones(name, n, gripper):
    sim = ArmSim(MODELS[name], n, gripper)
    q0, _, _ = sim.read()
    target = q0.copy()
    target[sim.arm_index] += 0.15
    target[gripper] = 0.9
    sim.set_target(target)
    sim.step(int(2.0 / sim.timestep))
    q, dq, _ = sim.read()
    assert np.all(np.isfinite(q))
    np.testing.assert_allclose(q[sim.arm_index], target[sim.arm_index], atol=0.05)
    assert np.abs(dq).max() < 0.05  # settled, not oscillating
    assert abs(q[gripper] - 0.9) < 0.15


def test_in_process_mujoco_backend_runs_under_the_driver_core():
    from molmoact2_common.embodiment import load_embodiment
    from molmoact2_drivers.core.backends import create_backend
    from molmoact2_drivers.core.driver_core import ChunkInput
    from molmoact2_drivers.core.factory import build_driver

    emb = load_embodiment("so101")
    arm = emb.arms[0]
    backend = create_backend(arm, type_name="mujoco", embodiment=emb)
    assert backend.simulated
    d = build_driver(emb, arm, backend, {"execute_steps": 0, "chunk_timeout_s": 5.0})
    d.configure()
    d.activate(0.0, 0.0)
    goal = np.array([0.3, -0.3, 0.3, 0.2, 0.0, 0.5])
    d.on_chunk(ChunkInput(SO101, 0.0, 1 / 30, 30, np.linspace(np.zeros(6), goal, 30).ravel(), 1), 0.0)
    # drive the loop on the simulation's own clock
    for _ in range(250):
        now = backend.sim.time
        d.tick(now, now)
        backend.sim.step(5)  # 10 ms per tick
    np.testing.assert_allclose(d.last_command, goal, atol=1e-9)
    np.testing.assert_allclose(backend.read_state().positions, goal, atol=0.06)


def _sim_and_driver(*driver_params):
    from support.ros_harness import ChildProcess

    sim = ChildProcess.python_module(
        "molmoact2_drivers.nodes.mujoco_sim_node", "--ros-args", "-p", "embodiment:=so101",
        "-p", "controller:=arm_controller", "-p", "camera_rate_hz:=1.0", "-p", "camera_width:=64", "-p", "camera_height:=48",
        "-p", "cameras:=[front=front]")
    args = ["--ros-args", "-r", "__ns:=/so101", "-p", "use_sim_time:=true", "-p", "embodiment:=so101",
            "-p", "backend:=ros2_control", "-p", "autostart:=activate", "-p", "execute_steps:=0",
            "-p", "backend_options:='{\"command_topic\": \"/arm_controller/commands\", \"simulated\": true}'"]
    for p in driver_params:
        args += ["-p", p]
    drv = ChildProcess.python_module("molmoact2_drivers.nodes.driver_node", *args)
    return sim, drv


@pytest.mark.ros
@pytest.mark.slow
def test_sim_node_closes_the_loop_with_the_driver_on_sim_time_and_renders_a_camera(ros):
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image

    from molmoact2_common import qos

    sim, drv = _sim_and_driver("chunk_timeout_s:=5.0")
    try:
        probe = Probe(ros, ns="/so101/", parameter_overrides=[Parameter("use_sim_time", value=True)])
        images, clocks = [], []
        probe.node.create_subscription(Image, "/cameras/front/image_raw", images.append, qos.CAMERA_IMAGE)
        probe.node.create_subscription(Clock, "/clock", clocks.append, qos.CLOCK)
        assert probe.wait_status(lambda s: s.actuation_enabled, 30), drv.output() + sim.output()
        assert ros.spin_until(lambda: len(clocks) > 5 and probe.node.get_clock().now().nanoseconds > 0, 10)
        goal = np.array([0.3, -0.3, 0.3, 0.2, 0.0, 0.6])
        probe.send_chunk(np.linspace(np.zeros(6), goal, 30))
        ok = ros.spin_until(lambda: probe.joint_states and np.allclose(probe.joint_states[-1].position, goal, atol=0.06), 20)
        assert ok, f"{probe.latest_status()}\n{drv.output()}\n{sim.output()}"
        assert probe.latest_status().chunks_refused == 0
        assert ros.spin_until(lambda: len(images) > 0, 15), sim.output()
        img = images[-1]
        assert (img.width, img.height, img.encoding) == (64, 48, "rgb8") and len(img.data) == 64 * 48 * 3
        assert np.frombuffer(bytes(img.data), np.uint8).std() > 0  # a rendered scene, not a blank frame
    finally:
        drv.stop()
        sim.stop()


@pytest.mark.ros
@pytest.mark.slow
def test_a_sim_whose_clock_stalls_makes_the_driver_hold_instead_of_racing(ros):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    sim, drv = _sim_and_driver("chunk_timeout_s:=10.0")
    try:
        probe = Probe(ros, ns="/so101/", parameter_overrides=[Parameter("use_sim_time", value=True)])
        assert probe.wait_status(lambda s: s.actuation_enabled, 30), drv.output() + sim.output()
        assert ros.spin_until(lambda: probe.node.get_clock().now().nanoseconds > 0, 10)
        goal = np.full(6, 0.5)
        probe.send_chunk(np.linspace(np.zeros(6), goal, 150))  # 5 s of motion
        assert ros.spin_until(lambda: probe.commanded and probe.commanded[-1].position[0] > 0.05, 15), drv.output()
        setp = probe.node.create_client(SetParameters, "/mujoco_sim/set_parameters")
        assert ros.wait_for_service(setp, 10)
        req = SetParameters.Request()
        req.parameters = [Parameter("paused", value=True).to_parameter_msg()]
        assert ros.call(setp, req).results[0].successful
        ros.spin_until(lambda: False, 0.3)  # the last in-flight commands drain
        n = len(probe.commanded)
        assert ros.spin_until(lambda: len(probe.commanded) > n + 50, 10)  # the servo loop keeps ticking...
        held = np.array([m.position for m in probe.commanded[n:]])
        assert np.ptp(held, axis=0).max() < 1e-12, "...but with the clock stalled the target must not move"
        assert held[-1][0] < 0.45
        assert probe.wait_status(lambda s: "not advanced" in s.last_event, 5)
        req.parameters = [Parameter("paused", value=False).to_parameter_msg()]
        assert ros.call(setp, req).results[0].successful
        assert ros.spin_until(lambda: probe.commanded[-1].position[0] > held[-1][0] + 0.02, 10), drv.output()
    finally:
        drv.stop()
        sim.stop()


@pytest.mark.ros
@pytest.mark.slow
def test_sim_node_plays_franka_jtc_and_the_driver_drives_the_panda_through_joint_trajectories(ros):
    # the main job's --robot franka_droid path: the driver's shipped Franka config (JTC, arm joints
    # only, gripper undriven) against the sim node's /arm_controller/joint_trajectory
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from molmoact2_common import qos
    from support.ros_harness import ChildProcess

    arm = [f"fr3_joint{i}" for i in range(1, 8)]
    reset = [0.0, -np.pi / 5, 0.0, -4 * np.pi / 5, 0.0, 3 * np.pi / 5, 0.0]
    sim = ChildProcess.python_module(
        "molmoact2_drivers.nodes.mujoco_sim_node", "--ros-args", "-p", "embodiment:=franka_droid",
        "-p", "controller:=arm_controller", "-p", "camera_rate_hz:=0.0")
    drv = ChildProcess.python_module(
        "molmoact2_drivers.nodes.driver_node", "--ros-args", "-r", "__ns:=/franka", "-p", "use_sim_time:=true",
        "-p", "embodiment:=franka_droid", "-p", "backend:=ros2_control", "-p", "autostart:=activate", "-p", "execute_steps:=0",
        "-p", "chunk_timeout_s:=5.0",
        "-p", "backend_options:='{\"controller\": \"/arm_controller\", \"simulated\": true, \"state_timeout_s\": 2.0}'",
        "-r", "joint_states:=/franka/driver/joint_states")
    try:
        probe = Probe(ros, ns="/franka/", parameter_overrides=[Parameter("use_sim_time", value=True)])
        trajs, sim_states = [], []
        probe.node.create_subscription(JointTrajectory, "/arm_controller/joint_trajectory", trajs.append, qos.JOINT_STATE)
        probe.node.create_subscription(JointState, "/joint_states", sim_states.append, qos.JOINT_STATE)
        assert probe.wait_status(lambda s: s.actuation_enabled, 30), drv.output() + sim.output()
        assert ros.spin_until(lambda: probe.node.get_clock().now().nanoseconds > 0 and sim_states, 10)
        goal = np.array(reset) + 0.15
        probe.send_chunk(np.linspace(reset + [0.5], list(goal) + [1.0], 30), names=arm + ["gripper"])
        ok = ros.spin_until(lambda: sim_states and np.allclose(sim_states[-1].position[:7], goal, atol=0.05), 20)
        assert ok, f"{probe.latest_status()}\n{drv.output()}\n{sim.output()}"
        assert trajs and all(list(t.joint_names) == arm for t in trajs)
        assert "joint_trajectory:" not in sim.output(), "the sim's JTC rejected a trajectory"
        assert abs(sim_states[-1].position[7] - 0.5) < 0.05  # the gripper is not driven, as on the robot
    finally:
        drv.stop()
        sim.stop()


def test_so101_wrist_camera_differs_from_front_and_moves_with_the_gripper():
    # the wrist camera used to be a copy of the front camera: the model got two identical images
    from molmoact2_common.embodiment import load_embodiment
    from molmoact2_drivers.core.sim.multi_arm import MultiArmSim

    emb = load_embodiment("so101")
    sim = MultiArmSim(emb)
    cams = {c.name: sim.default_camera(c.name) for c in emb.cameras}
    assert cams == {"front": "front", "wrist": "wrist"}
    m = sim.scene_model
    wrist_cam = m.camera("wrist")
    assert m.body(int(m.cam_bodyid[wrist_cam.id])).name == "gripper"  # mounted on the gripper, as on the real arm
    renderer = sim.renderer(96, 72)
    opt = sim.scene_option()

    def frames():
        sim.sync_scene()
        return {name: sim.render(renderer, cam, opt).astype(np.float64) for name, cam in cams.items()}

    try:
        before = frames()
        q = sim.read()[0].copy()
        q[SO101.index("wrist_flex")] += 0.8  # the wrist alone moves
        sim.set_target("arm", q)
        sim.step(int(1.5 / sim.timestep))
        assert abs(sim.read()[0][SO101.index("wrist_flex")] - q[SO101.index("wrist_flex")]) < 0.1
        after = frames()
    finally:
        renderer.close()
    for name in cams:
        assert before[name].std() > 5, f"{name}: a blank frame"
    assert np.abs(before["wrist"] - before["front"]).mean() > 10, "the wrist image is the front image"
    wrist_change = np.abs(after["wrist"] - before["wrist"]).mean()
    front_change = np.abs(after["front"] - before["front"]).mean()
    # the wrist view swings with the gripper; the front camera sees the same static scene with a
    # small arm in it move a little
    assert wrist_change > 10 and wrist_change > 3 * front_change, (wrist_change, front_change)


def test_franka_sim_wrist_camera_is_the_panda_hand_camera_not_the_external_one():
    from molmoact2_common.embodiment import load_embodiment
    from molmoact2_drivers.core.sim.multi_arm import MultiArmSim

    emb = load_embodiment("franka_droid")
    sim = MultiArmSim(emb)
    assert {c.name: sim.default_camera(c.name) for c in emb.cameras} == {"external": "front", "wrist": "handcam_rgb"}
    m = sim.scene_model
    assert m.body(int(m.cam_bodyid[m.camera("handcam_rgb").id])).name != "world"  # on the hand, moving with it


def test_render_mesh_simplification_draws_fewer_triangles_looks_the_same_and_leaves_the_physics_alone():
    # CPU rendering is vertex-bound: the SO-101's 322 k triangles cost ~140 ms a frame
    from molmoact2_common.embodiment import load_embodiment
    from molmoact2_drivers.core.sim.arm_sim import simplify_render_meshes
    from molmoact2_drivers.core.sim.multi_arm import MultiArmSim

    emb = load_embodiment("so101")
    full, simple = MultiArmSim(emb), MultiArmSim(emb)
    before, after = simplify_render_meshes(simple.scene_model, 0.002)
    assert before > 300_000 and after < 0.1 * before
    assert simplify_render_meshes(simple.scene_model, 0.002) == (after, after)  # idempotent
    graph = full.scene_model.mesh_graph.copy()
    np.testing.assert_array_equal(simple.scene_model.mesh_graph, graph)  # collision hulls untouched
    for sim in (full, simple):
        q = sim.read()[0].copy()
        q[SO101.index("shoulder_pan")] += 0.4
        q[SO101.index("elbow_flex")] -= 0.3
        sim.set_target("arm", q)
        sim.step(int(0.8 / sim.timestep))
    np.testing.assert_array_equal(full.sims[0].data.qpos, simple.sims[0].data.qpos)  # the same physics, bit for bit
    frames = {}
    for label, sim in (("full", full), ("simple", simple)):
        renderer = sim.renderer(160, 120)
        try:
            sim.sync_scene()
            frames[label] = {cam: sim.render(renderer, cam, sim.scene_option()).astype(np.float64) for cam in ("front", "wrist")}
        finally:
            renderer.close()
    for cam in ("front", "wrist"):
        diff = np.abs(frames["full"][cam] - frames["simple"][cam])
        assert diff.mean() < 2.0, f"{cam}: the simplified meshes look different (mean |diff| {diff.mean():.2f})"
        assert frames["simple"][cam].std() > 5
