"""The joint envelope a checkpoint was trained in, read from its norm stats (no torch, no lerobot).

MolmoAct2 normalises actions with the q01/q99 quantiles of its training data per norm tag
(``norm_stats.json``: ``metadata_by_tag.<tag>.action_stats.q01 / q99``, in the checkpoint's model
units, in the order of the embodiment's ``model.action_joints``). A target outside that range is
one the policy never saw a demonstration reach. The driver clamps every chunk into

    [q01 - m * (q99 - q01) / 2,  q99 + m * (q99 - q01) / 2]   (model units)

with ``m = safety.envelope_margin`` in normalised units (q01 -> -1, q99 -> +1, so 0.05 widens
each side by 5 % of the half range), converted to wire units with the embodiment's unit map (a
flipped sign swaps the bounds).

Where the stats are: an HF MolmoAct2 snapshot holds ``norm_stats.json`` (or the file its
``config.json`` names in ``norm_stats_filename``); a LeRobot fine-tune directory holds a
``config.json`` whose ``checkpoint_path`` names the HF snapshot it was made from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


class EnvelopeError(ValueError):
    """The envelope cannot be built; the message names the file and the field."""


def norm_stats_file(checkpoint: str | os.PathLike) -> Path:
    """The norm stats file of an HF snapshot or of a LeRobot fine-tune made from one."""
    root = Path(checkpoint).expanduser()
    if not root.is_dir():
        raise EnvelopeError(f"checkpoint directory {root} does not exist (parameter 'checkpoint' of the driver)")
    config: dict[str, Any] = {}
    cfg_path = root / "config.json"
    if cfg_path.is_file():
        try:
            config = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise EnvelopeError(f"{cfg_path}: not readable JSON: {exc}") from None
    name = str(config.get("norm_stats_filename") or "norm_stats.json")
    if (root / name).is_file():
        return root / name
    parent = config.get("checkpoint_path")
    if parent:  # a portable fine-tune names its base relative to itself (molmoact2-train-demo)
        return norm_stats_file(parent if Path(parent).expanduser().is_absolute() else root / parent)
    raise EnvelopeError(f"{root} has no {name} and its config.json names no checkpoint_path: "
                        "the envelope needs the checkpoint's norm stats")


def envelope_for_arm(checkpoint: str | os.PathLike, embodiment: Any, arm: Any) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) in wire units for ``arm.joints``, from the checkpoint's stats for the embodiment's tag."""
    path = norm_stats_file(checkpoint)
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"{path}: not readable JSON: {exc}") from None
    tag = embodiment.model.norm_tag
    by_tag = payload.get("metadata_by_tag") or {}
    if tag not in by_tag:
        raise EnvelopeError(f"{path}: no norm tag '{tag}' (embodiment {embodiment.path}; tags: {', '.join(sorted(by_tag))})")
    stats = (by_tag[tag] or {}).get("action_stats") or {}
    names = list(embodiment.model.action_joints)
    try:
        q01 = np.asarray(stats["q01"], dtype=np.float64)
        q99 = np.asarray(stats["q99"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise EnvelopeError(f"{path}: metadata_by_tag.{tag}.action_stats lacks numeric q01/q99") from None
    if q01.shape != (len(names),) or q99.shape != (len(names),):
        raise EnvelopeError(f"{path}: metadata_by_tag.{tag}.action_stats q01/q99 have {q01.shape}/{q99.shape} values; "
                            f"the embodiment's model.action_joints has {len(names)}")
    if not (np.all(np.isfinite(q01)) and np.all(np.isfinite(q99))):
        raise EnvelopeError(f"{path}: metadata_by_tag.{tag}.action_stats q01/q99 are not finite")
    margin = float((embodiment.safety or {}).get("envelope_margin", 0.0) or 0.0)
    half = np.abs(q99 - q01) / 2.0
    lo_model = np.minimum(q01, q99) - margin * half
    hi_model = np.maximum(q01, q99) + margin * half
    units = embodiment.model.action_units
    a, b = units.to_wire(lo_model), units.to_wire(hi_model)
    lo_wire, hi_wire = np.minimum(a, b), np.maximum(a, b)
    missing = [j for j in arm.joints if j not in names]
    if missing:
        raise EnvelopeError(f"{embodiment.path}: joints {', '.join(missing)} of arm '{arm.name}' are not in model.action_joints: "
                            "the checkpoint's stats say nothing about them")
    idx = [names.index(j) for j in arm.joints]
    return lo_wire[idx], hi_wire[idx]
