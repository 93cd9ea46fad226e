"""Our driver node -> the Feetech backend -> bytes on the emulated STS3215 bus (a real pty), over real DDS."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emulators.feetech_sts3215 import FeetechBusEmulator
from molmoact2_drivers.core.backends.feetech import LEROBOT_MOTOR_NAMES, MotorCalibration, save_calibration, wire_to_raw

pytestmark = pytest.mark.ros

CAL = {n: MotorCalibration(i + 1, 0, 0, 700, 3400) for i, n in enumerate(LEROBOT_MOTOR_NAMES)}


class Probe:
    def __init__(self, ros):
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool
        from std_srvs.srv import Trigger

        from molmoact2_common import qos
        from molmoact2_msgs.msg import ActionChunk, DriverStatus

        self.ros = ros
        self.node = ros.node("feetech_probe")
        self.joint_states, self.status = [], []
        self.chunk_pub = self.node.create_publisher(ActionChunk, "action_chunk", qos.ACTION_CHUNK)
        self.estop_pub = self.node.create_publisher(Bool, "estop", qos.ESTOP)
        self.node.create_subscription(JointState, "joint_states", self.joint_states.append, qos.JOINT_STATE)
        self.node.create_subscription(DriverStatus, "driver_status", self.status.append, qos.DRIVER_STATUS)
        self.reset = self.node.create_client(Trigger, "arm_driver/reset")
        self.Trigger, self.Bool, self.ActionChunk = Trigger, Bool, ActionChunk

    def wait_status(self, pred, timeout=15.0):
        return self.ros.spin_until(lambda: bool(self.status) and pred(self.status[-1]), timeout)

    def send_chunk(self, rows, seq=1, dt=1 / 30):
        assert self.ros.wait_for_subscribers(self.chunk_pub, 1, 15)
        msg = self.ActionChunk()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.joint_names = list(LEROBOT_MOTOR_NAMES)
        rows = np.asarray(rows, dtype=np.float64)
        msg.horizon, msg.dt, msg.sequence = rows.shape[0], float(dt), seq
        msg.positions = rows.ravel().tolist()
        self.chunk_pub.publish(msg)


@pytest.fixture
def rig(ros, tmp_path):
    from support.ros_harness import ChildProcess

    with FeetechBusEmulator() as emu:
        cal = save_calibration(tmp_path / "follower.json", CAL)
        opts = json.dumps({"port": emu.port, "calibration": str(cal)})
        proc = ChildProcess.python_module(
            "molmoact2_drivers.nodes.driver_node", "--ros-args", "-p", "embodiment:=so101", "-p", f"backend_options:='{opts}'",
            "-p", "autostart:=activate", "-p", "require_start:=never", "-p", "mode:=actuate", "-p", "execute_steps:=0",
            "-p", "chunk_timeout_s:=0.0")
        try:
            yield emu, Probe(ros), proc
        finally:
            proc.stop()


def goals(emu, since):
    return [g for _, g in emu.goal_writes_since(since)]


def test_driver_node_chunks_reach_the_servos_as_goal_position_writes(rig, ros):
    emu, probe, proc = rig
    assert probe.wait_status(lambda s: s.actuation_enabled, 30), proc.output()
    assert all(emu.servo(i).torque_enabled for i in range(1, 7)), "activate turns torque on"
    target = np.array([0.3, -0.2, 0.25, 0.1, -0.1, 0.6])
    probe.send_chunk(np.linspace(np.zeros(6), target, 20))
    want = {i + 1: wire_to_raw(target[i], CAL[n], n == "gripper") for i, n in enumerate(LEROBOT_MOTOR_NAMES)}
    assert ros.spin_until(lambda: any(all(abs(g.get(k, -99) - v) <= 1 for k, v in want.items()) for g in goals(emu, 0.0)), 20), proc.output()
    # the measured joint states come from the servos' Present_Position
    assert ros.spin_until(lambda: probe.joint_states and np.allclose(probe.joint_states[-1].position, target, atol=5e-3), 10)


def test_driver_node_estop_holds_the_servos_where_they_are(rig, ros):
    import time

    emu, probe, proc = rig
    assert probe.wait_status(lambda s: s.actuation_enabled, 30), proc.output()
    target = np.array([0.8, -0.6, 0.6, 0.5, -0.5, 0.9])
    probe.send_chunk(np.linspace(np.zeros(6), target, 90), dt=1 / 30)  # a 3 s motion
    assert ros.spin_until(lambda: len(goals(emu, 0.0)) > 30, 10)
    assert ros.wait_for_subscribers(probe.estop_pub, 1, 10)
    probe.estop_pub.publish(probe.Bool(data=True))
    assert probe.wait_status(lambda s: s.estop_latched, 10), proc.output()
    t = time.monotonic()
    assert ros.spin_until(lambda: len(goals(emu, t)) > 20, 10)
    held = goals(emu, t)
    assert all(g == held[0] for g in held), "after the e-stop every goal written is the same hold position"
    assert held[0][1] != wire_to_raw(target[0], CAL["shoulder_pan"], False), "stopped mid-motion, not at the chunk's end"


def test_driver_node_reports_a_pulled_cable_holds_and_recovers_on_reset(rig, ros):
    from molmoact2_msgs.msg import DriverStatus

    emu, probe, proc = rig
    assert probe.wait_status(lambda s: s.actuation_enabled, 30), proc.output()
    emu.pull_cable()
    assert probe.wait_status(lambda s: s.state == DriverStatus.STATE_ERROR and "serial port" in s.last_event, 10), proc.output()
    assert all(emu.servo(i).torque_enabled for i in range(1, 7)), "the servos keep holding"
    emu.replug()
    assert ros.wait_for_service(probe.reset, 10)
    assert ros.spin_until(lambda: ros.call(probe.reset, probe.Trigger.Request()).success, 10), proc.output()
    assert probe.wait_status(lambda s: s.state != DriverStatus.STATE_ERROR, 10)
    n = len(probe.joint_states)
    assert ros.spin_until(lambda: len(probe.joint_states) > n + 5, 10)
