"""Build one arm's DriverCore from the embodiment config and the node's (validated) parameters.

Embodiment fields read here (all optional except the arm's limits):

- ``servo_rate_hz``; ``chunk.blending``, ``chunk.execute_steps``;
- ``safety.joint_limit_margin_rad``, ``safety.shadow_by_default``, ``safety.per_tick_clamp_rad``
  (with ``control_rate_hz``: a velocity limit, 0.03 rad per 30 Hz tick = 0.9 rad/s; the lower of
  it and ``velocity_limits`` wins);
- ``safety.max_relative_target_rad`` (a command's largest distance from the measured position,
  arm joints) and ``safety.tracking_error_max_rad`` (measured vs commanded beyond it is a fault);
- the envelope: from the checkpoint's norm stats when the driver is given the checkpoint
  (``core.envelope``: q01/q99 widened by ``safety.envelope_margin`` in normalised units), else
  ``safety.envelope`` ({joint: [low, high]} in wire units, taken as it is), else the
  ``envelope_low``/``envelope_high`` parameters;
- ``safety.workspace`` ({box_min: [x,y,z], box_max: [x,y,z], table_z}) and
  ``safety.min_arm_distance_m`` with ``safety.peer_max_age_s``, checked through forward
  kinematics of the arm's model (``core.kinematics``).

The embodiment loader has already refused unknown keys and wrong types in these sections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .backend import ArmBackend
from .driver_core import DriverConfig, DriverCore
from .envelope import envelope_for_arm
from .safety import SafetyCounters, SafetyLayer, Workspace

DEFAULT_PEER_MAX_AGE_S = 0.1


def _mode(value: Any, shadow_by_default: bool) -> bool:
    """True for shadow (dry-run) mode."""
    if value in (None, "auto", ""):
        return shadow_by_default
    if value not in ("actuate", "shadow"):
        raise ValueError(f"parameter 'mode' = {value!r}: must be auto, actuate or shadow")
    return value == "shadow"


def build_driver(
    embodiment: Any,
    arm: Any,
    backend: ArmBackend,
    params: dict | None = None,
    peer_vector: Callable[[list[str]], tuple[np.ndarray | None, float]] | None = None,
) -> DriverCore:
    """``peer_vector(joint_names)`` returns the other arm's newest commanded positions and their
    age in seconds (None, inf when never received)."""
    p = dict(params or {})
    safety_cfg = dict(embodiment.safety or {})
    chunk_cfg = dict(embodiment.chunk or {})
    servo = float(p.get("servo_rate_hz") or embodiment.servo_rate_hz)
    blending = p.get("blending") or chunk_cfg.get("blending", "crossfade")
    execute_steps = int(p.get("execute_steps", -1))
    if execute_steps < 0:
        execute_steps = int(chunk_cfg.get("execute_steps", 0) or 0)
    joints = list(arm.joints)
    lower = np.array([arm.position_limits[j][0] for j in joints])
    upper = np.array([arm.position_limits[j][1] for j in joints])
    vmax = np.array([arm.velocity_limits[j] for j in joints])
    per_tick = safety_cfg.get("per_tick_clamp_rad")
    if per_tick:
        tick_v = float(per_tick) * float(embodiment.control_rate_hz)
        grippers = {arm.gripper} if arm.gripper else set()
        vmax = np.array([v if j in grippers else min(v, tick_v) for j, v in zip(joints, vmax)])
    margin = float(p.get("joint_limit_margin_rad", -1.0))
    if margin < 0:
        margin = float(safety_cfg.get("joint_limit_margin_rad", 0.0) or 0.0)
    envelope = None
    lo, hi = list(p.get("envelope_low") or []), list(p.get("envelope_high") or [])
    if p.get("checkpoint"):
        envelope = envelope_for_arm(p["checkpoint"], embodiment, arm)  # EnvelopeError is a ValueError: refused at configure
    elif lo or hi:
        if len(lo) != len(joints) or len(hi) != len(joints):
            raise ValueError(f"parameters 'envelope_low'/'envelope_high' need {len(joints)} values each (joints {', '.join(joints)})")
        envelope = (np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
    elif safety_cfg.get("envelope"):
        env = safety_cfg["envelope"]
        missing = [j for j in joints if j not in env]
        if missing:
            raise ValueError(f"{embodiment.path}: safety.envelope lacks joints {', '.join(missing)}")
        envelope = (np.array([min(env[j]) for j in joints], dtype=np.float64),
                    np.array([max(env[j]) for j in joints], dtype=np.float64))
    workspace = None
    if p.get("workspace_check", True) and (safety_cfg.get("workspace") or safety_cfg.get("min_arm_distance_m")):
        workspace = _workspace(embodiment, arm, safety_cfg, peer_vector,
                               check_peer=bool(p.get("min_arm_distance_check", True)))
    counters = SafetyCounters()
    grippers = [arm.gripper] if arm.gripper else []
    safety = SafetyLayer(joints, lower, upper, vmax, 1.0 / servo, margin, envelope, workspace, counters,
                         margin_exempt=grippers,
                         max_relative_target=float(safety_cfg.get("max_relative_target_rad", 0.0) or 0.0),
                         relative_exempt=grippers)
    config = DriverConfig(
        servo_rate_hz=servo,
        blending=blending,
        crossfade_s=float(p.get("crossfade_s", 0.2)),
        ensemble_coeff=float(p.get("ensemble_coeff", 0.5)),
        execute_steps=execute_steps,
        chunk_timeout_s=float(p.get("chunk_timeout_s", 1.0)),
        heartbeat_timeout_s=float(p.get("heartbeat_timeout_s", 0.0)),
        dry_run=_mode(p.get("mode", "auto"), bool(safety_cfg.get("shadow_by_default", False))),
        require_start={"always": True, "never": False}.get(str(p.get("require_start", "auto"))),
        arming_speed_scale=float(p.get("arming_speed_scale", 0.5)),
        tracking_error_max=float(safety_cfg.get("tracking_error_max_rad", 0.0) or 0.0),
        max_relative_target=float(safety_cfg.get("max_relative_target_rad", 0.0) or 0.0),
        input=str(p.get("input", "policy") or "policy"),
        teleop_timeout_s=float(p.get("teleop_timeout_s", 0.2)),
    )
    return DriverCore(arm.name, joints, embodiment.joint_names, backend, safety, config, vmax, arm.gripper)


def _workspace(embodiment: Any, arm: Any, safety_cfg: dict, peer_vector, check_peer: bool = True) -> Workspace | None:
    try:
        from .kinematics import chain_for_arm
    except ImportError as exc:
        raise ValueError(f"safety.workspace / min_arm_distance_m need forward kinematics: {exc}") from exc

    chain = chain_for_arm(embodiment, arm)
    ws = dict(safety_cfg.get("workspace") or {})
    box_min = np.asarray(ws["box_min"], dtype=np.float64) if "box_min" in ws else None
    box_max = np.asarray(ws["box_max"], dtype=np.float64) if "box_max" in ws else None
    table_z = float(ws["table_z"]) if ws.get("table_z") is not None else None
    peer_fn = None
    min_dist = float(safety_cfg.get("min_arm_distance_m", 0.0) or 0.0)
    max_age = float(safety_cfg.get("peer_max_age_s", DEFAULT_PEER_MAX_AGE_S))
    others = [a for a in embodiment.arms if a.name != arm.name]
    if min_dist > 0 and others and check_peer:
        if peer_vector is None:
            raise ValueError(f"{embodiment.path}: safety.min_arm_distance_m = {min_dist} needs the other arm's commanded "
                             f"positions (driver parameter 'peer_commands_topic'), or min_arm_distance_check:=false "
                             f"for an arm that runs alone")
        peer_arm = others[0]
        peer_chain = chain_for_arm(embodiment, peer_arm)

        def peer_fn() -> tuple[np.ndarray | None, str]:
            q, age = peer_vector(list(peer_arm.joints))
            if q is None:
                return None, f"no commanded positions from arm '{peer_arm.name}' yet"
            if age > max_age:
                return None, f"arm '{peer_arm.name}' commanded positions are {age:.3f} s old (bound {max_age} s)"
            return peer_chain.points(q), ""

    return Workspace(chain.points, box_min, box_max, table_z, peer_fn, min_dist)
