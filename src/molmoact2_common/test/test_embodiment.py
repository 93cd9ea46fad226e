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


def _shipped_raw(name: str) -> dict:
    return yaml.safe_load((config_root() / "embodiments" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("section, key, value, message", [
    ("safety", "min_arm_distnce_m", 0.05, "unknown key 'safety.min_arm_distnce_m'"),
    ("safety", "envelope_margn", 0.05, "unknown key 'safety.envelope_margn'"),
    ("chunk", "horizon", 30, "unknown key 'chunk.horizon'"),
    ("chunk", "execute_step", 8, "unknown key 'chunk.execute_step'"),
])
def test_unknown_safety_or_chunk_key_is_refused_naming_the_file_and_the_key(tmp_path, section, key, value, message):
    raw = _shipped_raw("yam_bimanual")
    raw.setdefault(section, {})[key] = value
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(EmbodimentError, match=message) as err:
        load_embodiment(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("section, key, value, message", [
    ("safety", "min_arm_distance_m", "0.05", "'safety.min_arm_distance_m' must be a number >= 0"),
    ("safety", "shadow_by_default", "yes", "'safety.shadow_by_default' must be true or false"),
    ("safety", "tracking_error_max_rad", -0.1, "'safety.tracking_error_max_rad' must be a number >= 0"),
    ("safety", "workspace", {"table_z": "low"}, "'safety.workspace.table_z' must be a number"),
    ("chunk", "blending", "crosfade", "'chunk.blending' must be one of replace, crossfade, ensemble"),
    ("chunk", "execute_steps", 2.5, "'chunk.execute_steps' must be an integer >= 0"),
])
def test_wrongly_typed_safety_or_chunk_value_is_refused_naming_the_file_and_the_key(tmp_path, section, key, value, message):
    raw = _shipped_raw("yam_bimanual")
    raw[section][key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(EmbodimentError, match=message) as err:
        load_embodiment(path)
    assert str(path) in str(err.value)


def test_unknown_key_in_any_section_is_refused(tmp_path):
    for where in (["arms", 0], ["cameras", 0], ["model"], ["model", "units"], []):
        raw = _shipped_raw("so101")
        node = raw
        for k in where:
            node = node[k]
        node["colour"] = "red"
        path = tmp_path / "extra.yaml"
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(EmbodimentError, match="unknown key .*colour"):
            load_embodiment(path)
