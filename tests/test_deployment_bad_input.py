"""Deployments refuse bad input at start: one message naming the field and the file; a hardware
deployment without its device fails with the device named, nothing moves, and every other node is
shut down."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from molmoact2_common.bringup.graph import load_deployment
from molmoact2_common.bringup.runner import run
from molmoact2_common.embodiment import config_root
from support.ros_harness import ROOT


def _bad_embodiment(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((config_root() / "embodiments/so101.yaml").read_text())
    edit(raw)
    path = tmp_path / "so101_bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_runner_refuses_a_config_naming_a_joint_no_arm_has(tmp_path):
    bad = _bad_embodiment(tmp_path, lambda r: r["model"]["action_joints"].__setitem__(0, "elbow_roll"))
    proc = subprocess.run([sys.executable, "-m", "molmoact2_common.bringup.runner", "so101", f"config:={bad}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "model.action_joints" in proc.stderr and "elbow_roll" in proc.stderr and str(bad) in proc.stderr


def test_runner_refuses_a_camera_with_no_source(tmp_path):
    bad = _bad_embodiment(tmp_path, lambda r: r["cameras"][0].pop("source"))
    proc = subprocess.run([sys.executable, "-m", "molmoact2_common.bringup.runner", "so101", f"config:={bad}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "camera 'front' has no source" in proc.stderr and str(bad) in proc.stderr


@pytest.mark.ros
@pytest.mark.model
@pytest.mark.slow
def test_hardware_deployment_without_its_device_fails_cleanly_and_nothing_moves(tmp_path, tiny_checkpoint_dir):
    missing_port = str(tmp_path / "ttyACM_not_here")
    calibration = tmp_path / "follower.json"  # a calibrated arm (LeRobot's format) whose bus is unplugged
    calibration.write_text(json.dumps({
        name: {"id": i + 1, "drive_mode": 0, "homing_offset": 0, "range_min": 500, "range_max": 3500}
        for i, name in enumerate(["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"])}))
    graph = load_deployment("so101", {"namespace": "bad_input_device", "checkpoint": str(tiny_checkpoint_dir), "port": missing_port,
                                      "calibration": str(calibration)})
    messages: list[str] = []
    code = run(graph, duration=5.0, log_dir=tmp_path / "logs", echo=messages.append)
    assert code == 1
    error = next(m for m in messages if "ERROR" in m)
    assert "/bad_input_device/driver" in error and "configure" in error and "ttyACM_not_here" in error, error
    # every node's process was stopped (the runner reaps them all), none left behind
    logs = {p.name: p.read_text() for p in (tmp_path / "logs").glob("*.log")}
    driver_log = logs["bad_input_device__driver.log"]
    assert "activated" not in driver_log, "the driver must never activate without its device"


@pytest.mark.ros
@pytest.mark.model
@pytest.mark.slow
def test_checkpoint_norm_tag_that_does_not_match_the_embodiment_is_refused(tmp_path, tiny_checkpoint_dir):
    bad = _bad_embodiment(tmp_path, lambda r: r["model"].__setitem__("norm_tag", "some_other_robot"))
    graph = load_deployment("so101", {"namespace": "bad_input_norm_tag", "checkpoint": str(tiny_checkpoint_dir), "config": str(bad),
                                      "port": str(tmp_path / "unused")})
    messages: list[str] = []
    code = run(graph, duration=5.0, log_dir=tmp_path / "logs", echo=messages.append)
    assert code == 1
    error = next(m for m in messages if "ERROR" in m)
    assert "/bad_input_norm_tag/policy" in error and "configure" in error and "some_other_robot" in error, error
