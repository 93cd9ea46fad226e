"""Embodiment configuration: one YAML file per robot under ``config/embodiments/``.

Pure Python (no rclpy): the policy, perception, drivers, deployments and evaluation all read
the same file through ``load_embodiment``. Errors name the field and the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .units import AngleUnit, GripperUnit, JointUnitMap

ACTION_SPACES = ("joint_position", "end_effector")
BLENDING_MODES = ("replace", "crossfade", "ensemble")

# Every key each section may hold, with its check. A key not listed is refused (a typo must not
# silently turn a safety check off); a value of the wrong type is refused. Backend options and
# camera sources are checked by the backend and the camera source that read them.


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _non_negative(v: Any) -> str:
    return "" if _is_number(v) and v >= 0 else "a number >= 0"


def _positive_number(v: Any) -> str:
    return "" if _is_number(v) and v > 0 else "a number > 0"


def _boolean(v: Any) -> str:
    return "" if isinstance(v, bool) else "true or false"


def _xyz(v: Any) -> str:
    return "" if isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_number(x) for x in v) else "a list of 3 numbers [x, y, z]"


def _string(v: Any) -> str:
    return "" if isinstance(v, str) else "a string"


def _mapping(v: Any) -> str:
    return "" if isinstance(v, dict) else "a mapping"


def _string_list(v: Any) -> str:
    return "" if isinstance(v, list) and all(isinstance(x, str) for x in v) else "a list of strings"


def _envelope_table(v: Any) -> str:
    ok = isinstance(v, dict) and all(isinstance(r, (list, tuple)) and len(r) == 2 and all(_is_number(x) for x in r)
                                     for r in v.values())
    return "" if ok else "a mapping joint: [low, high] in wire units"


def _one_of(*choices: str):
    def check(v: Any) -> str:
        return "" if v in choices else f"one of {', '.join(choices)}"
    return check


def _int_at_least(low: int):
    def check(v: Any) -> str:
        return "" if isinstance(v, int) and not isinstance(v, bool) and v >= low else f"an integer >= {low}"
    return check


TOP_LEVEL_KEYS = {"embodiment": _string, "description": _string, "control_rate_hz": _positive_number,
                  "servo_rate_hz": _positive_number, "arms": None, "cameras": None, "model": _mapping,
                  "chunk": _mapping, "safety": _mapping}
ARM_KEYS = {"name": _string, "joints": _string_list, "gripper": _string, "position_limits": _mapping,
            "velocity_limits": _mapping, "backend": _mapping, "sim_model": _string, "base_pose": _mapping}
BASE_POSE_KEYS = {"xyz": _xyz, "rpy": _xyz}
CAMERA_KEYS = {"name": _string, "width": _positive_number, "height": _positive_number, "source": _mapping,
               "frame_id": _string}
MODEL_KEYS = {"norm_tag": _string, "action_space": _string, "camera_order": _string_list,
              "state_joints": _string_list, "action_joints": _string_list, "units": _mapping}
UNITS_KEYS = {"default": _mapping, "joints": _mapping, "gripper": _mapping}
ANGLE_UNIT_KEYS = {"unit": _one_of("rad", "deg"), "sign": lambda v: "" if v in (1, -1) else "1 or -1",
                   "offset": lambda v: "" if _is_number(v) else "a number"}
GRIPPER_UNIT_KEYS = {"model_closed": lambda v: "" if _is_number(v) else "a number",
                     "model_open": lambda v: "" if _is_number(v) else "a number"}
CHUNK_KEYS = {
    "execute_steps": _int_at_least(0),   # steps of each chunk executed before the next may replace the rest (0: all)
    "blending": _one_of(*BLENDING_MODES),
}
SAFETY_KEYS = {
    "joint_limit_margin_rad": _non_negative,
    "shadow_by_default": _boolean,
    "per_tick_clamp_rad": _positive_number,
    "envelope_margin": _non_negative,
    "envelope": _envelope_table,
    "workspace": _mapping,
    "min_arm_distance_m": _non_negative,
    "peer_max_age_s": _positive_number,
    "max_relative_target_rad": _non_negative,
    "tracking_error_max_rad": _non_negative,
}
WORKSPACE_KEYS = {"box_min": _xyz, "box_max": _xyz, "table_z": lambda v: "" if _is_number(v) else "a number"}


def _check_section(section: Any, keys: dict, where: str, path: Path) -> None:
    """Refuse unknown keys and wrongly typed values of one mapping, naming the file and the key."""
    if section is None:
        return
    if not isinstance(section, dict):
        raise EmbodimentError(f"{path}: field '{where}' must be a mapping, got {type(section).__name__}")
    unknown = sorted(str(k) for k in section if k not in keys)
    if unknown:
        raise EmbodimentError(f"{path}: unknown key{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(repr(f'{where}.{k}' if where else k) for k in unknown)} "
                              f"(known: {', '.join(sorted(keys))})")
    for key, check in keys.items():
        if check is None or key not in section or section[key] is None:
            continue
        wanted = check(section[key])
        if wanted:
            name = f"{where}.{key}" if where else key
            raise EmbodimentError(f"{path}: field '{name}' must be {wanted}, got {section[key]!r}")


class EmbodimentError(ValueError):
    """An embodiment config the stack refuses; the message names the field and the file."""


@dataclass(frozen=True)
class ArmConfig:
    name: str
    joints: list[str]
    gripper: str | None
    position_limits: dict[str, tuple[float, float]]
    velocity_limits: dict[str, float]
    backend: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CameraConfig:
    name: str
    width: int
    height: int
    source: dict[str, Any]
    frame_id: str


@dataclass(frozen=True)
class ModelConfig:
    norm_tag: str
    action_space: str
    camera_order: list[str]
    state_joints: list[str]
    action_joints: list[str]
    state_units: JointUnitMap
    action_units: JointUnitMap
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Embodiment:
    name: str
    path: Path
    description: str
    control_rate_hz: float
    servo_rate_hz: float
    arms: list[ArmConfig]
    cameras: list[CameraConfig]
    model: ModelConfig
    chunk: dict[str, Any]
    safety: dict[str, Any]
    raw: dict[str, Any]

    @property
    def joint_names(self) -> list[str]:
        return [j for arm in self.arms for j in arm.joints]

    @property
    def grippers(self) -> list[str]:
        return [arm.gripper for arm in self.arms if arm.gripper]

    def arm(self, name: str) -> ArmConfig:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise EmbodimentError(f"{self.path}: no arm named '{name}' (arms: {', '.join(a.name for a in self.arms)})")

    def camera(self, name: str) -> CameraConfig:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise EmbodimentError(f"{self.path}: no camera named '{name}'")

    def cameras_in_model_order(self) -> list[CameraConfig]:
        return [self.camera(n) for n in self.model.camera_order]


def config_root() -> Path:
    """The repository's ``config/`` (or an installed share directory via MOLMOACT2_CONFIG_DIR)."""
    env = os.environ.get("MOLMOACT2_CONFIG_DIR")
    if env:
        return Path(env)
    root = os.environ.get("MOLMOACT2_ROS_ROOT")
    if root:
        return Path(root) / "config"
    return Path(__file__).resolve().parents[3] / "config"


def resolve_embodiment_path(name_or_path: str | os.PathLike) -> Path:
    """A path to a YAML file, or the name of one under config/embodiments/."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return config_root() / "embodiments" / f"{name_or_path}.yaml"


def load_embodiment(name_or_path: str | os.PathLike) -> Embodiment:
    path = resolve_embodiment_path(name_or_path)
    if not path.is_file():
        available = sorted(x.stem for x in (config_root() / "embodiments").glob("*.yaml"))
        raise EmbodimentError(f"embodiment config '{name_or_path}' not found at {path} (available: {', '.join(available)})")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    return parse_embodiment(raw, path)


def _need(d: dict, key: str, where: str, path: Path) -> Any:
    if key not in d or d[key] is None:
        raise EmbodimentError(f"{path}: missing field '{where}{key}'")
    return d[key]


def _positive(value: Any, where: str, path: Path) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise EmbodimentError(f"{path}: field '{where}' must be a number, got {value!r}") from None
    if not v > 0:
        raise EmbodimentError(f"{path}: field '{where}' must be > 0, got {value!r}")
    return v


def _parse_units(spec: dict, joints: list[str], grippers: set[str], where: str, path: Path) -> JointUnitMap:
    default = dict(spec.get("default") or {})
    per_joint = dict(spec.get("joints") or {})
    unknown = sorted(set(per_joint) - set(joints))
    if unknown:
        raise EmbodimentError(f"{path}: field '{where}.joints' names unknown joints: {', '.join(unknown)}")
    gripper_spec = dict(spec.get("gripper") or {})
    units: list[AngleUnit | GripperUnit] = []
    for j in joints:
        try:
            if j in grippers:
                g = {**gripper_spec, **per_joint.get(j, {})}
                units.append(GripperUnit(float(g.get("model_closed", 0.0)), float(g.get("model_open", 1.0))))
            else:
                a = {**default, **per_joint.get(j, {})}
                units.append(AngleUnit(str(a.get("unit", "rad")), float(a.get("sign", 1.0)), float(a.get("offset", 0.0))))
        except ValueError as exc:
            raise EmbodimentError(f"{path}: field '{where}' for joint '{j}': {exc}") from None
    return JointUnitMap(joints, units)


def validate_sections(raw: dict, path: Path) -> None:
    """Every section's keys and value types (the parser below checks the cross-references)."""
    if not isinstance(raw, dict):
        raise EmbodimentError(f"{path}: an embodiment config is a mapping, got {type(raw).__name__}")
    _check_section(raw, TOP_LEVEL_KEYS, "", path)
    for section, entry_keys in (("arms", ARM_KEYS), ("cameras", CAMERA_KEYS)):
        entries = raw.get(section)
        if entries is not None and not isinstance(entries, list):
            raise EmbodimentError(f"{path}: field '{section}' must be a list")
        for i, entry in enumerate(entries or []):
            _check_section(entry, entry_keys, f"{section}[{i}]", path)
            if section == "arms":
                _check_section(entry.get("base_pose"), BASE_POSE_KEYS, f"arms[{i}].base_pose", path)
    model = raw.get("model") or {}
    _check_section(model, MODEL_KEYS, "model", path)
    units = model.get("units") or {}
    _check_section(units, UNITS_KEYS, "model.units", path)
    _check_section(units.get("default"), ANGLE_UNIT_KEYS, "model.units.default", path)
    _check_section(units.get("gripper"), GRIPPER_UNIT_KEYS, "model.units.gripper", path)
    for joint, spec in (units.get("joints") or {}).items():
        keys = {**ANGLE_UNIT_KEYS, **GRIPPER_UNIT_KEYS}
        _check_section(spec, keys, f"model.units.joints.{joint}", path)
    _check_section(raw.get("chunk"), CHUNK_KEYS, "chunk", path)
    safety = raw.get("safety") or {}
    _check_section(safety, SAFETY_KEYS, "safety", path)
    _check_section(safety.get("workspace"), WORKSPACE_KEYS, "safety.workspace", path)


def parse_embodiment(raw: dict, path: Path) -> Embodiment:
    validate_sections(raw, path)
    name = str(_need(raw, "embodiment", "", path))
    control_rate = _positive(_need(raw, "control_rate_hz", "", path), "control_rate_hz", path)
    servo_rate = _positive(raw.get("servo_rate_hz", control_rate), "servo_rate_hz", path)

    arms: list[ArmConfig] = []
    seen: dict[str, str] = {}
    for i, a in enumerate(_need(raw, "arms", "", path)):
        where = f"arms[{i}]."
        arm_name = str(_need(a, "name", where, path))
        joints = [str(j) for j in _need(a, "joints", where, path)]
        for j in joints:
            if j in seen:
                raise EmbodimentError(f"{path}: joint '{j}' in arm '{arm_name}' is also in arm '{seen[j]}': joint names must be unique across the robot")
            seen[j] = arm_name
        gripper = a.get("gripper")
        if gripper is not None and gripper not in joints:
            raise EmbodimentError(f"{path}: field '{where}gripper' = '{gripper}' is not one of the arm's joints")
        limits_raw = _need(a, "position_limits", where, path)
        vel_raw = _need(a, "velocity_limits", where, path)
        if set(limits_raw) != set(joints):
            raise EmbodimentError(f"{path}: field '{where}position_limits' must name exactly the arm's joints (missing: {sorted(set(joints) - set(limits_raw))}, unknown: {sorted(set(limits_raw) - set(joints))})")
        if set(vel_raw) != set(joints):
            raise EmbodimentError(f"{path}: field '{where}velocity_limits' must name exactly the arm's joints (missing: {sorted(set(joints) - set(vel_raw))}, unknown: {sorted(set(vel_raw) - set(joints))})")
        limits = {}
        for j, (lo, hi) in limits_raw.items():
            if not float(lo) < float(hi):
                raise EmbodimentError(f"{path}: field '{where}position_limits.{j}' must be [low, high] with low < high")
            limits[j] = (float(lo), float(hi))
        velocities = {j: _positive(v, f"{where}velocity_limits.{j}", path) for j, v in vel_raw.items()}
        known = {"name", "joints", "gripper", "position_limits", "velocity_limits", "backend"}
        arms.append(ArmConfig(arm_name, joints, gripper, limits, velocities, dict(a.get("backend") or {}),
                              {k: v for k, v in a.items() if k not in known}))

    cameras: list[CameraConfig] = []
    for i, c in enumerate(_need(raw, "cameras", "", path)):
        where = f"cameras[{i}]."
        cam_name = str(_need(c, "name", where, path))
        source = c.get("source")
        if not source or "type" not in source:
            raise EmbodimentError(f"{path}: camera '{cam_name}' has no source (field '{where}source.type')")
        cameras.append(CameraConfig(
            cam_name,
            int(_positive(_need(c, "width", where, path), where + "width", path)),
            int(_positive(_need(c, "height", where, path), where + "height", path)),
            dict(source),
            str(c.get("frame_id", f"{cam_name}_camera_optical_frame")),
        ))
    camera_names = [c.name for c in cameras]
    if len(set(camera_names)) != len(camera_names):
        raise EmbodimentError(f"{path}: camera names must be unique: {camera_names}")

    m = _need(raw, "model", "", path)
    action_space = str(_need(m, "action_space", "model.", path))
    if action_space not in ACTION_SPACES:
        raise EmbodimentError(f"{path}: field 'model.action_space' = '{action_space}' must be one of {', '.join(ACTION_SPACES)}")
    camera_order = [str(x) for x in _need(m, "camera_order", "model.", path)]
    missing = [x for x in camera_order if x not in camera_names]
    if missing:
        raise EmbodimentError(f"{path}: field 'model.camera_order' names cameras with no entry in 'cameras': {', '.join(missing)}")
    all_joints = [j for arm in arms for j in arm.joints]
    state_joints = [str(x) for x in m.get("state_joints", all_joints)]
    action_joints = [str(x) for x in m.get("action_joints", all_joints)]
    for field_name, names in (("state_joints", state_joints), ("action_joints", action_joints)):
        unknown = [x for x in names if x not in all_joints]
        if unknown:
            raise EmbodimentError(f"{path}: field 'model.{field_name}' names joints no arm has: {', '.join(unknown)}")
    grippers = {arm.gripper for arm in arms if arm.gripper}
    units_spec = dict(m.get("units") or {})
    model = ModelConfig(
        norm_tag=str(_need(m, "norm_tag", "model.", path)),
        action_space=action_space,
        camera_order=camera_order,
        state_joints=state_joints,
        action_joints=action_joints,
        state_units=_parse_units(units_spec, state_joints, grippers, "model.units", path),
        action_units=_parse_units(units_spec, action_joints, grippers, "model.units", path),
        extra={k: v for k, v in m.items() if k not in {"norm_tag", "action_space", "camera_order", "state_joints", "action_joints", "units"}},
    )
    return Embodiment(
        name=name,
        path=Path(path),
        description=str(raw.get("description", "")),
        control_rate_hz=control_rate,
        servo_rate_hz=servo_rate,
        arms=arms,
        cameras=cameras,
        model=model,
        chunk=dict(raw.get("chunk") or {}),
        safety=dict(raw.get("safety") or {}),
        raw=raw,
    )
