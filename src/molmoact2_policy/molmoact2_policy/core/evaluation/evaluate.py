"""Replay evaluation: a bag -> observations at the policy rate (the live synchroniser's rules)
-> any backend, open-loop -> each chunk compared with what the robot did next.

Deterministic for a seed: observation k is predicted with noise seed ``seed + k`` and
everything else is a pure function of the bag (latencies are measured, so they vary).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from molmoact2_common.embodiment import Embodiment, load_embodiment

from ..backends.base import BackendError, PolicyBackend, PolicyRequest, make_backend
from ..change_mask import compute_change_mask
from ..policy_io import PolicyIO
from .bagio import BagReader
from .metrics import OpenLoopMetrics
from .stream import ChunkSeen, InstructionSeen, JointUpdate, ObservationStream, Tick
from .topic_map import TopicMapError, load_topic_map

NS = 1_000_000_000
MAX_BROKEN_LISTED = 200


class EvaluationError(RuntimeError):
    """An evaluation that cannot run (no instruction, bag unusable...); the message says why."""


@dataclass
class EvalConfig:
    bag: str
    embodiment: str
    topic_map: str | None = None
    backend: str = "hf"
    backend_options: dict[str, Any] = field(default_factory=dict)
    instruction: str | None = None
    seed: int = 0
    rate_hz: float | None = None
    every: int = 1  # predict at every n-th observation tick
    max_observations: int | None = None
    stamps: str = "header"
    progress: bool = True


def evaluate(cfg: EvalConfig, backend: PolicyBackend | None = None) -> tuple[dict, OpenLoopMetrics | None]:
    emb: Embodiment = load_embodiment(cfg.embodiment)
    tmap = load_topic_map(cfg.topic_map, emb)
    reader = BagReader(cfg.bag)
    topics = reader.topics()
    tmap.check_bag(topics)
    has_instruction_topic = bool(tmap.instruction) and tmap.instruction in topics
    if not cfg.instruction and not has_instruction_topic:
        raise EvaluationError(
            "no instruction: give one (--instruction) or map the bag's instruction topic (std_msgs/String) in the topic map"
        )
    io = PolicyIO(emb)
    own_backend = backend is None
    if backend is None:
        backend = make_backend(cfg.backend, **cfg.backend_options)
    try:
        info = backend.info()
        tag = io.check_backend(info)
        backend.reset()
        try:
            import torch

            torch.manual_seed(int(cfg.seed))
        except ImportError:  # the remote backend needs no torch
            pass
        total = sum(topics[t].count for t in tmap.required_topics() if topics[t].count > 0) or None
        bar = _progress(total, cfg.progress)
        stream = ObservationStream(reader, tmap, emb, cfg.rate_hz, cfg.stamps, progress=bar)
        metrics: OpenLoopMetrics | None = None
        pending_joints: list[JointUpdate] = []
        counts = {"ticks": 0, "evaluated": 0, "skipped_incomplete": 0, "skipped_stale": 0,
                  "skipped_no_instruction": 0, "backend_errors": 0}
        stale_reasons: dict[str, int] = {}
        chunk_models: dict[str, int] = {}
        instruction = cfg.instruction or ""
        prev_first: np.ndarray | None = None
        t_start = time.perf_counter()
        predict_s = 0.0
        for ev in stream:
            if isinstance(ev, JointUpdate):
                if metrics is None:
                    pending_joints.append(ev)
                    if len(pending_joints) > 4096:
                        pending_joints.pop(0)
                else:
                    metrics.add_joints(ev.time_ns, ev.names, ev.positions)
                continue
            if isinstance(ev, ChunkSeen):
                chunk_models[ev.model_id] = chunk_models.get(ev.model_id, 0) + 1
                continue
            if isinstance(ev, InstructionSeen):
                if not cfg.instruction:
                    instruction = ev.text
                continue
            assert isinstance(ev, Tick)
            counts["ticks"] += 1
            if ev.index % max(1, cfg.every):
                continue
            if cfg.max_observations is not None and counts["evaluated"] >= cfg.max_observations:
                continue
            obs = ev.obs
            if not obs.complete:
                counts["skipped_incomplete"] += 1
                continue
            if obs.stale:
                counts["skipped_stale"] += 1
                for k in obs.stale_reasons():
                    stale_reasons[k] = stale_reasons.get(k, 0) + 1
                continue
            if not instruction:
                counts["skipped_no_instruction"] += 1
                continue
            images, state = io.assemble(obs.camera_names, [f.image for f in obs.frames], obs.joint_names, obs.joint_positions)
            req = PolicyRequest(images=images, state=state, instruction=instruction, norm_tag=io.norm_tag,
                                camera_names=list(io.camera_order), seed=int(cfg.seed) + ev.index)
            t0 = time.perf_counter()
            try:
                res = backend.predict(req)
                res.check_finite()
            except BackendError as exc:
                counts["backend_errors"] += 1
                reader.broken.append(_note(f"observation {ev.index}", f"backend error: {exc}"))
                continue
            latency = time.perf_counter() - t0
            predict_s += latency
            chunk = io.actions_to_wire(res.actions)
            if metrics is None:
                metrics = OpenLoopMetrics(io.action_joints, [g for g in emb.grippers if g in io.action_joints],
                                          io.dt, chunk.shape[0])
                for j in pending_joints:
                    metrics.add_joints(j.time_ns, j.names, j.positions)
                pending_joints = []
            metrics.add_prediction(ev.index, ev.time_ns, chunk, latency)
            if res.depth_refreshed is not None:
                first = images[0]
                changed = 1.0 if prev_first is None or prev_first.shape != first.shape else float(
                    compute_change_mask(first, prev_first, res.depth_rows, res.depth_cols)[1].mean())
                metrics.add_think(ev.time_ns, float(np.mean(res.depth_refreshed)), changed)
                prev_first = first
            counts["evaluated"] += 1
            if bar is not None:
                bar.set_postfix(obs=counts["evaluated"], refresh=False)
        if bar is not None:
            bar.close()
        if metrics is not None:
            metrics.finish()
        wall = time.perf_counter() - t_start
    finally:
        if own_backend:
            backend.close()

    circular = info.model_id in chunk_models or (
        "checkpoint" in info.extra and Path(str(info.extra["checkpoint"])).name in chunk_models)
    results = {
        "bag": str(cfg.bag),
        "embodiment": emb.name,
        "topic_map": tmap.source,
        "backend": {"kind": info.kind, "model_id": info.model_id, "mode": info.mode, "norm_tag": tag.name},
        "seed": int(cfg.seed),
        "instruction": instruction,
        "rate_hz": stream.rate_hz,
        "observations": counts,
        "stale_reasons": stale_reasons,
        "circular": {
            "circular": bool(circular),
            "bag_action_chunk_models": chunk_models,
            "explanation": (
                f"The bag holds ActionChunks from model '{info.model_id}', the model being evaluated: the arm was "
                "driven by this same policy, so the 'ground truth' is its own output and the comparison is circular."
                if circular else
                ("The bag holds ActionChunks of other models: ground truth is what that controller made the arm do."
                 if chunk_models else "No ActionChunks in the bag: ground truth is a demonstrator or another controller.")
            ),
        },
        "broken_records": {
            "count": len(reader.broken),
            "listed": [b.as_dict() for b in reader.broken[:MAX_BROKEN_LISTED]],
        },
        "metrics": metrics.summary() if metrics is not None else None,
        "throughput": {
            "wall_s": wall,
            "observations_per_s": counts["evaluated"] / wall if wall > 0 else None,
            "predict_s": predict_s,
        },
    }
    if counts["evaluated"] == 0:
        results["warning"] = "no observation could be evaluated: see 'observations' and 'stale_reasons'"
    return results, metrics


def _note(position: str, reason: str):
    from .bagio import BrokenRecord

    return BrokenRecord("evaluation", position, reason)


def _progress(total, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="msg", desc="evaluating", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


__all__ = ["EvalConfig", "EvaluationError", "TopicMapError", "evaluate"]
