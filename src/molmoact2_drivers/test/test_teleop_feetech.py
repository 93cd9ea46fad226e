"""SO-101 teleoperation on the wire: a leader bus and a follower bus, each an emulated STS3215 bus
on its own pty; our leader_node reads the leader (torque off), our driver_node (input:=teleop)
writes the follower's goals, over real DDS."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from emulators.feetech_sts3215 import FeetechBusEmulator
from molmoact2_drivers.core.backends.feetech import LEROBOT_MOTOR_NAMES, MotorCalibration, save_calibration, wire_to_raw

pytestmark = pytest.mark.ros

CAL = {n: MotorCalibration(i + 1, 0, 0, 700, 3400) for i, n in enumerate(LEROBOT_MOTOR_NAMES)}
PAN_LIMIT = 1.919  # so101.yaml position_limits.shoulder_pan
VMAX_PAN = 2.0


class Probe:
    def __init__(self, ros):
        from std_msgs.msg import Bool, String

        from molmoact2_common import qos
        from molmoact2_msgs.msg import DriverStatus

        self.ros = ros
        self.node = ros.node("teleop_probe")
        self.status, self.teleop = [], []
        self.estop_pub = self.node.create_publisher(Bool, "estop", qos.ESTOP)
        self.node.create_subscription(DriverStatus, "driver_status", self.status.append, qos.DRIVER_STATUS)
        self.node.create_subscription(String, "teleop_status", lambda m: self.teleop.append(json.loads(m.data)), qos.LATCHED)
        self.Bool = Bool

    def wait_status(self, pred, timeout=15.0):
        return self.ros.spin_until(lambda: bool(self.status) and pred(self.status[-1]), timeout)

    def wait_teleop(self, pred, timeout=15.0):
        return self.ros.spin_until(lambda: any(pred(s) for s in self.teleop), timeout)


@pytest.fixture
def rig(ros, tmp_path):
    from support.ros_harness import ChildProcess

    with FeetechBusEmulator() as leader, FeetechBusEmulator() as follower:
        lcal = save_calibration(tmp_path / "so_leader" / "leader.json", CAL)
        fcal = save_calibration(tmp_path / "follower.json", CAL)
        lopts = json.dumps({"port": leader.port, "calibration": str(lcal)})
        fopts = json.dumps({"port": follower.port, "calibration": str(fcal)})
        driver = ChildProcess.python_module(
            "molmoact2_drivers.nodes.driver_node", "--ros-args", "-p", "embodiment:=so101", "-p", f"backend_options:='{fopts}'",
            "-p", "autostart:=activate", "-p", "require_start:=never", "-p", "mode:=actuate", "-p", "input:=teleop",
            "-p", "teleop_timeout_s:=0.2")
        leader_proc = ChildProcess.python_module(
            "molmoact2_drivers.nodes.leader_node", "--ros-args", "-p", "embodiment:=so101", "-p", "leader_type:=feetech",
            "-p", f"leader_options:='{lopts}'")
        try:
            yield leader, follower, Probe(ros), (driver, leader_proc)
        finally:
            leader_proc.stop()
            driver.stop()


def output(procs):
    return "\n".join(p.output() for p in procs)


def pan_goals(emu, since):
    return [(t, g[1]) for t, g in emu.goal_writes_since(since) if 1 in g]


def following(probe):
    from molmoact2_msgs.msg import DriverStatus

    return probe.wait_status(lambda s: s.state == DriverStatus.STATE_EXECUTING, 30)


def test_moving_the_leader_moves_the_follower_within_its_limits(rig, ros):
    leader, follower, probe, procs = rig
    assert probe.wait_teleop(lambda s: s["state"] == "connected", 30), output(procs)
    assert following(probe), output(procs)
    assert not any(leader.servo(i).torque_enabled for i in range(1, 7)), "a leader's servos stay torque off"
    t0 = time.monotonic()
    elbow = wire_to_raw(0.4, CAL["elbow_flex"], False)
    leader.move_by_hand(3, elbow)
    want = wire_to_raw(0.4, CAL["elbow_flex"], False)
    assert ros.spin_until(lambda: any(abs(g.get(3, -99) - want) <= 2 for _, g in follower.goal_writes_since(t0)), 20), output(procs)
    # the leader's pan far beyond the follower's limit: the follower's goal stops at the limit
    leader.move_by_hand(1, 3400)  # 2.07 rad
    limit_raw = wire_to_raw(PAN_LIMIT, CAL["shoulder_pan"], False)
    assert ros.spin_until(lambda: any(abs(g - limit_raw) <= 1 for _, g in pan_goals(follower, t0)), 20), output(procs)
    goals = pan_goals(follower, t0)
    assert max(g for _, g in goals) <= limit_raw
    # a step of the leader's hand is a velocity-limited ramp on the follower's bus
    raws = np.array([g for _, g in goals], dtype=float)
    rad_steps = np.abs(np.diff(raws)) * 2 * np.pi / 4095
    assert rad_steps.max() <= VMAX_PAN * 0.01 + 2 * 2 * np.pi / 4095 + 1e-9
    assert follower.servo(1).present_position() == pytest.approx(limit_raw, abs=2)


def test_leader_unplugged_makes_the_follower_hold_and_teleop_status_say_so(rig, ros):
    leader, follower, probe, procs = rig
    assert following(probe), output(procs)
    leader.move_by_hand(2, wire_to_raw(-0.3, CAL["shoulder_lift"], False))
    assert ros.spin_until(lambda: follower.servo(2).present_position() == pytest.approx(
        wire_to_raw(-0.3, CAL["shoulder_lift"], False), abs=2), 20), output(procs)
    leader.pull_cable()
    assert probe.wait_teleop(lambda s: s["state"] == "lost" and "serial port" in s["event"], 10), output(procs)
    assert probe.wait_status(lambda s: "no leader target" in s.last_event, 10), output(procs)
    t = time.monotonic()
    assert ros.spin_until(lambda: len(pan_goals(follower, t)) > 20, 10)
    held = follower.goal_writes_since(t)
    assert all(g == held[0][1] for _, g in held), "the follower holds one position while the leader is gone"
    assert all(follower.servo(i).torque_enabled for i in range(1, 7)), "holding with torque on"
    # plugged back: the leader reads again, the follower re-arms onto it
    leader.replug()
    assert probe.wait_teleop(lambda s: s["state"] == "connected" and "back" in s["event"], 15), output(procs)
    assert following(probe), output(procs)


def test_estop_during_teleop_freezes_the_follower(rig, ros):
    leader, follower, probe, procs = rig
    assert following(probe), output(procs)
    assert ros.wait_for_subscribers(probe.estop_pub, 1, 10)
    probe.estop_pub.publish(probe.Bool(data=True))
    assert probe.wait_status(lambda s: s.estop_latched, 10), output(procs)
    t = time.monotonic()
    leader.move_by_hand(1, wire_to_raw(1.0, CAL["shoulder_pan"], False))
    leader.move_by_hand(4, wire_to_raw(-0.8, CAL["wrist_flex"], False))
    assert ros.spin_until(lambda: len(pan_goals(follower, t)) > 50, 10)
    held = follower.goal_writes_since(t)
    assert all(g == held[0][1] for _, g in held), "after the e-stop every goal is the frozen one, whatever the leader does"
    assert abs(held[0][1][1] - wire_to_raw(1.0, CAL["shoulder_pan"], False)) > 100
