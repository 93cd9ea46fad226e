"""LeRobot calibration files: read, written back in the same format, refused with a clear error when wrong."""

from __future__ import annotations

import json
import math

import pytest

from molmoact2_drivers.core.backends.feetech import (
    LEROBOT_MOTOR_NAMES,
    CalibrationError,
    MotorCalibration,
    load_calibration,
    raw_to_wire,
    save_calibration,
    wire_to_raw,
)

# a calibration file as lerobot-calibrate writes it for an SO-101 follower
LEROBOT_FILE = {
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1470, "range_min": 758, "range_max": 3292},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": 153, "range_min": 612, "range_max": 3303},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": 1286, "range_min": 881, "range_max": 3100},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": -1106, "range_min": 853, "range_max": 3249},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": 1881, "range_min": 0, "range_max": 4095},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1080, "range_min": 2031, "range_max": 3490},
}


def test_lerobot_calibration_file_is_read(tmp_path):
    path = tmp_path / "follower.json"
    path.write_text(json.dumps(LEROBOT_FILE, indent=4))
    cal = load_calibration(path)
    assert list(cal) == LEROBOT_MOTOR_NAMES
    assert cal["gripper"] == MotorCalibration(6, 0, 1080, 2031, 3490)


def test_saved_calibration_round_trips_in_lerobot_format(tmp_path):
    path = tmp_path / "follower.json"
    path.write_text(json.dumps(LEROBOT_FILE))
    out = save_calibration(tmp_path / "copy" / "follower.json", load_calibration(path))
    assert json.loads(out.read_text()) == LEROBOT_FILE


@pytest.mark.model
def test_saved_calibration_is_read_by_lerobot_itself(tmp_path):
    draccus = pytest.importorskip("draccus")
    from lerobot.motors import MotorCalibration as LeRobotMotorCalibration

    src = tmp_path / "follower.json"
    src.write_text(json.dumps(LEROBOT_FILE))
    out = save_calibration(tmp_path / "ours.json", load_calibration(src))
    with open(out) as f, draccus.config_type("json"):
        theirs = draccus.load(dict[str, LeRobotMotorCalibration], f)
    assert {k: vars(v) for k, v in theirs.items()} == LEROBOT_FILE


def test_pre_2025_calibration_format_is_refused_with_a_fix(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"homing_offset": [0] * 6, "drive_mode": [0] * 6, "start_pos": [0] * 6, "end_pos": [0] * 6,
                                "calib_mode": ["DEGREE"] * 5 + ["LINEAR"], "motor_names": LEROBOT_MOTOR_NAMES}))
    with pytest.raises(CalibrationError, match="pre-2025 format.*lerobot-calibrate"):
        load_calibration(path)


def test_missing_calibration_file_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(CalibrationError, match=r"nothere\.json not found.*lerobot-calibrate"):
        load_calibration(tmp_path / "nothere.json")


@pytest.mark.parametrize("motor, field, value, match", [
    ("elbow_flex", "range_min", 3200, "range_min < range_max"),
    ("gripper", "id", 1, "share id 1"),
    ("wrist_flex", "homing_offset", 3000, "outside \\+-2047"),
    ("shoulder_pan", "drive_mode", 2, "drive_mode must be 0 or 1"),
])
def test_invalid_calibration_entries_are_refused_naming_the_motor(tmp_path, motor, field, value, match):
    bad = json.loads(json.dumps(LEROBOT_FILE))
    bad[motor][field] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(CalibrationError, match=match):
        load_calibration(path)


def test_joint_units_follow_lerobot_degrees_in_radians():
    cal = MotorCalibration(2, 0, 153, 612, 3303)
    mid = (612 + 3303) / 2
    # LeRobot (use_degrees): deg = (raw - mid) * 360 / 4095
    for raw in (612, 1000, 2000, 3303):
        assert raw_to_wire(raw, cal, False) == pytest.approx(math.radians((raw - mid) * 360 / 4095))
    assert wire_to_raw(0.0, cal, False) == round(mid)
    assert wire_to_raw(10.0, cal, False) == 3303  # clipped to the calibrated range


def test_gripper_is_zero_closed_one_open_and_drive_mode_inverts():
    cal = MotorCalibration(6, 0, 0, 2031, 3490)
    assert raw_to_wire(2031, cal, True) == 0.0 and raw_to_wire(3490, cal, True) == 1.0
    assert wire_to_raw(0.5, cal, True) == round(2031 + 0.5 * (3490 - 2031))
    inv = MotorCalibration(6, 1, 0, 2031, 3490)
    assert raw_to_wire(2031, inv, True) == 1.0
    assert wire_to_raw(1.0, inv, True) == 2031
