"""The main job: closed-loop competence in MuJoCo, then (``--mode graph``) the full graph's figures.

``--mode competence`` (default, ``make run``): the project's fine-tuned SO-101 policy
(``models/so101_touch_cube``, made by ``molmoact2-train-demo``; its recipe is in its
``recipe.json``) and the same architecture with random weights each run seeded held-out episodes
of the "touch the cube" task through the full graph (``molmoact2-sim-eval``: sim, cameras,
masking, policy, driver with its safety layer, episode supervisor, recorder); the two success
rates are printed side by side with their 95% intervals, time to success and safety counters.
The long evaluation (50 episodes, the blanked-image control) is ``molmoact2-sim-eval`` itself.

``--mode graph``: the full graph closed-loop in MuJoCo on the offline tiny checkpoint.

A MuJoCo arm (SO-101 by default; both arms of a bimanual YAM with --robot yam_bimanual, one
driver per arm) publishes /clock and offscreen-rendered cameras; camera
ingestion, masking, the policy (tiny MolmoAct2, or its Think variant), visualisation and the
driver run as separate processes exactly as on a robot (config/deployments/sim.yaml), brought up
by the lifecycle manager and armed automatically. After a fixed span of simulated time the run
is torn down and its bag is summarised: achieved rates, real-time factor, latency per stage,
change-mask refresh fraction, chunks executed, safety events, and PNGs a person can look at.
It fails loudly when the floors of config/main_job.yaml are not met.

    molmoact2-sim [--mode competence|graph] [--robot so101|so100|franka_droid|yam_bimanual] [--think] [--sim-seconds 20]
                  [--out artifacts/main_job]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from molmoact2_common.bringup.graph import load_deployment
from molmoact2_common.bringup.runner import run
from molmoact2_common.domain import claim_domain_unless_set
from molmoact2_common.embodiment import config_root, load_embodiment

from .core.tiny_checkpoint import cached_tiny_checkpoint


def _load_job_config(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f) or {}


class SimClockWatch:
    """Ends the run after ``sim_seconds`` of /clock once the graph is up; measures wall time too."""

    def __init__(self, sim_seconds: float, wall_timeout_s: float) -> None:
        self.sim_seconds = sim_seconds
        self.wall_timeout_s = wall_timeout_s
        self.first: tuple[float, float] | None = None  # (sim s, wall s)
        self.last: tuple[float, float] | None = None
        self.timed_out = False

    def __call__(self, node):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock

        wall_start = time.monotonic()

        def on_clock(msg: Clock) -> None:
            now = (msg.clock.sec + msg.clock.nanosec * 1e-9, time.monotonic())
            self.first = self.first or now
            self.last = now

        node.create_subscription(Clock, "/clock", on_clock, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))

        def done() -> bool:
            if time.monotonic() - wall_start > self.wall_timeout_s:
                self.timed_out = True
                return True
            return self.first is not None and self.last[0] - self.first[0] >= self.sim_seconds

        return done

    @property
    def real_time_factor(self) -> float:
        if not self.first or self.last[1] <= self.first[1]:
            return 0.0
        return (self.last[0] - self.first[0]) / (self.last[1] - self.first[1])

    @property
    def sim_elapsed(self) -> float:
        return self.last[0] - self.first[0] if self.first else 0.0


def run_competence(cfg: dict, out: Path, checkpoint_cache: Path, policy: Path | None) -> int:
    """Fine-tuned vs random weights on held-out seeded episodes; both through molmoact2-sim-eval."""
    from .core.tiny_checkpoint import cached_tiny_checkpoint
    from .sim_eval import main as sim_eval, report_text

    c = dict(cfg.get("competence") or {})
    policy = (policy or Path(str(c.get("policy", "models/so101_touch_cube")))).resolve()
    if not (policy / "config.json").is_file():
        print(f"[main job] FAILED: no fine-tuned policy at {policy} (make train-demo writes one; pass --policy)")
        return 1
    t0 = time.monotonic()
    baseline = cached_tiny_checkpoint(checkpoint_cache.resolve(), size=str(c.get("baseline_size", "small")))
    common = ["--robot", str(c.get("robot", "so101")), "--seed", str(c.get("seed", 100000)),
              "--episode-timeout-s", str(c.get("episode_timeout_s", 5.0)), "--real-time-factor", str(c.get("real_time_factor", 0.5))]
    if c.get("lockstep", True):
        common.append("--lockstep")
    reports = {}
    for label, ck, backend, episodes in (("fine-tuned", policy, "lerobot", c.get("episodes", 3)),
                                         ("random weights", baseline, "lerobot", c.get("baseline_episodes", 2))):
        print(f"[main job] {label}: {episodes} held-out episodes of touch_cube ({ck})", flush=True)
        code = sim_eval(["--checkpoint", str(ck), "--backend", backend, "--episodes", str(episodes), "--label", label,
                         "--out", str(out / label.replace(" ", "_")), *common])
        path = out / label.replace(" ", "_") / "report.json"
        if not path.is_file():
            print(f"[main job] FAILED: the {label} evaluation did not run (exit {code})")
            return 1
        reports[label] = json.loads(path.read_text())
    wall = time.monotonic() - t0
    print("\n[main job] closed-loop competence, SO-101 'touch the cube', held-out seeds:")
    for label, r in reports.items():
        print(report_text(r, f"  {label:>14}"))
    summary = {"mode": "competence", "wall_seconds_total": round(wall, 1),
               "reports": {k: {f: v[f] for f in ("episodes", "successes", "success_rate", "success_rate_95ci", "time_to_success_s",
                                                  "chunks_refused", "steps_dropped_late", "safety_events", "checkpoint", "seeds")}
                           for k, v in reports.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"[main job] OK in {wall:.0f} s: reports, bags and picture strips in {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", default=None, choices=("competence", "graph"),
                        help="competence: fine-tuned vs random on the sim task (default); graph: the full graph's figures")
    parser.add_argument("--policy", type=Path, default=None, help="competence: the fine-tuned policy (default models/so101_touch_cube)")
    parser.add_argument("--config", type=Path, default=None, help="job config (default config/main_job.yaml)")
    parser.add_argument("--robot", default=None, help="so101 | so100 | franka_droid | yam_bimanual (default from the config)")
    parser.add_argument("--think", action="store_true", default=None, help="use the tiny Think checkpoint")
    parser.add_argument("--sim-seconds", type=float, default=None, help="simulated time to run")
    parser.add_argument("--out", type=Path, default=Path("artifacts/main_job"), help="output directory (replaced)")
    parser.add_argument("--checkpoint-cache", type=Path, default=Path("checkpoints"), help="where the tiny checkpoint is built once")
    args = parser.parse_args(argv)

    cfg = _load_job_config(args.config or config_root() / "main_job.yaml")
    mode = args.mode or cfg.get("mode", "competence")
    if mode == "competence":
        out = args.out.resolve()
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        domain_lock = claim_domain_unless_set()  # noqa: F841  (held for the run)
        return run_competence(cfg, out, args.checkpoint_cache, args.policy)
    robot = args.robot or cfg.get("robot", "so101")
    think = bool(args.think if args.think is not None else cfg.get("think", False))
    sim_seconds = float(args.sim_seconds or cfg.get("sim_seconds", 20.0))
    floors = dict(cfg.get("floors") or {})
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    domain_lock = claim_domain_unless_set()
    print(f"[main job] ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} (set it to watch the run from RViz)")

    t0 = time.monotonic()
    checkpoint = cached_tiny_checkpoint(args.checkpoint_cache.resolve(), think=think)
    print(f"[main job] tiny {'Think ' if think else ''}checkpoint: {checkpoint} ({time.monotonic() - t0:.1f} s)")
    bag = out / "bag"
    graph = load_deployment("sim", {
        "robot": robot, "think": str(think).lower(), "checkpoint": str(checkpoint), "record": "true",
        "bag_path": str(bag), "instruction": str(cfg.get("instruction", "pick up the cube")),
        "seed": str(cfg.get("seed", 0)),
    })
    watch = SimClockWatch(sim_seconds, float(cfg.get("wall_timeout_s", 100.0)))
    code = run(graph, duration=None, log_dir=out / "logs", watch=watch)
    wall_total = time.monotonic() - t0
    if code != 0:
        print(f"[main job] FAILED: the graph did not run (logs in {out / 'logs'})")
        return code
    if watch.timed_out:
        print(f"[main job] FAILED: only {watch.sim_elapsed:.1f} of {sim_seconds:.1f} simulated seconds in "
              f"{watch.wall_timeout_s:.0f} s of wall time")
        return 1

    from .sim_summary import summarise_run

    emb = load_embodiment(robot)
    summary = summarise_run(bag, emb, out, real_time_factor=watch.real_time_factor, sim_seconds=watch.sim_elapsed)
    summary["wall_seconds_total"] = round(wall_total, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(summary["text"])

    failures = []
    checks = [("policy_rate_hz", summary["policy_rate_hz"]), ("real_time_factor", summary["real_time_factor"]),
              ("control_rate_hz", summary["control_rate_hz"])]
    for key, value in checks:
        if key in floors and not value >= float(floors[key]):
            failures.append(f"{key} {value:.2f} < floor {float(floors[key]):.2f}")
    if not summary["joints_moved"]:
        still = [a for a, moved in summary["arms_moved"].items() if not moved] or [a.name for a in emb.arms]
        failures.append(f"the arm did not move ({', '.join(still)})" if len(emb.arms) == 1 else
                        f"arms did not move: {', '.join(still)}")
    if summary["limit_violations"]:
        failures.append(f"joint limits exceeded: {summary['limit_violations']}")
    if failures:
        print("[main job] FAILED: " + "; ".join(failures) + f" (config: {args.config or config_root() / 'main_job.yaml'})")
        return 1
    print(f"[main job] OK in {wall_total:.0f} s: summary.json, PNGs and the bag are in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
