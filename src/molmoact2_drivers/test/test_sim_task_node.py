"""The sim node's task interface over DDS: ~/reset_episode homes the arm, re-randomises the scene
with the next seed, and holds the arm home until the reset services (the drivers' ~/reset) answer."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

pytest.importorskip("mujoco")


@pytest.mark.ros
@pytest.mark.slow
def test_reset_episode_homes_the_arm_and_rerandomises(ros):
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, Float64MultiArray, String
    from std_srvs.srv import Trigger

    from molmoact2_common import qos
    from support.ros_harness import ChildProcess, RosTestContext

    sim = ChildProcess.python_module(
        "molmoact2_drivers.nodes.mujoco_sim_node", "--ros-args", "-p", "embodiment:=so101", "-p", "camera_rate_hz:=0.0",
        "-p", "task:=touch_cube", "-p", "task_seed:=40", "-p", "instruction_topic:=/instruction",
        "-p", "reset_services:=['/test_driver/reset']")
    release = threading.Event()
    driver_side = spinner = None
    try:
        node = ros.node("reset_probe")
        states, joints, success, instruction, resets = [], [], [], [], []
        node.create_subscription(String, "/mujoco_sim/task/state", lambda m: states.append(json.loads(m.data)), qos.LATCHED)
        node.create_subscription(Bool, "/mujoco_sim/task/success", lambda m: success.append(m.data), qos.LATCHED)
        node.create_subscription(String, "/instruction", lambda m: instruction.append(m.data), qos.INSTRUCTION)
        node.create_subscription(JointState, "/joint_states", joints.append, qos.JOINT_STATE)
        # the 'driver' answers its reset only when the test lets it (its own context and thread)
        driver_side = RosTestContext()

        def on_reset(req, resp):
            resets.append(req)
            release.wait(30)
            resp.success, resp.message = True, "test driver: holding where the arm is"
            return resp

        driver_side.node("test_driver").create_service(Trigger, "/test_driver/reset", on_reset)
        spinner = threading.Thread(target=driver_side.executor.spin, daemon=True)
        spinner.start()
        pub = node.create_publisher(Float64MultiArray, "/arm_controller/commands", qos.JOINT_STATE)
        reset = node.create_client(Trigger, "/mujoco_sim/reset_episode")
        assert ros.spin_until(lambda: states and joints and instruction, 30), sim.output()
        first = states[-1]
        assert first["episode"] == 0 and first["seed"] == 40 and first["phase"] == "running"
        assert instruction[-1] == "touch the cube" and success and success[-1] is False
        home = np.array(joints[-1].position)
        away = home + np.array([0.4, -0.3, 0.3, 0.2, 0.0, 0.0])
        moved = lambda: joints and np.allclose(joints[-1].position[:5], away[:5], atol=0.05)  # noqa: E731
        assert ros.publish_until(pub, Float64MultiArray(data=away.tolist()), moved, timeout=20), sim.output()

        assert ros.wait_for_service(reset, 10)
        res = ros.call(reset, Trigger.Request())
        assert res.success and "episode 1 (seed 41)" in res.message, res.message
        assert ros.spin_until(lambda: states[-1]["episode"] == 1, 10)
        second = states[-1]
        assert second["seed"] == 41 and second["phase"] == "resetting"
        assert np.linalg.norm(np.subtract(second["objects"]["block"][:2], first["objects"]["block"][:2])) > 1e-3
        assert ros.spin_until(lambda: resets, 10), sim.output()  # the sim called the 'driver' reset
        # while resetting, a driver's stale command does not pull the arm back: it stays home
        n = len(joints)
        ros.publish_until(pub, Float64MultiArray(data=away.tolist()), lambda: len(joints) > n + 100, timeout=10)
        # (home within the position servos' sag under gravity; the stale command is >= 0.2 rad away)
        assert np.allclose(joints[-1].position[:5], home[:5], atol=0.06), (joints[-1].position, home)
        assert states[-1]["phase"] == "resetting"
        release.set()  # the driver answers: the episode runs
        assert ros.spin_until(lambda: states[-1]["phase"] == "running", 15), sim.output()
        assert not states[-1]["success"]
        # running again: commands move the arm
        assert ros.publish_until(pub, Float64MultiArray(data=away.tolist()), moved, timeout=20), sim.output()
    finally:
        release.set()
        sim.stop()
        if driver_side is not None:
            driver_side.executor.shutdown(timeout_sec=5)
            if spinner is not None:
                spinner.join(10)
            driver_side.close()


def test_sim_node_refuses_a_task_its_embodiment_cannot_run():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "molmoact2_drivers.nodes.mujoco_sim_node", "--ros-args",
                          "-p", "embodiment:=yam_bimanual", "-p", "camera_rate_hz:=0.0", "-p", "task:=touch_cube"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "task" in out.stderr + out.stdout and "touch_cube" in out.stderr + out.stdout and "yam_bimanual" in out.stderr + out.stdout


def _clock_s(msg) -> float:
    return msg.clock.sec + msg.clock.nanosec * 1e-9


@pytest.mark.ros
@pytest.mark.slow
def test_lockstep_holds_simulated_time_at_the_chunk_stamp_plus_latency_until_the_next_chunk(ros):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState

    from molmoact2_common import qos
    from molmoact2_msgs.msg import ActionChunk
    from support.ros_harness import ChildProcess

    latency = 0.2
    sim = ChildProcess.python_module(
        "molmoact2_drivers.nodes.mujoco_sim_node", "--ros-args", "-p", "embodiment:=so101", "-p", "camera_rate_hz:=0.0",
        "-p", "lockstep:=true", "-p", "lockstep_chunk_topic:=/action_chunk", "-p", f"lockstep_latency_s:={latency}",
        "-p", "lockstep_timeout_s:=60.0")
    try:
        node = ros.node("lockstep_probe")
        clocks, joints = [], []
        node.create_subscription(Clock, "/clock", lambda m: clocks.append(_clock_s(m)), qos.CLOCK)
        node.create_subscription(JointState, "/joint_states", joints.append, qos.JOINT_STATE)
        pub = node.create_publisher(ActionChunk, "/action_chunk", qos.ACTION_CHUNK)
        assert ros.spin_until(lambda: clocks and clocks[-1] > 0.5, 30), sim.output()
        assert ros.wait_for_subscribers(pub, 1, 10)

        def chunk(stamp: float) -> ActionChunk:
            m = ActionChunk()
            m.header.stamp.sec, m.header.stamp.nanosec = int(stamp), int(round((stamp % 1) * 1e9))
            m.joint_names, m.horizon, m.dt, m.positions = ["shoulder_pan"], 1, 0.1, [0.0]
            return m

        s = clocks[-1]
        bound = s + latency
        # repeated (same stamp: idempotent) until the sim is seen holding at the bound
        assert ros.publish_until(pub, chunk(s), lambda: clocks[-1] >= bound - 0.01, timeout=20), (clocks[-5:], sim.output())
        n = len(joints)
        assert ros.spin_until(lambda: len(joints) > n + 30, 15), sim.output()  # joint states keep coming while it waits
        assert clocks[-1] <= bound + 0.005, (clocks[-1], bound)
        assert joints[-1].header.stamp.sec + joints[-1].header.stamp.nanosec * 1e-9 <= bound + 0.005
        # the next chunk releases it up to that chunk's stamp + latency
        assert ros.publish_until(pub, chunk(bound), lambda: clocks[-1] >= bound + latency - 0.01, timeout=20), sim.output()
        assert clocks[-1] <= bound + latency + 0.005
    finally:
        sim.stop()


@pytest.mark.ros
@pytest.mark.slow
def test_cameras_render_every_frame_at_their_simulated_rate_when_rendering_cannot_keep_up(ros):
    """At real_time_factor 1, 30 fps of 160x120 SO-101 renders cost more than a wall second on a
    CPU: simulated time must slow down rather than skip frames (no gap in the image stamps)."""
    from sensor_msgs.msg import Image

    from molmoact2_common import qos
    from support.ros_harness import ChildProcess

    sim = ChildProcess.python_module(
        "molmoact2_drivers.nodes.mujoco_sim_node", "--ros-args", "-p", "embodiment:=so101", "-p", "camera_rate_hz:=30.0",
        "-p", "real_time_factor:=1.0", "-p", "cameras:=[front=front, wrist=wrist]")
    try:
        node = ros.node("camera_rate_probe")
        stamps = []
        node.create_subscription(Image, "/cameras/front/image_raw",
                                 lambda m: stamps.append(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), qos.CAMERA_IMAGE)
        assert ros.spin_until(lambda: len(stamps) >= 25, 60), sim.output()
        gaps = np.diff(stamps[2:])  # (the first frames may be lost to discovery)
        timestep = 0.002
        assert gaps.max() <= 1 / 30 + timestep + 1e-6, np.round(gaps, 4)
        assert gaps.min() >= 1 / 30 - timestep - 1e-6, np.round(gaps, 4)
    finally:
        sim.stop()
