"""Closed-loop evaluation in simulation: M seeded episodes of a checkpoint through the full graph.

The sim deployment in evaluation mode (config/deployments/sim.yaml, ``eval:=true``): the MuJoCo
sim with the task (seeded scene, success from the simulator's state), camera ingestion, masking,
the policy (``--backend lerobot`` for a LeRobot fine-tune such as ``molmoact2-train-demo``'s, or
``hf`` for a checkpoint in the released layout), the real driver with its safety layer, the
episode supervisor (each episode ended on success or after ``--episode-timeout-s``, marked in the
bag, the sim reset for the next) and the recorder. Episode k uses scene seed ``--seed + k``: keep
evaluation seeds away from the demonstrations' (``molmoact2-train-demo`` uses 0..N-1; the default
here starts at 100000).

Everything reported is read back from the bag, not from the nodes' word: per-episode outcome,
seed and time to success (the episode events and the task state), the success rate with its 95%
Wilson interval, the drivers' safety counters, chunks refused or dropped as late, and a picture
strip (front camera) of one success and one failure. ``report.json``, ``report.md`` and PNGs land
in ``--out``.

    molmoact2-sim-eval --checkpoint DIR [--backend lerobot|hf] [--robot so101] [--episodes 50] [--seed 100000]
                       [--blank-images] [--out artifacts/sim_eval]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from .demos import DEFAULT_TASK, TASK_STATE, EpisodesWatch

COUNTERS = ("chunks_received", "chunks_refused", "steps_dropped_late", "clamps_position", "clamps_velocity",
            "clamps_envelope", "clamps_relative", "refusals_nonfinite", "refusals_workspace", "refusals_peer_stale",
            "tracking_faults", "watchdog_holds", "heartbeat_losses")
SAFETY_EVENTS = ("refusals_nonfinite", "refusals_workspace", "refusals_peer_stale", "tracking_faults", "watchdog_holds",
                 "heartbeat_losses")


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sound at 0 % and 100 %, unlike the normal one)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def read_eval_bag(bag: Path, camera_topic: str) -> dict:
    """Episodes (events + task state), the drivers' last counters and the camera frames' times, from the bag."""
    from molmoact2_msgs.msg import DriverStatus
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import String

    from .core.episodes import EVENT_TOPIC, episodes_from_events
    from .core.evaluation.bagio import BagReader

    reader = BagReader(bag)
    topics = reader.topics()
    events: list[str] = []
    states: list[tuple[int, dict]] = []
    drivers: dict[str, dict] = {}
    for rec in reader.messages([EVENT_TOPIC, TASK_STATE] + [t for t in topics if t.endswith("driver_status")]):
        if rec.topic == EVENT_TOPIC:
            events.append(deserialize_message(rec.data, String).data)
        elif rec.topic == TASK_STATE:
            st = json.loads(deserialize_message(rec.data, String).data)
            if st.get("phase", "running") == "running":  # a reset's state (the next scene, published the
                states.append((rec.timestamp_ns, st))     # instant the episode closes) is in no episode
        else:
            m = deserialize_message(rec.data, DriverStatus)
            drivers[rec.topic] = {k: int(getattr(m, k)) for k in COUNTERS}
    labelled, problems = episodes_from_events(events)
    episodes = []
    for ep in labelled:
        inside = [s for t, s in states if ep.start_ns <= t <= (ep.stop_ns or t)]
        seeds = {s["seed"] for s in inside}
        success_at = next((t for t, s in states if ep.start_ns <= t <= (ep.stop_ns or t) and s.get("success")), None)
        episodes.append({
            "episode": ep.index, "outcome": ep.outcome, "success": ep.outcome == "success",
            "seed": seeds.pop() if len(seeds) == 1 else sorted(seeds),
            "time_to_success_s": None if success_at is None else round((success_at - ep.start_ns) / 1e9, 3),
            "duration_s": None if ep.stop_ns is None else round((ep.stop_ns - ep.start_ns) / 1e9, 3),
            "min_distance_m": round(min((min(s["distances"].values()) for s in inside), default=float("nan")), 4),
            "marks": ep.marks, "start_ns": ep.start_ns, "stop_ns": ep.stop_ns,
        })
    return {"topics": sorted(topics), "episodes": episodes, "problems": problems, "drivers": drivers,
            "has_camera": camera_topic in topics}


def picture_strip(bag: Path, camera_topic: str, episode: dict, path: Path, frames: int = 6) -> str | None:
    """``frames`` camera images spread over one episode, side by side, as a PNG."""
    from PIL import Image as PILImage
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from .core.evaluation.bagio import BagReader
    from .ros_conversions import image_msg_to_rgb

    start, stop = episode["start_ns"], episode["stop_ns"]
    if stop is None:
        return None
    wanted = [start + (stop - start) * i / (frames - 1) for i in range(frames)]
    picked: list[np.ndarray | None] = [None] * frames
    for rec in BagReader(bag).messages([camera_topic]):
        if rec.timestamp_ns < start or rec.timestamp_ns > stop:
            continue
        for i, w in enumerate(wanted):
            if picked[i] is None and rec.timestamp_ns >= w:
                picked[i] = image_msg_to_rgb(deserialize_message(rec.data, Image))
    shots = [p for p in picked if p is not None]
    if not shots:
        return None
    h = max(s.shape[0] for s in shots)
    strip = np.zeros((h, sum(s.shape[1] for s in shots) + 4 * (len(shots) - 1), 3), np.uint8)
    x = 0
    for s in shots:
        strip[:s.shape[0], x:x + s.shape[1]] = s
        x += s.shape[1] + 4
    img = PILImage.fromarray(strip)
    img = img.resize((img.width * 2, img.height * 2), PILImage.NEAREST)
    img.save(path)
    return path.name


def summarise(read: dict, requested: int) -> dict:
    eps = read["episodes"]
    n = len(eps)
    k = sum(e["success"] for e in eps)
    lo, hi = wilson_interval(k, n)
    tts = [e["time_to_success_s"] for e in eps if e["success"] and e["time_to_success_s"] is not None]
    counters = {c: sum(d[c] for d in read["drivers"].values()) for c in COUNTERS}
    return {
        "episodes": n, "requested": requested, "successes": k, "success_rate": k / n if n else 0.0,
        "success_rate_95ci": [round(lo, 4), round(hi, 4)],
        "time_to_success_s": {"median": float(np.median(tts)) if tts else None, "max": max(tts) if tts else None},
        "driver_counters": counters, "chunks_refused": counters["chunks_refused"],
        "steps_dropped_late": counters["steps_dropped_late"],
        "safety_events": {c: counters[c] for c in SAFETY_EVENTS},
        "per_episode": [{k2: e[k2] for k2 in ("episode", "seed", "outcome", "time_to_success_s", "duration_s", "min_distance_m", "marks")}
                        for e in eps],
    }


def report_text(s: dict, label: str) -> str:
    lo, hi = s["success_rate_95ci"]
    tts = s["time_to_success_s"]["median"]
    lines = [f"{label}: {s['successes']}/{s['episodes']} episodes succeeded = {100 * s['success_rate']:.0f}% "
             f"(95% CI {100 * lo:.0f}-{100 * hi:.0f}%)"
             + (f", median time to success {tts:.2f} s" if tts is not None else ""),
             f"  chunks refused {s['chunks_refused']}, steps dropped late {s['steps_dropped_late']}, safety events "
             + ", ".join(f"{k} {v}" for k, v in s["safety_events"].items())]
    return "\n".join(lines)


def write_markdown(s: dict, label: str, out: Path) -> None:
    rows = "\n".join(f"| {e['episode']} | {e['seed']} | {e['outcome']} | {e['time_to_success_s'] if e['time_to_success_s'] is not None else ''} "
                     f"| {e['min_distance_m']} | {'; '.join(e['marks'])} |" for e in s["per_episode"])
    strips = "\n".join(f"![{k}]({v})" for k, v in s.get("strips", {}).items() if v)
    (out / "report.md").write_text(
        f"# Closed-loop evaluation: {label}\n\n```\n{report_text(s, label)}\n```\n\n"
        f"| episode | seed | outcome | time to success, s | closest approach, m | marks |\n|---|---|---|---|---|---|\n{rows}\n\n"
        f"Driver counters (summed over drivers): {json.dumps(s['driver_counters'])}\n\n{strips}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="local checkpoint directory (nothing is downloaded)")
    parser.add_argument("--backend", default="lerobot", choices=("lerobot", "hf"), help="lerobot: a LeRobot fine-tune; hf: released layout")
    parser.add_argument("--robot", default="so101", choices=sorted(DEFAULT_TASK))
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=100000, help="episode k uses scene seed + k")
    parser.add_argument("--episode-timeout-s", type=float, default=8.0, help="simulated seconds before an episode fails")
    parser.add_argument("--blank-images", action="store_true", help="control: the cameras publish black frames")
    parser.add_argument("--camera-rate-hz", type=float, default=30.0, help="simulated camera rate (the real one: 30)")
    parser.add_argument("--camera-width", type=int, default=160)
    parser.add_argument("--camera-height", type=int, default=120)
    parser.add_argument("--real-time-factor", type=float, default=0.5)
    parser.add_argument("--start-jitter-rad", type=float, default=0.0,
                        help="each episode starts with every arm joint at home + a seeded draw in +-this (as the demonstrations may)")
    parser.add_argument("--lockstep", action="store_true", help="the sim waits for each chunk (inference latency removed)")
    parser.add_argument("--policy-seed", type=int, default=0, help="flow-matching noise seed")
    parser.add_argument("--label", default="", help="name in the report (default: the checkpoint's directory name)")
    parser.add_argument("--wall-timeout-s", type=float, default=0.0, help="give up after this long (0 = 60 s per episode + 90)")
    parser.add_argument("--out", type=Path, default=Path("artifacts/sim_eval"), help="output directory (replaced)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    ck = args.checkpoint.resolve()
    if not ck.is_dir():
        parser.error(f"--checkpoint {ck}: no such directory")
    from molmoact2_common.bringup.graph import load_deployment
    from molmoact2_common.bringup.runner import run
    from molmoact2_common.domain import claim_domain_unless_set

    task = DEFAULT_TASK[args.robot]
    label = args.label or ck.name
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    domain_lock = claim_domain_unless_set()
    print(f"[sim-eval] ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}; {args.episodes} episodes of {task} on {args.robot}, "
          f"seeds {args.seed}..{args.seed + args.episodes - 1}, {args.backend}:{ck}" + (" (images blanked)" if args.blank_images else ""))
    from molmoact2_drivers.core.sim.tasks import TASKS

    bag = out / "bag"
    t0 = time.monotonic()
    graph = load_deployment("sim", {
        "robot": args.robot, "eval": "true", "task": task, "task_seed": str(args.seed), "episodes": str(args.episodes),
        "episode_timeout_s": str(args.episode_timeout_s), "checkpoint": str(ck), "backend": args.backend,
        "instruction": TASKS[task].instruction, "seed": str(args.policy_seed), "record": "true", "bag_path": str(bag),
        "camera_rate_hz": str(args.camera_rate_hz), "camera_width": str(args.camera_width),
        "camera_height": str(args.camera_height), "real_time_factor": str(args.real_time_factor),
        "lockstep": str(args.lockstep).lower(), "blank_cameras": str(args.blank_images).lower(),
        "start_jitter_rad": str(args.start_jitter_rad),
    })
    watch = EpisodesWatch(args.wall_timeout_s or 60.0 * args.episodes + 90.0)
    code = run(graph, duration=None, log_dir=out / "logs", watch=watch)
    del domain_lock
    wall = time.monotonic() - t0
    if code != 0:
        print(f"[sim-eval] FAILED: the graph did not run (logs in {out / 'logs'})")
        return code
    camera = "/cameras/front/image_raw" if args.robot != "yam_bimanual" else "/cameras/top/image_raw"
    read = read_eval_bag(bag, camera)
    s = summarise(read, args.episodes)
    s.update({"label": label, "checkpoint": str(ck), "backend": args.backend, "robot": args.robot, "task": task,
              "seeds": [args.seed, args.seed + args.episodes - 1], "blank_images": args.blank_images,
              "camera_rate_hz": args.camera_rate_hz, "lockstep": args.lockstep, "start_jitter_rad": args.start_jitter_rad, "wall_s": round(wall, 1),
              "wall_per_sim_second": round(watch.wall_per_sim_second, 3), "timed_out": watch.timed_out,
              "supervisor_said": watch.status.get("successes"), "bag_problems": read["problems"]})
    strips = {}
    for outcome in ("success", "failure"):
        ep = next((e for e in read["episodes"] if e["outcome"] == outcome), None)
        if ep is not None and read["has_camera"]:
            strips[f"{outcome} (episode {ep['episode']}, seed {ep['seed']})"] = picture_strip(bag, camera, ep, out / f"strip_{outcome}.png")
    s["strips"] = strips
    (out / "report.json").write_text(json.dumps(s, indent=2))
    write_markdown(s, label, out)
    print(report_text(s, label))
    print(f"[sim-eval] report {out / 'report.md'} ({wall:.0f} s wall, {watch.wall_per_sim_second:.2f} wall s per simulated s)")
    if watch.timed_out:
        print(f"[sim-eval] FAILED: {s['episodes']} of {args.episodes} episodes finished before the wall timeout")
        return 1
    if s["episodes"] != args.episodes:
        print(f"[sim-eval] FAILED: the bag holds {s['episodes']} finished episodes, {args.episodes} were run")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
