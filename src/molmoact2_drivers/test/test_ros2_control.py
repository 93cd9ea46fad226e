"""The ros2_control bridge against a simulated controller node over real DDS."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from test_driver_node import Probe

pytestmark = pytest.mark.ros

FR3 = [f"fr3_joint{i}" for i in range(1, 8)] + ["gripper"]
RESET = [0.0, -math.pi / 5, 0.0, -4 * math.pi / 5, 0.0, 3 * math.pi / 5, 0.0, 0.0]


def _controller(tmp_path, *extra):
    from support.ros_harness import ROOT, ChildProcess

    log = tmp_path / "commands.log"
    proc = ChildProcess([sys.executable, str(ROOT / "tests" / "sim_controllers" / "position_controller.py"),
                         "--controller", "fr3_arm_controller", "--joints", ",".join(FR3),
                         "--initial", ",".join(map(str, RESET)), "--log", str(log), *extra], name="sim_controller")
    return proc, log


def _driver(*params):
    from support.ros_harness import ChildProcess

    args = ["--ros-args", "-r", "__ns:=/franka", "-p", "embodiment:=franka_droid", "-p", "autostart:=activate",
            "-p", "execute_steps:=0"]
    for p in params:
        args += ["-p", p]
    return ChildProcess.python_module("molmoact2_drivers.nodes.driver_node", *args)


def _commands(log):
    if not log.exists():
        return np.zeros((0, 1 + len(FR3)))
    rows = [list(map(float, line.split())) for line in log.read_text().splitlines() if line.strip()]
    return np.array(rows) if rows else np.zeros((0, 1 + len(FR3)))


@pytest.mark.parametrize("interface", ["forward_position", "joint_trajectory"])
def test_bridge_drives_the_controller_through_its_topic_interface(ros, tmp_path, interface):
    ctrl, log = _controller(tmp_path)
    topic = "/fr3_arm_controller/commands" if interface == "forward_position" else "/fr3_arm_controller/joint_trajectory"
    drv = _driver(f"backend_options:='{{\"command_interface\": \"{interface}\", \"command_topic\": \"{topic}\"}}'",
                  "chunk_timeout_s:=5.0")
    try:
        probe = Probe(ros, ns="/franka/")
        assert probe.wait_status(lambda s: s.actuation_enabled, 20), drv.output() + ctrl.output()
        assert ros.spin_until(lambda: bool(probe.joint_states), 5)
        np.testing.assert_allclose(probe.joint_states[-1].position, RESET, atol=1e-6)
        # a real arm: motion only after the operator's start
        assert probe.call("start").success
        goal = np.array(RESET) + np.r_[np.full(7, 0.2), 0.5]
        probe.send_chunk(np.linspace(RESET, goal, 20), names=FR3)
        assert ros.spin_until(lambda: probe.joint_states and np.allclose(probe.joint_states[-1].position, goal, atol=1e-4), 15), \
            drv.output() + ctrl.output()
        cmds = _commands(log)
        assert len(cmds) > 20
        np.testing.assert_allclose(cmds[-1, 1:], goal, atol=1e-9)
    finally:
        drv.stop()
        ctrl.stop()


def test_controller_that_stops_publishing_joint_states_ends_in_error_with_a_clear_message(ros, tmp_path):
    from molmoact2_msgs.msg import DriverStatus

    ctrl, log = _controller(tmp_path, "--stop-after", "400")  # 2 s of joint states at 200 Hz
    drv = _driver("backend_options:='{\"state_timeout_s\": 0.2}'")
    try:
        probe = Probe(ros, ns="/franka/")
        assert probe.wait_status(lambda s: s.actuation_enabled, 20), drv.output() + ctrl.output()
        assert probe.wait_status(lambda s: s.state == DriverStatus.STATE_ERROR, 10), drv.output()
        event = probe.latest_status().last_event
        assert "joint states" in event and "old" in event and "/joint_states" in event
        # holding: every command after the fault repeats the last one
        cmds = _commands(log)
        assert len(cmds) and np.ptp(cmds[-5:, 1:], axis=0).max() == 0.0
    finally:
        drv.stop()
        ctrl.stop()


def test_estop_stops_motion_at_the_controller_and_it_stays_stopped(ros, tmp_path):
    # latency figures live in bench/bench_driver.py; here: the behaviour, seen at the controller
    from std_msgs.msg import Bool

    ctrl, log = _controller(tmp_path)
    drv = _driver("chunk_timeout_s:=5.0", "servo_rate_hz:=100.0")
    try:
        probe = Probe(ros, ns="/franka/")
        assert probe.wait_status(lambda s: s.actuation_enabled, 20), drv.output() + ctrl.output()
        assert probe.call("start").success
        assert ros.wait_for_subscribers(probe.estop_pub, 1, 10)
        goal = np.array(RESET) + np.r_[np.full(7, 0.6), 0.5]
        probe.send_chunk(np.linspace(RESET, goal, 90), names=FR3)  # 3 s of motion
        assert ros.spin_until(lambda: probe.joint_states and probe.joint_states[-1].position[0] > 0.05, 10)
        probe.estop_pub.publish(Bool(data=True))
        assert probe.wait_status(lambda s: s.estop_latched, 5)
        ros.spin_until(lambda: False, 0.1)  # commands already in flight when the latch was reported land
        n_latched = len(_commands(log))
        ros.spin_until(lambda: False, 0.5)
        cmds = _commands(log)
        assert len(cmds) > n_latched + 20, "the driver keeps commanding (holding) after the e-stop"
        # from the moment the driver reported the latch on, every command repeats the hold
        assert np.ptp(cmds[n_latched:, 1:], axis=0).max() == 0.0
        assert cmds[-1, 1] < goal[0] - 0.1
    finally:
        drv.stop()
        ctrl.stop()
