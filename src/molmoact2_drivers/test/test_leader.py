"""The leader core, ROS-free: an SO leader on an emulated STS3215 bus (torque off, LeRobot's leader
calibration file), loss and return of its bus, and the options it refuses."""

from __future__ import annotations

import json

import pytest

from emulators.feetech_sts3215 import FeetechBusEmulator
from molmoact2_drivers.core.backend import BackendError
from molmoact2_drivers.core.backends.feetech import LEROBOT_MOTOR_NAMES, MotorCalibration, raw_to_wire, save_calibration
from molmoact2_drivers.core.leader import LeaderCore, create_leader, default_leader_calibration

CAL = {n: MotorCalibration(i + 1, i % 2, 0, 700, 3400) for i, n in enumerate(LEROBOT_MOTOR_NAMES)}


def make(emu, tmp_path, **extra):
    cal = save_calibration(tmp_path / "leader.json", CAL)
    return create_leader("feetech", "leader", list(LEROBOT_MOTOR_NAMES), {"port": emu.port, "calibration": str(cal), **extra})


def test_feetech_leader_turns_torque_off_and_reads_the_hand_in_wire_units(tmp_path):
    with FeetechBusEmulator() as emu:
        with emu.lock:
            for s in emu.servos.values():  # calibrated already (nothing to write) and left with torque on
                s.set_u16(9, 700)
                s.set_u16(11, 3400)
                s.table[40] = 1
        core = LeaderCore(make(emu, tmp_path))
        core.start()
        try:
            assert not any(emu.servo(i).torque_enabled for i in range(1, 7)), "a leader's servos are moved by hand: torque off"
            emu.move_by_hand(2, 2600)
            emu.move_by_hand(6, 1000)
            q = core.poll().positions
            assert q[1] == pytest.approx(raw_to_wire(2600, CAL["shoulder_lift"], False))
            assert q[5] == pytest.approx(raw_to_wire(1000, CAL["gripper"], True))  # drive_mode 1: inverted opening
            assert not emu.goal_writes_since(0.0), "a leader is never commanded"
        finally:
            core.close()


def test_feetech_leader_unplugged_is_reported_once_and_back_after_replug_with_torque_off(tmp_path):
    with FeetechBusEmulator() as emu:
        core = LeaderCore(make(emu, tmp_path))
        core.start()
        try:
            assert core.poll().positions is not None
            emu.pull_cable()
            first = core.poll()
            assert first.positions is None and len(first.events) == 1 and "leader lost" in first.events[0]
            assert "serial port" in first.events[0]
            again = core.poll()
            assert again.positions is None and not again.events, "the loss is one event, not one per read"
            emu.replug()
            import time

            deadline = time.monotonic() + 5
            sample = core.poll()
            while sample.positions is None and time.monotonic() < deadline:
                time.sleep(0.05)
                sample = core.poll()
            assert sample.positions is not None and any("leader back" in e for e in sample.events)
            assert not any(emu.servo(i).torque_enabled for i in range(1, 7))
            assert core.losses == 1
        finally:
            core.close()


def test_leader_calibration_default_is_lerobots_so_leader_file_then_the_older_so101_leader(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    base = tmp_path / ".cache/huggingface/lerobot/calibration/teleoperators"
    assert default_leader_calibration("so101", "blue") == base / "so_leader" / "blue.json"
    (base / "so101_leader").mkdir(parents=True)
    (base / "so101_leader" / "blue.json").write_text(json.dumps({}))
    assert default_leader_calibration("so101", "blue") == base / "so101_leader" / "blue.json"
    (base / "so_leader").mkdir(parents=True)
    (base / "so_leader" / "blue.json").write_text(json.dumps({}))
    assert default_leader_calibration("so101", "blue") == base / "so_leader" / "blue.json"


def test_leader_options_that_are_wrong_are_refused_by_name(tmp_path):
    with pytest.raises(BackendError, match="needs a port"):
        create_leader("feetech", "leader", list(LEROBOT_MOTOR_NAMES), {})
    with pytest.raises(BackendError, match="unknown feetech leader option.*baud"):
        create_leader("feetech", "leader", list(LEROBOT_MOTOR_NAMES), {"port": "/dev/null", "baud": 1})
    with pytest.raises(BackendError, match="not found"):
        create_leader("feetech", "leader", list(LEROBOT_MOTOR_NAMES), {"port": "/dev/null", "calibration": str(tmp_path / "none.json")})
    with pytest.raises(BackendError, match="unknown leader type"):
        create_leader("gello", "leader", list(LEROBOT_MOTOR_NAMES), {})
    with pytest.raises(BackendError, match="passive"):
        create_leader("yam", "leader", [f"j{i}" for i in range(7)], {"channel": "can_leader", "gripper_type": "linear_4310"})
