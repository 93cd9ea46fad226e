"""Bags -> a LeRobot dataset v3.0 (the format MolmoAct2 fine-tuning reads).

Frames are the observations the live graph would have built (same synchroniser, at the
embodiment's control rate), read from the bag in timestamp order whatever its file order.
Columns follow the embodiment config: ``observation.images.<camera>`` (video, the config's
width x height, model camera order), ``observation.state`` (``model.state_joints``) and
``action`` (``model.action_joints``).

What "the action at t" is (the LeRobot convention, shared with ``metrics.py``): the action of
the frame at time t is the command issued at t, i.e. the joint position the arm executes next:
the executed position of the frame at t + 1/fps. A chunk of H actions from frame t is the
commands issued at t, t + dt, ..., and step k is executed at t + (k+1) dt.

Freshness: a frame is written only when its state and every image are the ones at its time:
the newest message at or before t (stamped no later than t) and no older than the bound
(``max_state_age`` / ``max_image_age``; default the topic map's synchroniser ages, what the
live graph accepts). Any other tick is skipped and counted by reason, never filled with an
older value; the frame before a skipped tick is dropped too (its action would be missing), and
the episode is cut there: each run of consecutive frames is its own dataset episode, so every
frame's dataset timestamp is its bag time minus its episode's first frame time. Values are in
the checkpoint's model units by default (so the checkpoint's norm stats apply; ``units='wire'``
keeps radians and gripper 0..1). Videos are encoded while streaming (constant memory).

Labelled episodes (``episodes``): a bag recorded with the episode manager holds its episode
events (``core.episodes``, topic ``episode_topic``). With ``episodes='auto'`` (default) such a bag
is cut into its labelled episodes: only the frames t with start <= t and t + 1/fps <= stop of an
episode whose outcome is ``success`` (and ``failure`` with ``include_failures``) are written, one
dataset episode each (or more, where fresh frames are missing), with the episode's instruction as
the task. Discarded, interrupted, aborted and unlabelled episodes, and the time between episodes,
are never written. ``'labelled'`` requires the events; ``'all'`` ignores them (one episode per run
of fresh frames, as for a bag without events).
"""

from __future__ import annotations

import dataclasses

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from molmoact2_common.embodiment import load_embodiment

from ..image_codec import resize_rgb
from ..policy_io import PolicyIO
from ..episodes import EVENT_TOPIC, episodes_from_events
from .bagio import BagReader
from .stream import InstructionSeen, ObservationStream, Tick
from .topic_map import load_topic_map

UNITS = ("model", "wire")
EPISODE_MODES = ("auto", "labelled", "all")
_EPISODE_TASK = "\x00episode instruction"  # placeholder task while cutting labelled episodes
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
    max_state_age: float | None = None  # seconds; None: the topic map's joint_max_age
    max_image_age: float | None = None  # seconds; None: the topic map's camera_max_age
    episodes: str = "auto"  # auto | labelled | all (see the module docstring)
    include_failures: bool = False
    episode_topic: str = EVENT_TOPIC
    image_size: tuple[int, int] | None = None  # (width, height) of every exported camera; None: the embodiment's
    min_episode_frames: int = 5  # a run of fresh frames shorter than this is not written (counted in too_short_frames)


def export_cameras(emb, image_size: tuple[int, int] | None = None) -> list:
    """The embodiment's cameras in model order, at ``image_size`` (width, height) when given (a
    simulator's small renders are exported as rendered, not upscaled to the real cameras' size)."""
    cams = emb.cameras_in_model_order()
    if image_size is None:
        return cams
    w, h = (int(v) for v in image_size)
    if w <= 0 or h <= 0:
        raise ExportError(f"image size {w}x{h}: both must be > 0")
    return [dataclasses.replace(c, width=w, height=h) for c in cams]


def features_for(emb, cams=None) -> dict:
    feats = {}
    for cam in cams or emb.cameras_in_model_order():
        feats[f"observation.images.{cam.name}"] = {
            "dtype": "video", "shape": (cam.height, cam.width, 3), "names": ["height", "width", "channels"]}
    feats["observation.state"] = {"dtype": "float32", "shape": (len(emb.model.state_joints),), "names": list(emb.model.state_joints)}
    feats["action"] = {"dtype": "float32", "shape": (len(emb.model.action_joints),), "names": list(emb.model.action_joints)}
    return feats


SKIP_REASONS = {
    "incomplete": "a camera or joint source had not spoken yet",
    "stale": "the synchroniser flagged a source stale (age or skew beyond its bounds)",
    "state_too_old": "the newest joint state at or before the frame time is older than max_state_age",
    "image_too_old": "the newest image at or before the frame time is older than max_image_age",
    "stamped_after_frame": "the state or an image is stamped after the frame time (not the one at its time)",
    "no_task": "no task text yet",
    "no_action": "a valid frame whose next frame (its action) was skipped, or the last frame of the bag",
}


@dataclass
class ExportFrame:
    time_ns: int  # the frame's time on the bag clock
    images: list  # model camera order, at the config's size
    state: np.ndarray  # state joints, in the export's units
    action: np.ndarray  # action joints: the command issued at time_ns = the next frame's executed position
    task: str
    state_stamp_ns: int  # the oldest contributing joint source's stamp
    image_stamps_ns: list[int]


def iter_frames(stream: ObservationStream, io: PolicyIO, cams, units: str, instruction: str | None,
                max_state_age_ns: int, max_image_age_ns: int, counts: dict[str, int]):
    """The frames of one bag, in time order, each with its action; ``None`` between runs of
    consecutive frames (where ticks were skipped). Skipped ticks are counted in ``counts`` by
    the reasons of ``SKIP_REASONS``."""
    task = instruction or ""
    prev: ExportFrame | None = None
    prev_index = None
    for ev in stream:
        if isinstance(ev, InstructionSeen) and not instruction:
            task = ev.text
        if not isinstance(ev, Tick):
            continue
        obs, t = ev.obs, ev.time_ns
        reason = None
        if not obs.complete:
            reason = "incomplete"
        elif obs.stale:
            reason = "stale"
        elif any(s.stamp_ns > t for s in obs.joint_sources) or any(s.stamp_ns > t for s in obs.cameras):
            reason = "stamped_after_frame"
        elif any(t - s.stamp_ns > max_state_age_ns for s in obs.joint_sources):
            reason = "state_too_old"
        elif any(t - s.stamp_ns > max_image_age_ns for s in obs.cameras):
            reason = "image_too_old"
        elif not task:
            reason = "no_task"
        if reason is None and prev is not None and ev.index != prev_index + 1:
            counts["no_action"] += 1  # ticks are consecutive by construction: never bridge a gap
            prev = None
            yield None
        if reason is not None:
            counts[reason] += 1
            if prev is not None:
                counts["no_action"] += 1
                prev = None
                yield None
            continue
        index = {n: i for i, n in enumerate(obs.joint_names)}
        wire_action = np.array([obs.joint_positions[index[j]] for j in io.action_joints])
        if prev is not None:
            prev.action = np.asarray(io.action_units.to_model(wire_action) if units == "model" else wire_action, np.float32)
            yield prev
        images = [resize_rgb(f.image, c.width, c.height) if f.image.shape[:2] != (c.height, c.width) else f.image
                  for c, f in zip(cams, [obs.frames[obs.camera_names.index(c.name)] for c in cams])]
        if units == "model":
            state = io.state_to_model(obs.joint_names, obs.joint_positions)
        else:
            state = np.array([obs.joint_positions[index[j]] for j in io.state_joints])
        prev = ExportFrame(t, images, np.asarray(state, np.float32), None, task,
                           min(s.stamp_ns for s in obs.joint_sources),
                           [obs.cameras[obs.camera_names.index(c.name)].stamp_ns for c in cams])
        prev_index = ev.index
    if prev is not None:
        counts["no_action"] += 1


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
    ages = {"camera_max_age": 0.2, "joint_max_age": 0.2}
    ages.update({k: v for k, v in tmap.sync.items() if k in ages})
    max_state_age = ages["joint_max_age"] if cfg.max_state_age is None else float(cfg.max_state_age)
    max_image_age = ages["camera_max_age"] if cfg.max_image_age is None else float(cfg.max_image_age)
    for name, v in (("max_state_age", max_state_age), ("max_image_age", max_image_age)):
        if not v > 0:
            raise ExportError(f"{name} must be > 0 seconds (got {v})")
    if cfg.episodes not in EPISODE_MODES:
        raise ExportError(f"episodes '{cfg.episodes}' must be one of {', '.join(EPISODE_MODES)}")
    keep = ("success", "failure") if cfg.include_failures else ("success",)
    # check every bag before writing anything
    readers, labelled = [], []
    for bag in cfg.bags:
        r = BagReader(bag)
        topics = r.topics()
        tmap.check_bag(topics)
        eps = None
        if cfg.episodes != "all" and cfg.episode_topic in topics:
            eps, problems = episodes_from_events(str(r.decode(m).data) for m in r.messages([cfg.episode_topic]))
            if problems:
                raise ExportError(f"bag '{bag}': {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        if cfg.episodes == "labelled" and not eps:
            raise ExportError(f"bag '{bag}': no episode events on '{cfg.episode_topic}' (record it with the episode manager, "
                              "or export with --episodes all)")
        if eps is None and not cfg.instruction and not (tmap.instruction and tmap.instruction in topics):
            raise ExportError(f"bag '{bag}': no task text: give --instruction or map the bag's instruction topic")
        readers.append(r)
        labelled.append(eps)
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    io = PolicyIO(emb)
    cams = export_cameras(emb, cfg.image_size)
    ds = LeRobotDataset.create(cfg.repo_id or f"local/{out.name}", fps=int(fps), features=features_for(emb, cams), root=out,
                               robot_type=emb.name, use_videos=True, streaming_encoding=True,
                               video_backend=VIDEO_BACKEND)
    step_ns = int(round(1e9 / fps))
    summary = {"output": str(out), "repo_id": ds.repo_id, "fps": int(fps), "frame_period_ns": step_ns, "units": cfg.units,
               "max_state_age_s": max_state_age, "max_image_age_s": max_image_age,
               "episodes": [], "bags": [], "broken_records": []}
    n_episodes = 0
    try:
        for bag, reader, eps in zip(cfg.bags, readers, labelled):
            stream = ObservationStream(reader, tmap, emb, fps, cfg.stamps)
            counts = dict.fromkeys(SKIP_REASONS, 0)
            bar = _bar(bag, cfg.progress)
            episode: dict | None = None
            bag_frames = bag_episodes = too_short = 0
            task = ""

            pending: list[dict] = []  # the run's first frames, written once the run is long enough

            def close_episode():
                nonlocal episode, n_episodes, bag_episodes, bag_frames, too_short
                if episode is not None and pending:  # a fragment (a gap split the episode): useless to train on,
                    too_short += len(pending)  # and LeRobot's stats break on a one-frame episode
                    bag_frames -= len(pending)
                    pending.clear()
                elif episode is not None and episode["frames"]:
                    ds.save_episode()
                    summary["episodes"].append(episode)
                    n_episodes += 1
                    bag_episodes += 1
                episode = None

            wanted = [e for e in eps or [] if e.outcome in keep and e.stop_ns is not None]
            frames = iter_frames(stream, io, cams, cfg.units, _EPISODE_TASK if eps is not None else cfg.instruction,
                                 int(max_state_age * 1e9), int(max_image_age * 1e9), counts)
            per_episode: dict[int, int] = {}  # labelled episode -> frames written
            if eps is not None:
                frames = _in_episodes(frames, wanted, step_ns, per_episode)
            for fr in frames:
                if fr is None:
                    close_episode()
                    continue
                if bar is not None:
                    bar.update(1)
                if episode is not None and fr.task != episode["task"]:
                    close_episode()  # one task per episode
                if episode is None:
                    episode = {"episode_index": n_episodes, "bag": str(bag), "first_frame_ns": fr.time_ns, "frames": 0,
                               "task": fr.task}
                frame = {f"observation.images.{c.name}": img for c, img in zip(cams, fr.images)}
                frame["observation.state"] = fr.state
                frame["action"] = fr.action
                frame["task"] = fr.task
                if pending or episode["frames"] < cfg.min_episode_frames:
                    pending.append(frame)
                    if len(pending) >= cfg.min_episode_frames:
                        for f in pending:
                            ds.add_frame(f)
                        pending.clear()
                else:
                    ds.add_frame(frame)
                episode["frames"] += 1
                bag_frames += 1
                task = fr.task
            close_episode()
            if bar is not None:
                bar.close()
            if eps is not None:  # every labelled episode, exported (frames > 0) or not and why
                summary.setdefault("labelled_episodes", []).extend(
                    {"bag": str(bag), "episode": e.index, "instruction": e.instruction, "outcome": e.outcome,
                     "start_ns": e.start_ns, "stop_ns": e.stop_ns, "marks": e.marks,
                     "frames": per_episode.get(e.index, 0), "exported": per_episode.get(e.index, 0) > 0} for e in eps)
            summary["bags"].append({"bag": str(bag), "frames": bag_frames, "episodes": bag_episodes, "task": task,
                                    "skipped_ticks": sum(v for k, v in counts.items() if k != "no_action"),
                                    "skipped": counts, "too_short_frames": too_short,
                                    "out_of_order_records": stream.out_of_order})
            summary["broken_records"] += [b.as_dict() for b in reader.broken]
    finally:
        ds.finalize()
    if not any(b["frames"] for b in summary["bags"]) and any(e is not None for e in labelled):
        raise ExportError("no frame could be exported: the bags' labelled episodes hold no "
                          + ("success or failure" if cfg.include_failures else "success (--include-failures keeps failures)")
                          + " with fresh frames: " + str([(e["episode"], e["outcome"]) for e in summary.get("labelled_episodes", [])]))
    if not any(b["frames"] for b in summary["bags"]):
        raise ExportError("no frame could be exported (every observation was incomplete, stale or without task text): "
                          + str(summary["bags"]))
    return summary


def _in_episodes(frames, episodes, step_ns: int, counts: dict[int, int]):
    """The frames inside ``episodes`` (start <= t, t + step <= stop: the action, executed one
    step later, is inside too), each with its episode's instruction as task; None between
    episodes and where the frames had a gap. ``counts``: frames per episode index."""
    episodes = sorted(episodes, key=lambda e: e.start_ns)
    inside = None
    for fr in frames:
        if fr is None:
            if inside is not None:
                yield None
            continue
        ep = next((e for e in episodes if e.start_ns <= fr.time_ns and fr.time_ns + step_ns <= e.stop_ns), None)
        if ep is not inside and inside is not None:
            yield None
        inside = ep
        if ep is None:
            continue
        fr.task = ep.instruction
        counts[ep.index] = counts.get(ep.index, 0) + 1
        yield fr


def _bar(bag, enabled):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(desc=f"exporting {Path(bag).name}", unit="frame", file=sys.stderr, mininterval=0.5)
