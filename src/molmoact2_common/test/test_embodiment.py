"""Embodiment configs: the shipped ones load, and bad ones are refused naming field and file."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from molmoact2_common.embodiment import EmbodimentError, config_root, load_embodiment, parse_embodiment

SHIPPED = ["so101", "so100", "yam_bimanual", "franka_droid"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_embodiments_load(name):
    emb = load_embodiment(name)
    assert emb.name == name
    assert len(set(emb.joint_names)) == len(emb.joint_names)
    assert [c.name for c in emb.cameras_in_model_order()] == emb.model.camera_order


def test_yam_bimanual_matches_the_real_deployment():
    emb = load_embodiment("yam_bimanual")
    assert emb.control_rate_hz == 30
    assert emb.model.camera_order == ["top", "left", "right"]
    assert len(emb.model.action_joints) == 14
    assert {(c.width, c.height) for c in emb.cameras} == {(640, 360)}
    # 0.03 rad per 30 Hz tick
    assert emb.arm("left").velocity_limits["left_joint1"] == pytest.approx(0.03 * 30)
    assert emb.model.norm_tag == "yam_dual_molmoact2"


def test_so101_units_convert_to_the_old_calibration_degrees():
    emb = load_embodiment("so101")
    wire = np.array([0.0, 0.0, 0.0, np.pi / 2, 0.0, 0.25])
    model = emb.model.state_units.to_model(wire)
    np.testing.assert_allclose(model, [0.0, 90.0, 90.0, 90.0, 0.0, 25.0])
    wire2 = np.array([0.1, 0.2, -0.3, 0.4, 0.5, 1.0])
    np.testing.assert_allclose(emb.model.action_units.to_wire(emb.model.action_units.to_model(wire2)), wire2)
    # shoulder_lift has sign -1: a positive wire angle lowers the model value
    assert emb.model.state_units.to_model(np.array([0, 0.1, 0, 0, 0, 0]))[1] < 90.0


def test_droid_gripper_is_inverted_in_model_units():
    emb = load_embodiment("franka_droid")
    wire = np.zeros(8)
    wire[7] = 1.0  # open on the wire
    assert emb.model.state_units.to_model(wire)[7] == 0.0  # DROID: 0 = open


def _raw(name: str) -> dict:
    return yaml.safe_load((config_root() / "embodiments" / f"{name}.yaml").read_text())


def test_duplicate_joint_names_across_arms_are_refused():
    raw = _raw("yam_bimanual")
    raw["arms"][1]["joints"][0] = "left_joint1"
    with pytest.raises(EmbodimentError, match="left_joint1.*unique"):
        parse_embodiment(raw, Path("bad.yaml"))


def test_camera_without_source_is_refused_naming_field_and_file():
    raw = _raw("so101")
    del raw["cameras"][1]["source"]
    with pytest.raises(EmbodimentError, match=r"bad\.yaml.*wrist.*source"):
        parse_embodiment(raw, Path("bad.yaml"))


def test_model_camera_order_must_name_configured_cameras():
    raw = _raw("so101")
    raw["model"]["camera_order"] = ["front", "top"]
    with pytest.raises(EmbodimentError, match="camera_order.*top"):
        parse_embodiment(raw, Path("bad.yaml"))


def test_unknown_action_space_is_refused():
    raw = copy.deepcopy(_raw("franka_droid"))
    raw["model"]["action_space"] = "torque"
    with pytest.raises(EmbodimentError, match="action_space"):
        parse_embodiment(raw, Path("bad.yaml"))


def test_missing_limit_for_a_joint_is_refused():
    raw = _raw("so101")
    del raw["arms"][0]["position_limits"]["wrist_roll"]
    with pytest.raises(EmbodimentError, match="position_limits.*wrist_roll"):
        parse_embodiment(raw, Path("bad.yaml"))


def test_unknown_embodiment_lists_available_ones():
    with pytest.raises(EmbodimentError, match="so101"):
        load_embodiment("no_such_robot")
