"""The ros2_control bridge against a simulated controller node over real DDS.

The simulated controller (tests/sim_controllers/position_controller.py) is, for the Franka
deployment, a JointTrajectoryController on /fr3_arm_controller/joint_trajectory with the FR3's
seven arm joints, as franka_ros2 configures ``fr3_arm_controller``; it validates and interpolates
trajectories as ros2_controllers' JTC does (molmoact2_drivers.core.sim.trajectory)."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from test_driver_node import Probe

pytestmark = pytest.mark.ros

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
FR3 = ARM + ["gripper"]  # the embodiment's joints: the DROID action's 7 joints + gripper
RESET = [0.0, -math.pi / 5, 0.0, -4 * math.pi / 5, 0.0, 3 * math.pi / 5, 0.0]
FINGER = 0.02  # a Franka Hand half open: fr3_finger_joint1 = 0.02 m of 0.04 m


def _controller(tmp_path, *extra, interface="joint_trajectory", joints=ARM, initial=RESET, rate=250.0):
    from support.ros_harness import ROOT, ChildProcess

    log, trace = tmp_path / "commands.log", tmp_path / "trace.log"
    proc = ChildProcess([sys.executable, str(ROOT / "tests" / "sim_controllers" / "position_controller.py"),
                         "--controller", "fr3_arm_controller", "--joints", ",".join(joints), "--interface", interface,
                         "--initial", ",".join(map(str, initial)), "--rate", str(rate), "--log", str(log), "--trace", str(trace),
                         "--extra-joints", f"fr3_finger_joint1={FINGER},fr3_finger_joint2={FINGER}", *extra],
                        name="sim_controller")
    return proc, log, trace


def _driver(*params):
    from support.ros_harness import ChildProcess

    args = ["--ros-args", "-r", "__ns:=/franka", "-p", "embodiment:=franka_droid", "-p", "autostart:=activate",
            "-p", "execute_steps:=0"]
    for p in params:
        args += ["-p", p]
    return ChildProcess.python_module("molmoact2_drivers.nodes.driver_node", *args)


def _trajectories(log) -> list[dict]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _rows(path, width) -> np.ndarray:
    if not path.exists():
        return np.zeros((0, 1 + width))
    rows = [list(map(float, line.split())) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if len(r) == 1 + width]  # a line being written as we read
    return np.array(rows) if rows else np.zeros((0, 1 + width))


def _arm_goal(delta):
    return np.array(RESET) + delta


def test_bridge_drives_a_forward_position_controller_through_its_commands_topic(ros, tmp_path):
    ctrl, log, _ = _controller(tmp_path, interface="forward_position")
    drv = _driver("backend_options:='{\"command_interface\": \"forward_position\", \"controller\": \"/fr3_arm_controller\"}'",
                  "chunk_timeout_s:=5.0")
    try:
        probe = Probe(ros, ns="/franka/")
        assert probe.wait_status(lambda s: s.actuation_enabled, 20), drv.output() + ctrl.output()
        assert probe.call("start").success
        goal = _arm_goal(0.2)
        probe.send_chunk(np.linspace(RESET + [0.5], list(goal) + [0.5], 20), names=FR3)
        assert ros.spin_until(lambda: probe.joint_states and np.allclose(probe.joint_states[-1].position[:7], goal, atol=1e-4), 15), \
            drv.output() + ctrl.output()
        cmds = _rows(log, 7)  # the forward controller gets the 7 controller joints, in its order
        assert len(cmds) > 20
        np.testing.assert_allclose(cmds[-1, 1:], goal, atol=1e-9)
    finally:
        drv.stop()
        ctrl.stop()


def test_franka_config_streams_time_parameterised_trajectories_of_the_arm_joints_only_to_fr3_arm_controller(ros, tmp_path):
    # the shipped config as is (no overrides): franka_ros2's JTC on /fr3_arm_controller/joint_trajectory
    ctrl, log, trace = _controller(tmp_path)
    drv = _driver("chunk_timeout_s:=5.0", "servo_rate_hz:=100.0")
    try:
        probe = Probe(ros, ns="/franka/")
        assert probe.wait_status(lambda s: s.actuation_enabled, 20), drv.output() + ctrl.output()
        assert probe.call("start").success
        goal = _arm_goal(np.full(7, 0.2))
        probe.send_chunk(np.linspace(RESET + [0.5], list(goal) + [0.9], 30), names=FR3)
        assert ros.spin_until(lambda: probe.joint_states and np.allclose(probe.joint_states[-1].position[:7], goal, atol=1e-4), 15), \
            drv.output() + ctrl.output()
        msgs = _trajectories(log)
        assert len(msgs) > 50
        bad = [m for m in msgs if not m["accepted"]]
        assert not bad, f"JTC rejected the bridge's trajectories: {bad[0]['error']}"
        for m in msgs:
            assert m["joint_names"] == ARM  # the controller's joints only: no gripper column
            assert m["stamp"] == 0.0  # start on arrival
            assert len(m["points"]) == 1 and m["points"][0]["velocities"] == []
            # time-parameterised: the point is due 30 ms after arrival, three 100 Hz servo periods
            assert m["points"][0]["time_from_start"] == pytest.approx(0.03)
        np.testing.assert_allclose(msgs[-1]["points"][0]["positions"], goal, atol=1e-9)
    finally:
        drv.stop()
        ctrl.stop()


def test_simulated_jtc_follows_the_streamed_trajectories_smoothly_not_in_servo_steps(ros, tmp_path):
    ctrl, log, trace = _controller(tmp_path, rate=250.0)
    drv = _driver("chunk_timeout_s:=5.0", "servo_rate_hz:=100.0")
    try:
        probe = Probe(ros, ns="/franka/")
        assert probe.wait_status(lambda s: s.actuation_enabled, 20), drv.output() + ctrl.output()
        assert probe.call("start").success
        goal = _arm_goal(np.r_[0.6, np.zeros(6)])  # joint 1 at up to its 1 rad/s limit
        probe.send_chunk(np.linspace(RESET + [0.5], list(goal) + [0.5], 60), names=FR3)  # 2 s at 30 Hz
        assert ros.spin_until(lambda: probe.joint_states and abs(probe.joint_states[-1].position[0] - goal[0]) < 1e-4, 15), \
            drv.output() + ctrl.output()
    finally:
        drv.stop()
        ctrl.stop()
    q = _rows(trace, 7)
    t, j1 = q[:, 0], q[:, 1]
    moving = (j1 > RESET[0] + 0.05) & (j1 < goal[0] - 0.05)
    assert moving.sum() > 100
    step = np.diff(j1)[moving[1:]]
    # the controller interpolates: the joint advances on (nearly) every 4 ms update between the
    # driver's 10 ms trajectories, instead of jumping at each one and standing still in between
    # (stepping, it would stand still on ~60 % of the updates; the margin is for a loaded machine
    # stalling the driver beyond the 30 ms lookahead)
    assert np.mean(step > 1e-7) > 0.8, f"joint 1 stood still on {np.mean(step <= 1e-7):.0%} of the controller's updates"
    assert step.min() > -1e-9  # never backwards on the way to the goal
    vel = step / np.diff(t)[moving[1:]]
    # no jumps: the joint's velocity limit is 1 rad/s; the room is for trajectories arriving in bursts
    assert vel.max() < 3.0, f"joint 1 jumped at {vel.max():.2f} rad/s"


def test_gripper_column_is_not_driven_but_counted_and_read_from_the_franka_hand_finger(ros, tmp_path):
    from molmoact2_common.embodiment import load_embodiment
    from molmoact2_drivers.ros_backends.ros2_control import create

    ctrl, log, _ = _controller(tmp_path)
    arm = load_embodiment("franka_droid").arms[0]
    node = ros.node("bridge_host")
    backend = create(arm, dict(arm.backend), node=node)
    try:
        backend.connect()
        reading = backend.read_state()
        np.testing.assert_allclose(reading.positions[:7], RESET, atol=1e-9)
        assert reading.positions[7] == pytest.approx(FINGER / 0.04)  # measured: the hand's opening, 0..1
        assert reading.extra["gripper"]["driven"] is False and reading.extra["gripper"]["measured"] is True
        for g in (0.5, 0.6, 0.6, 0.7):
            sent = backend.send_target(np.r_[RESET, g])
            assert sent[7] == g  # accepted, no error
        assert backend.undriven_counts() == {"gripper": 3}  # three commands asked for a change nothing carried out
        assert ros.spin_until(lambda: len(_trajectories(log)) >= 4, 10), ctrl.output()
        assert all(m["joint_names"] == ARM and m["accepted"] for m in _trajectories(log))
        assert backend.read_state().positions[7] == pytest.approx(FINGER / 0.04)  # still the hand's own opening
    finally:
        backend.close()
        ctrl.stop()


def test_an_arm_joint_on_no_controller_must_be_declared_undriven_and_is_named():
    from molmoact2_drivers.core.backend import BackendError
    from molmoact2_drivers.ros_backends.ros2_control import Ros2ControlBackend

    with pytest.raises(BackendError, match=r"joints gripper are on no controller.*undriven_joints"):
        Ros2ControlBackend("arm", FR3, None, controller="/fr3_arm_controller", command_interface="joint_trajectory",
                           controller_joints=ARM)
    with pytest.raises(BackendError, match="trajectory_lookahead_s = 0.0 must be > 0"):
        Ros2ControlBackend("arm", FR3, None, controller="/fr3_arm_controller", command_interface="joint_trajectory",
                           controller_joints=ARM, undriven_joints=["gripper"], trajectory_lookahead_s=0.0)
    b = Ros2ControlBackend("arm", FR3, None, controller="/fr3_arm_controller", command_interface="joint_trajectory",
                           controller_joints=ARM, undriven_joints=["gripper"])
    assert b.command_topic == "/fr3_arm_controller/joint_trajectory"


def test_controller_that_stops_publishing_joint_states_ends_in_error_with_a_clear_message(ros, tmp_path):
    from molmoact2_msgs.msg import DriverStatus

    ctrl, log, _ = _controller(tmp_path, "--stop-after", "500")  # 2 s of joint states at 250 Hz
    drv = _driver("backend_options:='{\"state_timeout_s\": 0.2}'")
    try:
        probe = Probe(ros, ns="/franka/")
        assert probe.wait_status(lambda s: s.actuation_enabled, 20), drv.output() + ctrl.output()
        assert probe.wait_status(lambda s: s.state == DriverStatus.STATE_ERROR, 10), drv.output()
        event = probe.latest_status().last_event
        assert "joint states" in event and "old" in event and "/joint_states" in event
        # holding: every trajectory after the fault repeats the last one
        msgs = _trajectories(log)
        assert len(msgs) >= 5
        held = np.array([m["points"][0]["positions"] for m in msgs[-5:]])
        assert np.ptp(held, axis=0).max() == 0.0
    finally:
        drv.stop()
        ctrl.stop()


def test_estop_makes_the_jtc_hold_where_the_arm_is_and_it_stays_stopped(ros, tmp_path):
    # latency figures live in bench/bench_driver.py; here: the behaviour, seen at the controller
    from std_msgs.msg import Bool

    ctrl, log, trace = _controller(tmp_path)
    drv = _driver("chunk_timeout_s:=5.0", "servo_rate_hz:=100.0")
    try:
        probe = Probe(ros, ns="/franka/")
        assert probe.wait_status(lambda s: s.actuation_enabled, 20), drv.output() + ctrl.output()
        assert probe.call("start").success
        assert ros.wait_for_subscribers(probe.estop_pub, 1, 10)
        goal = _arm_goal(np.full(7, 0.6))
        probe.send_chunk(np.linspace(RESET + [0.5], list(goal) + [0.5], 90), names=FR3)  # 3 s of motion
        assert ros.spin_until(lambda: probe.joint_states and probe.joint_states[-1].position[0] > 0.05, 10)
        probe.estop_pub.publish(Bool(data=True))
        assert probe.wait_status(lambda s: s.estop_latched, 5)
        ros.spin_until(lambda: False, 0.1)  # trajectories already in flight when the latch was reported land
        n_latched = len(_trajectories(log))
        ros.spin_until(lambda: False, 0.5)
        msgs = _trajectories(log)
        assert len(msgs) > n_latched + 20, "the driver keeps commanding (holding) after the e-stop"
        held = np.array([m["points"][0]["positions"] for m in msgs[n_latched:]])
        # every trajectory since the latch is the same hold...
        assert np.ptp(held, axis=0).max() == 0.0
        assert all(m["accepted"] and m["joint_names"] == ARM for m in msgs[n_latched:])
        assert held[-1][0] < goal[0] - 0.1
        # ...where the arm was: within one lookahead of motion (30 ms at <= 1 rad/s) of where the latch found it
        at_latch = _rows(trace, 7)
        t_latch = msgs[n_latched]["t"]
        q_latch = at_latch[at_latch[:, 0] <= t_latch][-1, 1:]
        assert np.abs(held[-1] - q_latch).max() < 0.05
        n_trace = len(at_latch)
        ros.spin_until(lambda: False, 0.3)
    finally:
        drv.stop()
        ctrl.stop()
    # the simulated controller reached the hold and stayed there: no further motion
    q = _rows(trace, 7)[n_trace:, 1:]
    assert len(q) > 20
    assert np.ptp(q, axis=0).max() < 1e-9
    np.testing.assert_allclose(q[-1], held[-1], atol=1e-9)


def test_undriven_gripper_reading_echoes_the_command_without_feedback_and_follows_the_hand_with_it():
    from molmoact2_drivers.core.backend import BackendError
    from molmoact2_drivers.ros_backends.ros2_control import UndrivenJoint

    u = UndrivenJoint("arm", "gripper", {"state_joint": "fr3_finger_joint1", "closed": 0.0, "open": 0.04, "initial": 1.0})
    assert u.value == 1.0 and not u.measured
    assert u.command(0.3) and u.value == 0.3  # no Franka Hand (a DROID Robotiq): the reading echoes the command
    assert not u.command(0.3) and u.commands_not_driven == 1  # an unchanged command is no new request
    u.observe(0.01)
    assert u.measured and u.value == pytest.approx(0.25)
    assert u.command(0.9) and u.value == pytest.approx(0.25)  # measured from now on: the command does not move it
    u.observe(0.09)
    assert u.value == 1.0  # clipped to fully open
    with pytest.raises(BackendError, match="closed .* and open .* must be finite and differ"):
        UndrivenJoint("arm", "gripper", {"closed": 0.04, "open": 0.04})
    with pytest.raises(BackendError, match="unknown fields width"):
        UndrivenJoint("arm", "gripper", {"width": 0.08})
