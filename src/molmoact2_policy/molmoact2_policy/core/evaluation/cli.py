"""Command lines: ``molmoact2-evaluate`` and ``molmoact2-export-lerobot`` (also
``python -m molmoact2_policy.core.evaluation.cli evaluate|export ...``). ROS-free: they read
bags directly, so they run on any machine with the venv, no graph needed."""

from __future__ import annotations

import argparse
import json
import sys

from .bagio import BagError
from .topic_map import TopicMapError


def _backend_options(ns) -> dict:
    opts: dict = {}
    if ns.backend in ("hf", "lerobot"):
        if not ns.checkpoint:
            raise SystemExit(f"molmoact2-evaluate: --checkpoint DIR is needed for the '{ns.backend}' backend")
        opts["checkpoint"] = ns.checkpoint
        if ns.device:
            opts["device"] = ns.device
        opts["action_mode"] = ns.action_mode
        if ns.num_steps:
            opts["num_steps"] = ns.num_steps
        if ns.num_threads:
            opts["num_threads"] = ns.num_threads
        if ns.backend == "hf":
            opts["think"] = bool(ns.think)
        elif ns.think:
            raise SystemExit("molmoact2-evaluate: --think needs the hf backend (LeRobot's policy does not run Think)")
    elif ns.backend == "remote":
        if not ns.url:
            raise SystemExit("molmoact2-evaluate: --url is needed for the 'remote' backend")
        opts["url"] = ns.url
    for kv in ns.backend_option or []:
        k, _, v = kv.partition("=")
        try:
            opts[k] = json.loads(v)
        except json.JSONDecodeError:
            opts[k] = v
    return opts


def evaluate_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="molmoact2-evaluate",
                                 description="Open-loop replay evaluation of a MolmoAct2 backend on a rosbag2.")
    ap.add_argument("bag", help="rosbag2 directory (mcap or sqlite3) or one .mcap/.db3 file")
    ap.add_argument("-e", "--embodiment", required=True, help="embodiment config name or path (config/embodiments)")
    ap.add_argument("-m", "--topic-map", default=None, help="topic map name or path (config/evaluation); default: from the embodiment")
    ap.add_argument("-b", "--backend", default="hf", choices=("hf", "lerobot", "remote"))
    ap.add_argument("-c", "--checkpoint", default=None, help="checkpoint directory (hf, lerobot)")
    ap.add_argument("--url", default=None, help="/act server URL (remote)")
    ap.add_argument("--think", action="store_true", help="MolmoAct2-Think: depth reasoning (hf)")
    ap.add_argument("--action-mode", default="continuous", choices=("continuous", "discrete"))
    ap.add_argument("--device", default=None)
    ap.add_argument("--num-steps", type=int, default=None, help="flow steps")
    ap.add_argument("--num-threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--backend-option", action="append", help="extra backend keyword, key=value (JSON value)")
    ap.add_argument("-i", "--instruction", default=None, help="task text (default: the bag's instruction topic)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rate", type=float, default=None, help="observation rate, Hz (default: the embodiment's control rate)")
    ap.add_argument("--every", type=int, default=1, help="predict at every n-th observation")
    ap.add_argument("--max-observations", type=int, default=None)
    ap.add_argument("--stamps", default="header", choices=("header", "receive"), help="input times: header stamps or bag receive times")
    ap.add_argument("-o", "--output", required=True, help="report directory")
    ap.add_argument("--format", default="md", choices=("md", "html"))
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ns = ap.parse_args(argv)
    from .evaluate import EvalConfig, EvaluationError, evaluate
    from .report import write_report

    cfg = EvalConfig(bag=ns.bag, embodiment=ns.embodiment, topic_map=ns.topic_map, backend=ns.backend,
                     backend_options=_backend_options(ns), instruction=ns.instruction, seed=ns.seed, rate_hz=ns.rate,
                     every=ns.every, max_observations=ns.max_observations, stamps=ns.stamps, progress=not ns.no_progress)
    try:
        results, metrics = evaluate(cfg)
    except (BagError, TopicMapError, EvaluationError, ValueError, RuntimeError) as exc:
        print(f"molmoact2-evaluate: {exc}", file=sys.stderr)
        return 2
    write_report(results, metrics, ns.output, ns.format, plots=not ns.no_plots)
    o = results["observations"]
    print(f"evaluated {o['evaluated']} observations of {o['ticks']}; report in {ns.output}"
          + ("; CIRCULAR comparison (bag driven by this model)" if results["circular"]["circular"] else "")
          + (f"; {results['broken_records']['count']} broken record(s)" if results["broken_records"]["count"] else ""))
    return 0


def export_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="molmoact2-export-lerobot", description="rosbag2 -> LeRobot dataset v3.0: the labelled episodes of episode-manager bags (successes by default), else one episode per bag (per run of fresh frames).")
    ap.add_argument("bags", nargs="+", help="rosbag2 directories or files")
    ap.add_argument("-e", "--embodiment", required=True)
    ap.add_argument("-m", "--topic-map", default=None)
    ap.add_argument("-o", "--output", required=True, help="dataset root (must not exist)")
    ap.add_argument("--repo-id", default="", help="dataset repo id recorded in the metadata (default local/<output name>)")
    ap.add_argument("-i", "--instruction", default=None, help="task text (default: the bag's instruction topic)")
    ap.add_argument("--units", default="model", choices=("model", "wire"))
    ap.add_argument("--stamps", default="header", choices=("header", "receive"))
    ap.add_argument("--max-state-age", type=float, default=None,
                    help="seconds: a frame's joint state may be at most this old, else the frame is skipped and counted "
                         "(default: the topic map's joint_max_age)")
    ap.add_argument("--max-image-age", type=float, default=None,
                    help="seconds: the same bound for each camera image (default: the topic map's camera_max_age)")
    ap.add_argument("--episodes", default="auto", choices=("auto", "labelled", "all"),
                    help="auto (default): a bag with episode-manager events is cut into its labelled episodes "
                         "(successes only), others give one episode per run of fresh frames; labelled: require the "
                         "events; all: ignore them")
    ap.add_argument("--include-failures", action="store_true", help="with labelled episodes: keep the failures too")
    ap.add_argument("--episode-topic", default="/episode/event", help="the episode manager's event topic in the bags")
    ap.add_argument("--image-size", default=None, metavar="WIDTHxHEIGHT",
                    help="every camera at this size (default: the embodiment's; a simulator's renders: their own size)")
    ap.add_argument("--no-progress", action="store_true")
    ns = ap.parse_args(argv)
    image_size = None
    if ns.image_size:
        w, x, h = ns.image_size.lower().partition("x")
        if not (x and w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
            ap.error(f"--image-size {ns.image_size!r}: expected WIDTHxHEIGHT, e.g. 160x120")
        image_size = (int(w), int(h))
    from .export import ExportConfig, ExportError, export_lerobot

    try:
        summary = export_lerobot(ExportConfig(ns.bags, ns.embodiment, ns.output, ns.repo_id, ns.topic_map, ns.instruction,
                                              ns.units, ns.stamps, not ns.no_progress, ns.max_state_age, ns.max_image_age,
                                              episodes=ns.episodes, include_failures=ns.include_failures,
                                              episode_topic=ns.episode_topic, image_size=image_size))
    except (BagError, TopicMapError, ExportError, ValueError) as exc:
        print(f"molmoact2-export-lerobot: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("evaluate", "export"):
        print("usage: python -m molmoact2_policy.core.evaluation.cli evaluate|export ...", file=sys.stderr)
        return 2
    return evaluate_main(argv[1:]) if argv[0] == "evaluate" else export_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
