"""Our driver node -> the YAM backend -> unmodified i2rt -> Damiao frames on the (virtual) CAN bus, over real DDS.

The node runs in a child process with the motor emulator inside it (virtual CAN buses are per
process): ``tests/emulators/yam_driver_with_emulator.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("i2rt")

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[3]
JOINTS = [f"left_joint{i}" for i in range(1, 7)] + ["left_gripper"]


def start(*extra: str):
    from support.ros_harness import ChildProcess

    # The emulated bus and the driver share one child process beside the whole test run: the
    # feedback watchdog gets 190 ms (still under half the emulated motors' 400 ms command timeout,
    # as the backend requires); the watchdog itself is tested in test_yam_backend.py.
    opts = json.dumps({"gripper_limits": [6.57, 0.0], "feedback_timeout_s": 0.19})
    return ChildProcess([sys.executable, str(ROOT / "tests" / "emulators" / "yam_driver_with_emulator.py"), "--channel", "can_left",
                         *extra, "--", "--ros-args", "-p", "embodiment:=yam_bimanual", "-p", "arm:=left",
                         "-p", f"backend_options:='{opts}'", "-p", "autostart:=activate", "-p", "require_start:=never",
                         "-p", "mode:=actuate", "-p", "execute_steps:=0", "-p", "chunk_timeout_s:=0.0",
                         # one arm alone on the bus: no peer to keep the minimum distance from
                         "-p", "min_arm_distance_check:=false"], name="yam-driver")


def probe(ros):
    from sensor_msgs.msg import JointState

    from molmoact2_common import qos
    from molmoact2_msgs.msg import ActionChunk, DriverStatus

    node = ros.node("yam_probe")
    js, status = [], []
    node.create_subscription(JointState, "joint_states", js.append, qos.JOINT_STATE)
    node.create_subscription(DriverStatus, "driver_status", status.append, qos.DRIVER_STATUS)
    pub = node.create_publisher(ActionChunk, "action_chunk", qos.ACTION_CHUNK)
    return node, js, status, pub, ActionChunk


def test_driver_node_drives_the_emulated_yam_arm_through_i2rt(ros):
    proc = start()
    try:
        node, js, status, pub, ActionChunk = probe(ros)
        assert ros.spin_until(lambda: status and status[-1].actuation_enabled, 60), proc.output()
        target = np.array([0.3, 0.4, 0.4, 0.1, -0.1, 0.2, 0.7])
        msg = ActionChunk()
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.joint_names = JOINTS
        rows = np.linspace(np.zeros(7), target, 30)
        msg.horizon, msg.dt, msg.sequence = 30, 1 / 30, 1
        msg.positions = rows.ravel().tolist()
        assert ros.wait_for_subscribers(pub, 1, 15)
        pub.publish(msg)
        # joint_states are i2rt's feedback from the emulated motors
        assert ros.spin_until(lambda: js and np.allclose(js[-1].position, target, atol=0.01), 20), proc.output()
    finally:
        proc.stop()


def test_driver_node_reports_the_overheated_yam_motor_by_name_and_holds(ros):
    from molmoact2_msgs.msg import DriverStatus

    proc = start("--overheat", "3:2.0")
    try:
        node, js, status, pub, ActionChunk = probe(ros)
        assert ros.spin_until(lambda: status and status[-1].state == DriverStatus.STATE_ERROR, 60), proc.output()
        assert "motor 3 (left_joint3)" in status[-1].last_event and "over temperature" in status[-1].last_event
    finally:
        proc.stop()
