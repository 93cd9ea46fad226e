"""Replay-evaluation benchmark: throughput (observations per second) with the tiny offline
checkpoint, and how time and memory scale with bag length (a bag larger than RAM must stream:
linear time, constant memory). Each measurement runs in its own process so that its peak RSS
is its own.

    python bench/bench_evaluation.py [--seconds 5 10 20] [--stream-seconds 30 60 120] [--flow-steps 10]

Two parts:
1. evaluation: synthetic SO-101 bags (2 cameras 320x240 rgb8 at 30 Hz, joints at 100 Hz) of
   growing length through the hf backend (tiny checkpoint, 2 CPU threads), every observation;
2. streaming alone (bag -> synchronised observations, no model) on longer bags: messages/s
   and peak RSS, to show the reader and synchroniser hold constant memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SO101_JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def make_bag(path: Path, seconds: float, width: int, height: int) -> float:
    from molmoact2_policy.core.evaluation import synthetic

    spec = synthetic.SyntheticSpec(cameras={"front": "/cameras/front/image_raw", "wrist": "/cameras/wrist/image_raw"},
                                   joint_topic="/joint_states", joint_names=SO101_JOINTS, seconds=seconds, camera_hz=30,
                                   joint_hz=100, width=width, height=height, instruction_topic="/instruction")
    t0 = time.perf_counter()
    synthetic.write_synthetic_bag(path, spec)
    return time.perf_counter() - t0


def one_eval(bag: str, flow_steps: int) -> dict:
    import torch

    torch.set_num_threads(2)
    from molmoact2_policy.core.evaluation.evaluate import EvalConfig, evaluate
    from molmoact2_policy.core.tiny_checkpoint import cached_tiny_checkpoint

    ckpt = cached_tiny_checkpoint(ROOT / "build" / "test-checkpoints", think=False)
    cfg = EvalConfig(bag, "so101", backend="hf", backend_options={"checkpoint": str(ckpt), "num_steps": flow_steps, "num_threads": 2},
                     progress=False)
    t0 = time.perf_counter()
    results, _ = evaluate(cfg)
    wall = time.perf_counter() - t0
    lat = results["metrics"]["latency_s"]
    return {"observations": results["observations"]["evaluated"], "wall_s": wall,
            "obs_per_s": results["observations"]["evaluated"] / wall,
            "predict_p50_ms": lat["p50"] * 1e3, "predict_p99_ms": lat["p99"] * 1e3,
            "non_model_s": wall - results["throughput"]["predict_s"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def one_stream(bag: str) -> dict:
    from molmoact2_common.embodiment import load_embodiment
    from molmoact2_policy.core.evaluation.bagio import BagReader
    from molmoact2_policy.core.evaluation.stream import ObservationStream, Tick
    from molmoact2_policy.core.evaluation.topic_map import load_topic_map

    emb = load_embodiment("so101")
    reader = BagReader(bag)
    n_msgs = sum(t.count for t in reader.topics().values())
    t0 = time.perf_counter()
    ticks = sum(1 for e in ObservationStream(reader, load_topic_map(None, emb), emb) if isinstance(e, Tick))
    wall = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in Path(bag).glob("*.mcap"))
    return {"messages": n_msgs, "ticks": ticks, "wall_s": wall, "msgs_per_s": n_msgs / wall, "obs_per_s": ticks / wall,
            "bag_mb": size / 2**20, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child(kind: str, bag: str, flow_steps: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, bag, "--flow-steps", str(flow_steps)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, nargs="+", default=[5, 10, 20])
    ap.add_argument("--stream-seconds", type=float, nargs="+", default=[30, 60, 120])
    ap.add_argument("--flow-steps", type=int, default=10)
    ap.add_argument("--child", nargs=2, metavar=("KIND", "BAG"))
    ns = ap.parse_args()
    if ns.child:
        kind, bag = ns.child
        print(json.dumps(one_eval(bag, ns.flow_steps) if kind == "eval" else one_stream(bag)))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        print(f"# evaluation, tiny checkpoint, {ns.flow_steps} flow steps, 2 threads, SO-101 bag 2x320x240 @30 Hz")
        print("| bag s | observations | wall s | obs/s | predict p50 / p99 ms | non-model s | peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
        for s in ns.seconds:
            bag = Path(tmp) / f"eval_{int(s)}"
            make_bag(bag, s, 320, 240)
            r = child("eval", str(bag), ns.flow_steps)
            print(f"| {s:g} | {r['observations']} | {r['wall_s']:.1f} | {r['obs_per_s']:.2f} | "
                  f"{r['predict_p50_ms']:.1f} / {r['predict_p99_ms']:.1f} | {r['non_model_s']:.2f} | {r['peak_rss_mb']:.0f} |", flush=True)
        print()
        print("# streaming only (bag -> synchronised observations), 2x320x240 rgb8 @30 Hz")
        print("| bag s | bag MB | messages | wall s | msgs/s | obs/s | peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
        for s in ns.stream_seconds:
            bag = Path(tmp) / f"stream_{int(s)}"
            make_bag(bag, s, 320, 240)
            r = child("stream", str(bag), ns.flow_steps)
            print(f"| {s:g} | {r['bag_mb']:.0f} | {r['messages']} | {r['wall_s']:.1f} | {r['msgs_per_s']:.0f} | "
                  f"{r['obs_per_s']:.0f} | {r['peak_rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
