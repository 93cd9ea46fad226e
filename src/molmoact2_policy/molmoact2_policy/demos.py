"""Demonstrations through the real graph: N seeded episodes of a simulated task, one bag.

The sim deployment in demos mode (config/deployments/sim.yaml, ``demos:=true``): the MuJoCo sim
with a task (seeded scene, success detection, ``~/reset_episode``), camera ingestion, the real
driver(s), the scripted expert in place of the policy (inverse kinematics to the task's goal,
min-jerk, ActionChunks to the drivers' ``action_chunk`` at the control rate), the episode
supervisor (each episode judged from the task state, marked in the bag on ``/episode/event``,
reset back to back) and the recorder. Episode k uses seed ``--seed + k``. The run ends when the
supervisor has closed ``--episodes``; the bag then holds cameras, joint states, the instruction,
``/sim/robot/task/success``, ``/sim/robot/task/state`` and the episode events (so
``molmoact2-export-lerobot`` writes the successful episodes, one dataset episode each), and
``demos.json`` the per-episode results read back from it.

    molmoact2-demos [--robot so101|yam_bimanual] [--episodes 5] [--seed 0] [--out artifacts/demos]
                    [--camera-rate-hz 30] [--real-time-factor 0.25] [--lockstep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from molmoact2_common.bringup.graph import load_deployment
from molmoact2_common.bringup.runner import run
from molmoact2_common.domain import claim_domain_unless_set

DEFAULT_TASK = {"so101": "touch_cube", "so100": "touch_cube", "yam_bimanual": "reach_targets"}
SUPERVISOR_STATUS = "/episode_supervisor/status"
TASK_STATE = "/sim/robot/task/state"
TASK_SUCCESS = "/sim/robot/task/success"
INSTRUCTION = "/instruction"


class EpisodesWatch:
    """Ends the run once the episode supervisor reports ``done`` (or after ``wall_timeout_s``)."""

    def __init__(self, wall_timeout_s: float) -> None:
        self.wall_timeout_s = wall_timeout_s
        self.status: dict = {}
        self.timed_out = False
        self.wall_start = 0.0
        self.wall_end = 0.0
        self.sim_first: float | None = None
        self.sim_last: float | None = None

    def __call__(self, node):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from std_msgs.msg import String

        from molmoact2_common import qos

        self.wall_start = time.monotonic()

        def on_status(msg: String) -> None:
            self.status = json.loads(msg.data)

        def on_clock(msg: Clock) -> None:
            t = msg.clock.sec + msg.clock.nanosec * 1e-9
            self.sim_first = t if self.sim_first is None else self.sim_first
            self.sim_last = t

        node.create_subscription(String, SUPERVISOR_STATUS, on_status, qos.LATCHED)
        node.create_subscription(Clock, "/clock", on_clock, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))

        def done() -> bool:
            self.wall_end = time.monotonic()
            if self.wall_end - self.wall_start > self.wall_timeout_s:
                self.timed_out = True
                return True
            return bool(self.status.get("done"))

        return done

    @property
    def wall_per_sim_second(self) -> float:
        sim = (self.sim_last or 0.0) - (self.sim_first or 0.0)
        return (self.wall_end - self.wall_start) / sim if sim > 0 else float("inf")


def bag_episodes(bag: Path) -> dict:
    """Per-episode facts from a demo bag: {topics, episodes: {k: {seed, success_seen (task state),
    success_time, success_topic_true (~/task/success), instruction, goals}}}."""
    from rclpy.serialization import deserialize_message
    from std_msgs.msg import Bool, String

    from molmoact2_msgs.msg import DriverStatus

    from .core.evaluation.bagio import BagReader

    reader = BagReader(bag)
    topics = reader.topics()
    episodes: dict[int, dict] = {}
    drivers: dict[str, dict] = {}  # topic -> the last status's counters
    current = None
    for rec in reader.messages():
        if rec.topic == TASK_STATE:
            st = json.loads(deserialize_message(rec.data, String).data)
            current = int(st["episode"])
            ep = episodes.setdefault(current, {"seed": st["seed"], "success_seen": False, "success_time": None,
                                               "success_topic_true": False, "instruction": st["instruction"],
                                               "goals": st["goals"]})
            if st["success"] and not ep["success_seen"]:
                ep["success_seen"], ep["success_time"] = True, st["success_time"]
        elif rec.topic.endswith("driver_status"):
            m = deserialize_message(rec.data, DriverStatus)
            drivers[rec.topic] = {k: int(getattr(m, k)) for k in ("chunks_received", "chunks_refused", "steps_dropped_late",
                                                                  "tracking_faults", "watchdog_holds")}
        elif rec.topic == TASK_SUCCESS and current is not None:
            # messages logged at one instant may come back in any order: count per episode
            if deserialize_message(rec.data, Bool).data:
                episodes[current]["success_topic_true"] = True
    return {"topics": sorted(topics), "episodes": {str(k): v for k, v in sorted(episodes.items())}, "drivers": drivers}


EXPERT_DEFAULTS = {"detour_rad": 0.0, "approach_height_m": 0.06, "expert_mode": "plan", "press_depth_m": 0.0,
                   "start_jitter_rad": 0.0}


def add_expert_arguments(parser: argparse.ArgumentParser, **defaults) -> None:
    """The scripted expert's and the start pose's options (``EXPERT_DEFAULTS``, overridden by
    ``defaults``), shared by molmoact2-demos and molmoact2-train-demo, which forwards them."""
    d = {**EXPERT_DEFAULTS, **defaults}
    parser.add_argument("--detour-rad", type=float, default=d["detour_rad"],
                        help="the expert goes first through a seeded random via pose, every arm joint within +-this: "
                             "states off the straight path, whose way to the goal only the images tell (0 = straight)")
    parser.add_argument("--approach-height-m", type=float, default=d["approach_height_m"],
                        help="the expert stops this far above the goal before going down onto it (0 = straight onto it)")
    parser.add_argument("--expert-mode", default=d["expert_mode"], choices=("plan", "servo"),
                        help="plan: one min-jerk plan per episode; servo: every chunk from the current command towards "
                             "the goal (a function of where the arm is, no stop on the way)")
    parser.add_argument("--press-depth-m", type=float, default=d["press_depth_m"],
                        help="the expert aims this far below the cube's top face (into it: still moving when it touches)")
    parser.add_argument("--start-jitter-rad", type=float, default=d["start_jitter_rad"],
                        help="each episode starts with every arm joint at home + a seeded draw in +-this")


def expert_argv(args: argparse.Namespace) -> list[str]:
    """``add_expert_arguments``' options as molmoact2-demos takes them."""
    return ["--detour-rad", str(args.detour_rad), "--approach-height-m", str(args.approach_height_m),
            "--expert-mode", args.expert_mode, "--press-depth-m", str(args.press_depth_m),
            "--start-jitter-rad", str(args.start_jitter_rad)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="so101", choices=sorted(DEFAULT_TASK), help="embodiment (default so101)")
    parser.add_argument("--task", default="", help="task (default: touch_cube on SO-101, reach_targets on YAM)")
    parser.add_argument("--episodes", type=int, default=5, help="episodes to demonstrate")
    parser.add_argument("--seed", type=int, default=0, help="episode k is randomised with seed + k")
    parser.add_argument("--out", type=Path, default=Path("artifacts/demos"), help="output directory (replaced)")
    parser.add_argument("--camera-rate-hz", type=float, default=30.0, help="simulated camera rate (the embodiment's real one: 30)")
    parser.add_argument("--camera-width", type=int, default=160)
    parser.add_argument("--camera-height", type=int, default=120)
    parser.add_argument("--real-time-factor", type=float, default=0.25,
                        help="simulated seconds per wall second (CPU rendering at 30 fps needs < 1)")
    add_expert_arguments(parser)
    parser.add_argument("--wall-timeout-s", type=float, default=0.0, help="give up after this long (0 = 60 s per episode + 60)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    task = args.task or DEFAULT_TASK[args.robot]
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    domain_lock = claim_domain_unless_set()
    print(f"[demos] ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}; {args.episodes} episodes of {task} on {args.robot}, "
          f"seeds {args.seed}..{args.seed + args.episodes - 1}")
    bag = out / "bag"
    graph = load_deployment("sim", {
        "robot": args.robot, "demos": "true", "task": task, "task_seed": str(args.seed), "episodes": str(args.episodes),
        "record": "true", "bag_path": str(bag), "camera_rate_hz": str(args.camera_rate_hz),
        "camera_width": str(args.camera_width), "camera_height": str(args.camera_height),
        "real_time_factor": str(args.real_time_factor), "expert_detour_rad": str(args.detour_rad),
        "expert_approach_height_m": str(args.approach_height_m), "expert_mode": args.expert_mode,
        "start_jitter_rad": str(args.start_jitter_rad), "expert_press_depth_m": str(args.press_depth_m),
    })
    watch = EpisodesWatch(args.wall_timeout_s or 60.0 * args.episodes + 60.0)
    code = run(graph, duration=None, log_dir=out / "logs", watch=watch)
    del domain_lock
    if code != 0:
        print(f"[demos] FAILED: the graph did not run (logs in {out / 'logs'})")
        return code
    results = watch.status.get("results", [])
    summary = {"robot": args.robot, "task": task, "seed": args.seed, "episodes_requested": args.episodes,
               "results": results, "wall_per_sim_second": round(watch.wall_per_sim_second, 3),
               "timed_out": watch.timed_out}
    try:
        summary["bag"] = bag_episodes(bag)
    except Exception as exc:  # the bag is the product: say clearly when it cannot be read
        summary["bag_error"] = str(exc)
    (out / "demos.json").write_text(json.dumps(summary, indent=2))
    ok = sum(1 for r in results if r.get("success"))
    print(f"[demos] {ok}/{len(results)} episodes succeeded; {watch.wall_per_sim_second:.2f} wall s per simulated s; "
          f"bag {bag}, summary {out / 'demos.json'}")
    if watch.timed_out:
        print(f"[demos] FAILED: {len(results)} of {args.episodes} episodes finished before the wall timeout")
        return 1
    return 0 if ok == args.episodes else 1


if __name__ == "__main__":
    sys.exit(main())
