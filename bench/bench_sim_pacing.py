"""Simulation pacing: are chunks late at the embodiment's real camera rate? Policy closed loop.

  python bench/bench_sim_pacing.py [--robot so101] [--sim-seconds 8] [--camera-rate-hz 30]
                                   [--configs rtf=1.0 rtf=0.2 lockstep=0.1 ...]

Each configuration runs config/deployments/sim.yaml with the tiny checkpoint (the policy, not the
expert) for ``--sim-seconds`` of /clock at ``--camera-rate-hz`` rendered frames per simulated
second, records it, and reports from the bag the driver's chunks received / refused and steps
dropped late, the policy's chunks per simulated second, and the wall-clock cost per simulated
second. ``rtf=X``: real_time_factor X, free running; ``lockstep=L``: lockstep with a simulated
inference latency of L seconds (real_time_factor 1: the simulation runs as fast as rendering and
the policy let it).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from molmoact2_common.bringup.graph import load_deployment
from molmoact2_common.bringup.runner import run
from molmoact2_common.domain import claim_ros_domain_id


def one(robot: str, config: str, sim_seconds: float, camera_rate_hz: float, checkpoint: Path, root: Path) -> dict:
    from rclpy.serialization import deserialize_message

    from molmoact2_msgs.msg import DriverStatus
    from molmoact2_policy.core.evaluation.bagio import BagReader
    from molmoact2_policy.main_job import SimClockWatch

    kind, value = config.split("=", 1)
    args = {"robot": robot, "checkpoint": str(checkpoint), "record": "true", "camera_rate_hz": str(camera_rate_hz),
            "real_time_factor": value if kind == "rtf" else "1.0"}
    if kind == "lockstep":
        args.update(lockstep="true", lockstep_latency_s=value)
    out = root / config.replace("=", "_")
    args["bag_path"] = str(out / "bag")
    graph = load_deployment("sim", args)
    watch = SimClockWatch(sim_seconds, wall_timeout_s=60 + 30 * sim_seconds)
    t0 = time.monotonic()
    code = run(graph, duration=None, log_dir=out / "logs", watch=watch, echo=lambda s: None)
    wall = time.monotonic() - t0
    last = {}
    chunks = 0
    for rec in BagReader(out / "bag").messages():
        if rec.topic.endswith("driver_status"):
            last[rec.topic] = deserialize_message(rec.data, DriverStatus)
        elif rec.topic.endswith("/action_chunk"):
            chunks += 1
    res = {"config": config, "rc": code, "sim_s": round(watch.sim_elapsed, 2), "achieved_rtf": round(watch.real_time_factor, 3),
           "wall_per_sim_s": round(1 / watch.real_time_factor, 2) if watch.real_time_factor else None,
           "policy_chunks_per_sim_s": round(chunks / watch.sim_elapsed, 2) if watch.sim_elapsed else 0, "wall_total_s": round(wall, 1)}
    for topic, m in last.items():
        res[topic] = {"received": m.chunks_received, "refused": m.chunks_refused, "steps_dropped_late": m.steps_dropped_late}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--robot", default="so101")
    ap.add_argument("--sim-seconds", type=float, default=8.0)
    ap.add_argument("--camera-rate-hz", type=float, default=30.0)
    ap.add_argument("--configs", nargs="*", default=["rtf=1.0", "rtf=0.2", "lockstep=0.1"])
    ap.add_argument("--checkpoint-cache", type=Path, default=Path("checkpoints"))
    a = ap.parse_args()
    from molmoact2_policy.core.tiny_checkpoint import cached_tiny_checkpoint

    if "ROS_DOMAIN_ID" not in os.environ:
        domain, _lock = claim_ros_domain_id()
        os.environ["ROS_DOMAIN_ID"] = str(domain)
    ckpt = cached_tiny_checkpoint(a.checkpoint_cache.resolve())
    root = Path(tempfile.mkdtemp(prefix="bench-sim-pacing-"))
    print(f"{a.robot}: cameras at {a.camera_rate_hz} Hz simulated, {a.sim_seconds} simulated s per run, os.cpu_count()={os.cpu_count()}")
    for c in a.configs:
        print(one(a.robot, c, a.sim_seconds, a.camera_rate_hz, ckpt, root), flush=True)


if __name__ == "__main__":
    main()
