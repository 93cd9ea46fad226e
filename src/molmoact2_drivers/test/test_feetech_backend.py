"""The SO-100/101 backend against the STS3215 bus emulator: the vendor SDK's bytes on a real pty."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from emulators.feetech_sts3215 import A_GOAL_POS, A_LOCK, A_TORQUE_ENABLE, FeetechBusEmulator
from molmoact2_common.embodiment import load_embodiment
from molmoact2_drivers.core.backend import BackendError
from molmoact2_drivers.core.backends import create_backend
from molmoact2_drivers.core.backends.feetech import (
    LEROBOT_MOTOR_NAMES,
    CalibrationError,
    FeetechBackend,
    MotorCalibration,
    save_calibration,
)

CAL = {
    "shoulder_pan": MotorCalibration(1, 0, -200, 800, 3300),
    "shoulder_lift": MotorCalibration(2, 0, 150, 600, 3300),
    "elbow_flex": MotorCalibration(3, 0, 0, 900, 3100),
    "wrist_flex": MotorCalibration(4, 0, -100, 850, 3250),
    "wrist_roll": MotorCalibration(5, 0, 0, 0, 4095),
    "gripper": MotorCalibration(6, 0, 0, 2000, 3500),
}


@pytest.fixture
def emu():
    with FeetechBusEmulator() as e:
        yield e


def backend(emu, **kw) -> FeetechBackend:
    b = FeetechBackend("arm", list(LEROBOT_MOTOR_NAMES), port=emu.port, calibration=CAL, gripper="gripper", **kw)
    b.connect()
    return b


def wait_until(pred, timeout=8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def test_connect_writes_the_calibration_and_reads_radians(emu):
    b = backend(emu)
    try:
        for name, cal in CAL.items():
            s = emu.servo(cal.id)
            assert (s.homing_offset, s.u16(9), s.u16(11)) == (cal.homing_offset, cal.range_min, cal.range_max)
            assert s.table[7] == 0  # Return_Delay_Time set to 0 as LeRobot does
        r = b.read_state()
        # every servo's actual encoder position is 2048: present = actual - homing offset
        for i, name in enumerate(LEROBOT_MOTOR_NAMES[:-1]):
            cal = CAL[name]
            present = 2048 - cal.homing_offset
            assert r.positions[i] == pytest.approx((present - (cal.range_min + cal.range_max) / 2) * 2 * math.pi / 4095)
        assert r.positions[5] == pytest.approx((2048 - 2000) / 1500)
        assert r.extra["temperature_c"] == [30] * 6 and r.monotonic_stamp > 0
    finally:
        b.close()


def test_calibration_mismatch_is_refused_when_writing_is_off(emu):
    b = FeetechBackend("arm", list(LEROBOT_MOTOR_NAMES), port=emu.port, calibration=CAL, gripper="gripper",
                       write_calibration=False)
    with pytest.raises(CalibrationError, match=r"servo 1 \(shoulder_pan\): the servo holds .*write_calibration"):
        b.connect()
    b.close()


def test_enable_holds_the_present_position_then_targets_move_the_servos(emu):
    b = backend(emu)
    try:
        before = b.read_state().positions
        b.enable()
        assert all(emu.servo(i).torque_enabled and emu.servo(i).table[A_LOCK] == 1 for i in range(1, 7))
        assert np.allclose(b.read_state().positions, before, atol=2e-3)  # nothing jumped
        target = np.array([0.4, -0.3, 0.2, 0.1, -0.5, 0.8])
        sent = b.send_target(target)
        assert np.allclose(sent, target, atol=2 * math.pi / 4095)
        assert wait_until(lambda: np.allclose(b.read_state().positions, sent, atol=2e-3))
    finally:
        b.close()


def test_targets_outside_the_calibrated_range_are_clipped_and_reported(emu):
    b = backend(emu)
    try:
        b.enable()
        sent = b.send_target(np.array([9.0, 0.0, 0.0, 0.0, 0.0, 1.7]))
        hi = (CAL["shoulder_pan"].range_max - (800 + 3300) / 2) * 2 * math.pi / 4095
        assert sent[0] == pytest.approx(hi) and sent[5] == 1.0
        assert wait_until(lambda: any(g.get(1) == 3300 and g.get(6) == 3500 for _, g in emu.goal_writes_since(0.0)))
    finally:
        b.close()


def test_disable_turns_torque_off_and_unlocks(emu):
    b = backend(emu)
    try:
        b.enable()
        b.disable()
        assert not any(emu.servo(i).torque_enabled or emu.servo(i).table[A_LOCK] for i in range(1, 7))
    finally:
        b.close()


def test_non_finite_or_misshaped_targets_are_refused(emu):
    b = backend(emu)
    try:
        with pytest.raises(BackendError, match="non-finite target for elbow_flex"):
            b.send_target(np.array([0, 0, np.nan, 0, 0, 0.5]))
        with pytest.raises(BackendError, match="shape"):
            b.send_target(np.zeros(5))
    finally:
        b.close()


def test_corrupted_status_packet_is_retried_then_reported(emu):
    b = backend(emu, read_retries=2)
    try:
        emu.corrupt_status(1)
        b.read_state()  # one bad packet: retried, no error
        assert b.counters["read_retries"] == 1 and b.health().ok
        emu.corrupt_status(1000)
        with pytest.raises(BackendError, match=r"failed after 3 tries.*servo 1 \(shoulder_pan\).*Incorrect status packet"):
            b.read_state()
        assert b.counters["read_failures"] == 1
    finally:
        b.close()


def test_overheated_servo_stops_the_arm_and_the_error_names_it(emu):
    b = backend(emu)
    try:
        b.enable()
        b.send_target(np.zeros(6))
        emu.set_temperature(3, 85)
        with pytest.raises(BackendError, match=r"servo 3 \(elbow_flex\) reports overheat \(temperature 85 C"):
            b.read_state()
        t = time.monotonic()
        with pytest.raises(BackendError, match="elbow_flex"):
            b.send_target(np.full(6, 0.3))
        assert emu.goal_writes_since(t) == []  # the arm stopped commanding
        assert not emu.servo(3).torque_enabled  # the hot servo unloaded itself
        assert emu.servo(1).torque_enabled  # the others hold their last goal
        assert not b.health().ok and "elbow_flex" in b.health().message
        emu.set_temperature(3, 40)
        b.read_state()  # cooled: the alarm is gone, the servo holds again (the driver stays latched until its reset)
        assert b.health().ok and emu.servo(3).torque_enabled
    finally:
        b.close()


def test_serial_cable_pulled_errors_holds_and_reconnects_on_reset(emu):
    b = backend(emu)
    try:
        b.enable()
        held = b.send_target(np.array([0.2, 0.1, 0.0, 0.0, 0.0, 0.5]))
        assert wait_until(lambda: np.allclose(b.read_state().positions, held, atol=2e-3))
        goals_before = {i: emu.servo(i).goal_present_frame for i in range(1, 7)}
        emu.pull_cable()
        with pytest.raises(BackendError, match=r"serial port .* failed.*hold their last goal"):
            b.read_state()
            b.send_target(held)
        assert not b.health().ok
        # the servos keep holding: torque on, goals unchanged
        assert all(emu.servo(i).torque_enabled for i in range(1, 7))
        assert {i: emu.servo(i).goal_present_frame for i in range(1, 7)} == goals_before
        with pytest.raises(BackendError, match="not connected|failed"):
            b.send_target(held)
        b.reconnect_interval_s = 0.0
        with pytest.raises(BackendError, match="reconnect failed.*cannot open serial port"):
            b.read_state()  # still unplugged
        emu.replug()
        b.reconnect_interval_s = 0.0
        # the next read (the driver's tick or reset) reopens the same port path
        assert np.allclose(b.read_state().positions, held, atol=2e-3)
        assert b.health().ok and b.counters["reconnects"] == 1
    finally:
        b.close()


def test_a_servo_that_does_not_answer_is_named(emu):
    emu.remove_servo(4)
    b = FeetechBackend("arm", list(LEROBOT_MOTOR_NAMES), port=emu.port, calibration=CAL, gripper="gripper", read_retries=1)
    with pytest.raises(BackendError, match=r"servo 4 \(wrist_flex\).*There is no status packet"):
        b.connect()
    b.close()


def test_wrong_model_number_is_refused(emu):
    emu.servo(2).table[3:5] = (1284).to_bytes(2, "little")  # an SCS0009, not an STS3215
    b = FeetechBackend("arm", list(LEROBOT_MOTOR_NAMES), port=emu.port, calibration=CAL, gripper="gripper")
    with pytest.raises(BackendError, match=r"servo 2 \(shoulder_lift\): model number 1284"):
        b.connect()
    b.close()


@pytest.mark.parametrize("embodiment", ["so100", "so101"])
def test_so100_and_so101_configs_build_the_feetech_backend(emu, tmp_path, embodiment):
    emb = load_embodiment(embodiment)
    arm = emb.arms[0]
    cal_file = save_calibration(tmp_path / "follower.json", CAL)
    b = create_backend(arm, {"port": emu.port, "calibration": str(cal_file)})
    try:
        assert isinstance(b, FeetechBackend) and b.model == embodiment and b.joint_names == arm.joints
        b.connect()
        b.enable()
        lo_hi = np.array([arm.position_limits[j] for j in arm.joints])
        target = np.clip(np.array([0.3, -0.3, 0.3, -0.3, 0.3, 0.6]), lo_hi[:, 0], lo_hi[:, 1])
        sent = b.send_target(target)
        assert wait_until(lambda: np.allclose(b.read_state().positions, sent, atol=2e-3))
    finally:
        b.close()


def test_unknown_backend_fields_are_refused(tmp_path):
    emb = load_embodiment("so101")
    cal_file = save_calibration(tmp_path / "follower.json", CAL)
    with pytest.raises(BackendError, match="unknown feetech backend field.*baud_rate"):
        create_backend(emb.arms[0], {"port": "/dev/null", "calibration": str(cal_file), "baud_rate": 1})


@pytest.mark.model
def test_positions_match_lerobots_own_feetech_bus_reading_the_same_servos(emu, tmp_path):
    """LeRobot's FeetechMotorsBus (use_degrees) and this backend read the same emulated arm."""
    from lerobot.motors import Motor, MotorCalibration as LRCal, MotorNormMode
    from lerobot.motors.feetech import FeetechMotorsBus

    b = backend(emu)
    b.enable()
    sent = b.send_target(np.array([0.5, -0.4, 0.3, -0.2, 1.0, 0.3]))
    assert wait_until(lambda: np.allclose(b.read_state().positions, sent, atol=2e-3))
    ours = b.read_state().positions
    b.close()
    motors = {n: Motor(CAL[n].id, "sts3215", MotorNormMode.RANGE_0_100 if n == "gripper" else MotorNormMode.DEGREES)
              for n in LEROBOT_MOTOR_NAMES}
    bus = FeetechMotorsBus(emu.port, motors, calibration={n: LRCal(**vars(c)) for n, c in CAL.items()})
    bus.connect()
    try:
        theirs = bus.sync_read("Present_Position")
    finally:
        bus.disconnect(disable_torque=False)
    for i, n in enumerate(LEROBOT_MOTOR_NAMES):
        expected = theirs[n] / 100.0 if n == "gripper" else math.radians(theirs[n])
        assert ours[i] == pytest.approx(expected, abs=1e-3), n


def test_servo_alarm_sag_then_clear_never_snaps_back_and_reset_holds_where_the_arm_is(emu):
    """An overheated servo unloads, the arm sags 0.9 rad, the alarm clears with torque back where it
    sagged: the driver (in ERROR, then reset) holds there, on the bus, and never steps back."""
    from molmoact2_drivers.core.driver_core import ChunkInput, DriverState
    from molmoact2_drivers.core.factory import build_driver

    emb = load_embodiment("so101")
    b = FeetechBackend("arm", list(LEROBOT_MOTOR_NAMES), port=emu.port, calibration=CAL, gripper="gripper")
    d = build_driver(emb, emb.arms[0], b, {"execute_steps": 0, "chunk_timeout_s": 5.0})
    elbow = emu.servo(3)
    rad_per_step = 2 * math.pi / 4095

    def tick_for(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = time.monotonic()
            d.tick(now, now)
            time.sleep(0.01)

    try:
        d.configure()
        now = time.monotonic()
        d.activate(now, now)
        assert d.start().success
        pose = np.array([0.2, -0.3, 0.6, 0.1, 0.0, 0.5])
        now = time.monotonic()
        assert d.on_chunk(ChunkInput(list(LEROBOT_MOTOR_NAMES), now, 1 / 30, 30, np.tile(pose, (30, 1)).ravel(), 1), now).success
        assert wait_until(lambda: (tick_for(0.05), np.allclose(b.last_reading.positions, pose, atol=0.01))[1], 10)
        emu.set_temperature(3, 85)  # overheat: the elbow unloads itself
        tick_for(0.1)
        assert d.state == DriverState.ERROR and "elbow_flex" in d.error
        before = elbow.actual
        elbow.actual = before - 0.9 / rad_per_step  # the unpowered elbow sags 0.9 rad
        sagged = elbow.actual
        emu.set_temperature(3, 40)  # cooled: the alarm clears, the backend re-enables the elbow where it is
        t_clear = time.monotonic()
        tick_for(0.6)  # still in ERROR: no reset yet
        assert d.state == DriverState.ERROR
        elbow_goals = [g[3] for _, g in emu.goal_writes_since(t_clear) if 3 in g]
        assert elbow_goals, "the driver keeps holding on the bus"
        assert abs(elbow.actual - sagged) * rad_per_step < 0.02, "the elbow was pulled back towards the pre-fault goal"
        present = elbow.present_position()
        assert max(abs(g - present) for g in elbow_goals) * rad_per_step < 0.02
        assert d.reset().success
        tick_for(0.4)
        assert abs(elbow.actual - sagged) * rad_per_step < 0.02, "reset must hold where the arm is"
        # back to the pose through the arming ramp: bounded steps, never a jump
        assert d.start().success
        now = time.monotonic()
        t_arm = now
        assert d.on_chunk(ChunkInput(list(LEROBOT_MOTOR_NAMES), now, 1 / 30, 60, np.tile(pose, (60, 1)).ravel(), 2), now).success
        tick_for(1.5)
        goals = [g[3] for _, g in emu.goal_writes_since(t_arm) if 3 in g]
        steps = np.abs(np.diff(goals)) * rad_per_step
        assert steps.max() <= 2.0 * 0.01 + 2 * rad_per_step  # the elbow's 2 rad/s limit per 10 ms tick (+ rounding)
    finally:
        d.shutdown()


def test_configure_turns_torque_on_holding_where_the_arm_is_and_cleanup_leaves_it_holding(emu):
    """One torque behaviour for every backend (driver_core's docstring): on at configure, holding the
    present position; still on after shutdown (the servos keep their last goal); off only on request."""
    from molmoact2_drivers.core.factory import build_driver

    emb = load_embodiment("so101")
    b = FeetechBackend("arm", list(LEROBOT_MOTOR_NAMES), port=emu.port, calibration=CAL, gripper="gripper")
    d = build_driver(emb, emb.arms[0], b, {})
    before = {i: emu.servo(i).actual for i in range(1, 7)}
    d.configure()
    assert all(emu.servo(i).torque_enabled for i in range(1, 7))
    assert all(abs(emu.servo(i).goal_present_frame + emu.servo(i).homing_offset - before[i]) <= 1 for i in range(1, 7))
    d.shutdown()
    assert all(emu.servo(i).torque_enabled for i in range(1, 7))
    kin = create_backend(emb.arms[0], type_name="kinematic")
    dk = build_driver(emb, emb.arms[0], kin, {})
    dk.configure()
    assert kin.torque_enabled
