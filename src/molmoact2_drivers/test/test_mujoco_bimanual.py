"""Bimanual MuJoCo simulation: every arm of an embodiment in lockstep on one clock, each arm on its
own controller topic, one JointState of every joint, and the YAM scene's cameras (an overview and
a wrist camera per arm) rendered together."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")

from molmoact2_common.embodiment import load_embodiment  # noqa: E402
from molmoact2_drivers.core.sim.models import SimModelError  # noqa: E402
from molmoact2_drivers.core.sim.multi_arm import OVERVIEW, MultiArmSim  # noqa: E402

LEFT_GOAL = np.array([0.4, 1.0, 1.1, 0.2, -0.3, 0.5, 0.9])
RIGHT_GOAL = np.array([-0.4, 0.7, 1.3, -0.2, 0.3, -0.5, 0.1])


@pytest.fixture(scope="module")
def yam():
    return load_embodiment("yam_bimanual")


def test_both_yam_arms_step_in_lockstep_on_one_clock_and_each_tracks_its_own_target(yam):
    sim = MultiArmSim(yam)
    assert [a.name for a in sim.arms] == ["left", "right"]
    assert sim.joints == yam.joint_names  # left_joint1 .. right_gripper, embodiment order
    sim.set_target("left", LEFT_GOAL)
    sim.set_target("right", RIGHT_GOAL)
    sim.step(int(2.5 / sim.timestep))
    assert {round(s.time, 9) for s in sim.sims} == {round(sim.time, 9)}  # one simulated clock
    assert sim.time == pytest.approx(2.5, abs=2 * sim.timestep)
    q, dq, _ = sim.read()
    assert q.shape == (14,) and np.all(np.isfinite(q))
    np.testing.assert_allclose(q[sim.slices["left"]][:6], LEFT_GOAL[:6], atol=0.05)
    np.testing.assert_allclose(q[sim.slices["right"]][:6], RIGHT_GOAL[:6], atol=0.05)
    assert abs(q[sim.slices["left"]][6] - 0.9) < 0.1 and abs(q[sim.slices["right"]][6] - 0.1) < 0.1
    assert np.abs(dq).max() < 0.05  # settled


def test_one_arm_of_a_bimanual_embodiment_can_be_simulated_alone(yam):
    sim = MultiArmSim(yam, ["right"], initial=RIGHT_GOAL)
    assert sim.joints == yam.arm("right").joints
    np.testing.assert_allclose(sim.read()[0][:6], RIGHT_GOAL[:6], atol=1e-9)
    with pytest.raises(KeyError, match="not simulated"):
        sim.set_target("left", LEFT_GOAL)


def test_unknown_arm_and_wrong_initial_size_are_refused_with_their_names(yam):
    with pytest.raises(SimModelError, match="no arm named 'middle'"):
        MultiArmSim(yam, ["left", "middle"])
    with pytest.raises(SimModelError, match="7 values for the 14 joints"):
        MultiArmSim(yam, initial=np.zeros(7))


def test_yam_scene_places_each_arm_at_its_base_pose_and_its_wrist_camera_follows_the_tool(yam):
    sim = MultiArmSim(yam)
    assert sim.built_scene
    assert set(sim.camera_names()) == {OVERVIEW, "left_wrist", "right_wrist"}
    m, d = sim.scene_model, sim.scene_data
    for arm in yam.arms:
        base = d.xpos[m.body(f"{arm.name}_base").id]
        np.testing.assert_allclose(base, arm.extra["base_pose"]["xyz"], atol=1e-9)
    cam_before = d.cam_xpos[m.camera("left_wrist").id].copy()
    right_before = d.cam_xpos[m.camera("right_wrist").id].copy()
    sim.set_target("left", LEFT_GOAL)
    sim.step(int(1.0 / sim.timestep))
    sim.sync_scene()
    # the scene mirrors the physics: its joint positions are the arm's, its wrist camera moved with the arm
    np.testing.assert_allclose(d.qpos[m.joint("left_joint2").qposadr[0]], sim.read()[0][1], atol=1e-12)
    assert np.linalg.norm(d.cam_xpos[m.camera("left_wrist").id] - cam_before) > 0.05
    np.testing.assert_allclose(d.cam_xpos[m.camera("right_wrist").id], right_before, atol=1e-6)


def test_each_yam_camera_renders_its_own_view_of_the_scene(yam):
    sim = MultiArmSim(yam, initial=np.concatenate([LEFT_GOAL, RIGHT_GOAL]))
    assert [sim.default_camera(c.name) for c in yam.cameras] == [OVERVIEW, "left_wrist", "right_wrist"]
    renderer = sim.renderer(64, 48)
    try:
        sim.sync_scene()
        frames = {c: sim.render(renderer, c, sim.scene_option()).copy() for c in sim.camera_names()}
    finally:
        renderer.close()
    for cam, rgb in frames.items():
        assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
        assert rgb.std() > 5, f"{cam}: a blank frame"
    assert not np.array_equal(frames[OVERVIEW], frames["left_wrist"])
    assert not np.array_equal(frames["left_wrist"], frames["right_wrist"])


def test_a_single_arm_whose_model_has_cameras_keeps_rendering_its_own_scene():
    sim = MultiArmSim(load_embodiment("so101"))
    assert not sim.built_scene
    assert sim.scene_model is sim.sims[0].model
    assert sim.default_camera("front") == "front"
    assert sim.default_camera("wrist") == "wrist"  # the camera MjSpec mounted on its gripper


# -- the sim node over DDS --------------------------------------------------------------------

def _bimanual_sim_node(*params):
    from support.ros_harness import ChildProcess

    args = ["--ros-args", "-r", "__ns:=/sim", "-p", "embodiment:=yam_bimanual", "-p", "joint_states_topic:=/sim/joint_states",
            "-p", "camera_rate_hz:=2.0", "-p", "camera_width:=64", "-p", "camera_height:=48"]
    for p in params:
        args += ["-p", p]
    return ChildProcess.python_module("molmoact2_drivers.nodes.mujoco_sim_node", *args)


@pytest.mark.ros
@pytest.mark.slow
def test_one_sim_node_drives_both_yam_arms_on_their_own_controllers_with_one_clock_and_three_cameras(ros):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray

    from molmoact2_common import qos

    sim = _bimanual_sim_node()
    try:
        node = ros.node("bimanual_probe")
        states, clocks = [], []
        images = {c: [] for c in ("top", "left", "right")}
        js_sub = node.create_subscription(JointState, "/sim/joint_states", states.append, qos.JOINT_STATE)
        clock_sub = node.create_subscription(Clock, "/clock", clocks.append, qos.CLOCK)
        for cam, got in images.items():
            node.create_subscription(Image, f"/sim/cameras/{cam}/image_raw", got.append, qos.CAMERA_IMAGE)
        pubs = {arm: node.create_publisher(Float64MultiArray, f"/{arm}_arm_controller/commands", qos.JOINT_STATE)
                for arm in ("left", "right")}
        for pub in pubs.values():
            assert ros.wait_for_subscribers(pub, 1, 30), sim.output()
        assert ros.wait_for_publishers(js_sub, 1, 10) and ros.wait_for_publishers(clock_sub, 1, 10)
        assert clock_sub.get_publisher_count() == 1  # one simulator, one /clock
        assert ros.spin_until(lambda: len(states) > 3, 15), sim.output()
        yam = load_embodiment("yam_bimanual")
        assert list(states[-1].name) == yam.joint_names  # every joint of both arms in one message
        start = np.asarray(states[-1].position)

        def send(arm, values):
            msg = Float64MultiArray()
            msg.data = [float(v) for v in values]
            pubs[arm].publish(msg)

        send("right", np.zeros(3))  # the wrong size: ignored with an error, the arm stays put
        send("left", LEFT_GOAL)
        send("right", RIGHT_GOAL)
        goal = np.concatenate([LEFT_GOAL, RIGHT_GOAL])
        reached = ros.spin_until(lambda: np.allclose(states[-1].position, goal, atol=0.06), 20)
        assert reached, f"{np.round(states[-1].position, 3)}\n{sim.output()}"
        assert np.abs(np.asarray(states[-1].position) - start)[[0, 7]].min() > 0.3  # both arms moved
        assert "command size 3 does not match number of joints 7" in sim.output()
        assert ros.spin_until(lambda: all(len(v) > 0 for v in images.values()), 15), sim.output()
        for cam, got in images.items():
            img = got[-1]
            assert (img.width, img.height, img.encoding) == (64, 48, "rgb8"), cam
            assert np.frombuffer(bytes(img.data), np.uint8).std() > 5, f"{cam}: blank frame"
        # joint states and images carry the simulated clock
        stamps = [s.header.stamp.sec + s.header.stamp.nanosec * 1e-9 for s in states[-5:]]
        assert stamps == sorted(stamps) and stamps[-1] > 0
    finally:
        sim.stop()
