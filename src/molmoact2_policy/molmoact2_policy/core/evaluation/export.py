"""Bags -> a LeRobot dataset v3.0 (the format MolmoAct2 fine-tuning reads), one episode per bag.

Frames are the observations the live graph would have built (same synchroniser, at the
embodiment's control rate; incomplete or stale ticks are skipped and counted). Columns follow
the embodiment config: ``observation.images.<camera>`` (video, the config's width x height, model
camera order), ``observation.state`` (``model.state_joints``) and ``action`` (``model.action_joints``:
the executed joint positions one frame later, what the demonstrator made the arm do). Values are
in the checkpoint's model units by default (so the checkpoint's norm stats apply; ``units='wire'``
keeps radians and gripper 0..1). Videos are encoded while streaming (constant memory).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from molmoact2_common.embodiment import load_embodiment

from ..image_codec import resize_rgb
from ..policy_io import PolicyIO
from .bagio import BagReader
from .stream import InstructionSeen, ObservationStream, Tick
from .topic_map import load_topic_map

UNITS = ("model", "wire")
# LeRobot's video backend for every dataset this project writes or reads: PyAV, whose wheel bundles
# FFmpeg (no system libav*; LeRobot encodes with PyAV anyway). Pass it to every LeRobotDataset(...).
VIDEO_BACKEND = "pyav"


class ExportError(RuntimeError):
    """An export that cannot be made; the message says why."""


@dataclass
class ExportConfig:
    bags: list[str]
    embodiment: str
    output: str
    repo_id: str = ""
    topic_map: str | None = None
    instruction: str | None = None
    units: str = "model"
    stamps: str = "header"
    progress: bool = True


def features_for(emb) -> dict:
    feats = {}
    for cam in emb.cameras_in_model_order():
        feats[f"observation.images.{cam.name}"] = {
            "dtype": "video", "shape": (cam.height, cam.width, 3), "names": ["height", "width", "channels"]}
    feats["observation.state"] = {"dtype": "float32", "shape": (len(emb.model.state_joints),), "names": list(emb.model.state_joints)}
    feats["action"] = {"dtype": "float32", "shape": (len(emb.model.action_joints),), "names": list(emb.model.action_joints)}
    return feats


def export_lerobot(cfg: ExportConfig) -> dict:
    if cfg.units not in UNITS:
        raise ExportError(f"units '{cfg.units}' must be one of {', '.join(UNITS)}")
    emb = load_embodiment(cfg.embodiment)
    fps = float(emb.control_rate_hz)
    if fps != int(fps):
        raise ExportError(f"LeRobot datasets need an integer fps; embodiment '{emb.name}' runs at {fps} Hz")
    out = Path(cfg.output)
    if out.exists():
        raise ExportError(f"output '{out}' exists already: LeRobot datasets are created new")
    tmap = load_topic_map(cfg.topic_map, emb)
    # check every bag before writing anything
    readers = []
    for bag in cfg.bags:
        r = BagReader(bag)
        topics = r.topics()
        tmap.check_bag(topics)
        if not cfg.instruction and not (tmap.instruction and tmap.instruction in topics):
            raise ExportError(f"bag '{bag}': no task text: give --instruction or map the bag's instruction topic")
        readers.append(r)
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    io = PolicyIO(emb)
    cams = emb.cameras_in_model_order()
    ds = LeRobotDataset.create(cfg.repo_id or f"local/{out.name}", fps=int(fps), features=features_for(emb), root=out,
                               robot_type=emb.name, use_videos=True, streaming_encoding=True,
                               video_backend=VIDEO_BACKEND)
    summary = {"output": str(out), "repo_id": ds.repo_id, "fps": int(fps), "units": cfg.units, "episodes": [], "broken_records": []}
    try:
        for bag, reader in zip(cfg.bags, readers):
            stream = ObservationStream(reader, tmap, emb, fps, cfg.stamps)
            task = cfg.instruction or ""
            prev = None  # (images, state) waiting for its action (the next frame's executed positions)
            frames = skipped = 0
            bar = _bar(bag, cfg.progress)
            for ev in stream:
                if isinstance(ev, InstructionSeen) and not cfg.instruction:
                    task = ev.text
                if not isinstance(ev, Tick):
                    continue
                if bar is not None:
                    bar.update(1)
                obs = ev.obs
                if not obs.complete or obs.stale or not task:
                    skipped += 1
                    prev = None  # never bridge a gap: the action must be the very next frame's
                    continue
                index = {n: i for i, n in enumerate(obs.joint_names)}
                wire_action = np.array([obs.joint_positions[index[j]] for j in io.action_joints])
                if prev is not None:
                    p_images, p_state, p_task = prev
                    action = io.action_units.to_model(wire_action) if cfg.units == "model" else wire_action
                    frame = {f"observation.images.{c.name}": img for c, img in zip(cams, p_images)}
                    frame["observation.state"] = np.asarray(p_state, np.float32)
                    frame["action"] = np.asarray(action, np.float32)
                    frame["task"] = p_task
                    ds.add_frame(frame)
                    frames += 1
                images = [resize_rgb(f.image, c.width, c.height) if f.image.shape[:2] != (c.height, c.width) else f.image
                          for c, f in zip(cams, [obs.frames[obs.camera_names.index(c.name)] for c in cams])]
                if cfg.units == "model":
                    state = io.state_to_model(obs.joint_names, obs.joint_positions)
                else:
                    state = np.array([obs.joint_positions[index[j]] for j in io.state_joints])
                prev = (images, state, task)
            if bar is not None:
                bar.close()
            if frames:
                ds.save_episode()
            summary["episodes"].append({"bag": str(bag), "frames": frames, "skipped_ticks": skipped, "task": task})
            summary["broken_records"] += [b.as_dict() for b in reader.broken]
    finally:
        ds.finalize()
    if not any(e["frames"] for e in summary["episodes"]):
        raise ExportError("no frame could be exported (every observation was incomplete or stale): " + str(summary["episodes"]))
    return summary


def _bar(bag, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(desc=f"exporting {Path(bag).name}", unit="frame", file=sys.stderr, mininterval=0.5)
