"""Teach the simulated arm a task, one command: demonstrations -> LeRobot dataset -> fine-tune.

1. ``molmoact2-demos``: N seeded episodes of the task, the scripted expert driving the real
   driver through the real graph, recorded by the real recorder (episodes marked in the bag).
2. ``molmoact2-export-lerobot``: the bag's successful episodes as a LeRobot v3.0 dataset, the
   cameras at the size the simulator rendered them (model units, one dataset episode each).
3. LeRobot's own ``lerobot-train`` (the CLI runs offline with the flags below: every path is
   local, nothing is downloaded) fine-tunes a random-weight MolmoAct2 built by
   ``molmoact2-build-tiny-checkpoint --size small`` on the CPU. Its log drives a progress bar;
   the loss of every logged step goes to ``loss.csv`` and ``loss.png``.
4. ``<out>/policy``: the fine-tune (LeRobot's ``pretrained_model``: config, weights,
   processors), what ``backend:=lerobot checkpoint:=<out>/policy`` and ``molmoact2-sim-eval``
   load, with ``recipe.json`` (every command, seed, version and duration that made it).

Deterministic for its seeds: the demonstrations' scenes come from ``--seed`` (episode k: seed + k),
the base weights and LeRobot's training seed from ``--train-seed``.

    molmoact2-train-demo [--robot so101] [--episodes 40] [--steps 2500] [--seed 0] [--out artifacts/train_demo]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .demos import DEFAULT_TASK, add_expert_arguments, expert_argv

LOSS_LINE = re.compile(r"\bstep:(\S+)\s.*?\bloss:([-+0-9.eE]+)")
PKGS = ("lerobot", "torch", "transformers", "mujoco")


def lerobot_train_command(dataset: Path, repo_id: str, base: Path, out: Path, norm_tag: str, setup_type: str,
                          cameras: list[str], steps: int, batch_size: int, lr: float, seed: int, log_freq: int,
                          save_freq: int, flow_timesteps: int, workers: int = 1) -> list[str]:
    """LeRobot's CLI with the README's MolmoAct2 flags, on the CPU, offline, from a random-weight base."""
    return [
        shutil.which("lerobot-train") or "lerobot-train",
        f"--dataset.repo_id={repo_id}", f"--dataset.root={dataset}", "--dataset.video_backend=pyav",
        "--policy.type=molmoact2", f"--policy.checkpoint_path={base}",
        f"--policy.discrete_action_tokenizer={base}/action_tokenizer", f"--policy.norm_tag={norm_tag}",
        f"--policy.setup_type={setup_type}", "--policy.control_mode=absolute joint position",
        "--policy.image_keys=[" + ",".join(f"observation.images.{c}" for c in cameras) + "]",
        "--policy.normalize_gripper=true", "--policy.push_to_hub=false", "--policy.device=cpu",
        "--policy.model_dtype=float32", "--policy.enable_inference_cuda_graph=false",
        # a random-weight base learns from scratch: the released fine-tuning rates (1e-5..5e-5) are
        # for a pretrained VLM; one rate for every part, warm-up, cosine decay over the run
        "--policy.action_mode=continuous", "--policy.freeze_embedding=false",
        f"--policy.optimizer_lr={lr}", f"--policy.optimizer_vit_lr={lr}", f"--policy.optimizer_connector_lr={lr}",
        f"--policy.optimizer_action_expert_lr={lr}", f"--policy.scheduler_warmup_steps={max(1, steps // 20)}",
        f"--policy.scheduler_decay_steps={steps}", f"--policy.scheduler_decay_lr={lr / 30:g}",
        # flow-matching timesteps drawn per sample: the action expert's forward and backward run once
        # per timestep, most of a CPU step (LeRobot's default 8)
        f"--policy.num_flow_timesteps={flow_timesteps}",
        f"--output_dir={out}", f"--steps={steps}", f"--batch_size={batch_size}",
        # one loader process decodes the next batch's video frames while the trainer steps (~0.2 s of
        # a ~0.6 s step with 0); its seeding is LeRobot's, so a run stays deterministic
        f"--num_workers={workers}",
        f"--save_freq={save_freq}", f"--log_freq={log_freq}", f"--seed={seed}", "--wandb.enable=false",
    ]


def run_training(cmd: list[str], steps: int, log_path: Path, env: dict, log_freq: int) -> list[tuple[int, float]]:
    """Run lerobot-train with a progress bar; returns [(step, loss)] from its log lines. LeRobot logs
    every log_freq-th step and prints the step rounded (1K for 1000..1499), so the k-th line's step
    is k * log_freq; the printed one only has to agree with it at its precision."""
    from tqdm import tqdm

    losses: list[tuple[int, float]] = []
    with open(log_path, "w") as log, tqdm(total=steps, desc="fine-tune", unit="step", dynamic_ncols=True) as bar:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
        for line in proc.stdout:
            log.write(line)
            m = LOSS_LINE.search(line)
            if m:
                step = (len(losses) + 1) * log_freq
                shown, unit = _big_number(m.group(1))
                if abs(shown - step) > unit / 2:
                    raise RuntimeError(f"lerobot-train's log line says step {m.group(1)} where {step} was due "
                                       f"(log_freq {log_freq}): {line.strip()[:200]}")
                losses.append((step, float(m.group(2))))
                bar.update(max(0, step - bar.n))
                bar.set_postfix(loss=f"{float(m.group(2)):.4f}")
        code = proc.wait()
        if code == 0:
            bar.update(steps - bar.n)
    if code != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"lerobot-train failed (exit {code}); its log: {log_path}\n{tail}")
    return losses


def _big_number(text: str) -> tuple[float, int]:
    """LeRobot logs step counts as 1K, 2K, 1M (format_big_number, no decimals): (value, its unit)."""
    unit = {"K": 1_000, "M": 1_000_000, "B": 1_000_000_000}.get(text[-1:].upper(), 1)
    return float(text[:-1] if unit > 1 else text) * unit, unit


def write_loss(losses: list[tuple[int, float]], out: Path) -> None:
    with open(out / "loss.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss"])
        w.writerows(losses)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if losses:
        ax.plot([s for s, _ in losses], [v for _, v in losses], lw=1.2)
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (flow matching)")
    ax.set_title("molmoact2-train-demo: LeRobot fine-tune")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss.png")
    plt.close(fig)


def make_portable(policy: Path, base: Path) -> None:
    """LeRobot's ``pretrained_model`` names its base model (tokenizer, processor, HF config) by
    absolute path. Copy the base into ``base_model/`` and name it relative to the directory, which
    the ``lerobot`` backend resolves: the policy works wherever it is copied or cloned. LeRobot
    builds the model from the base's weights, then replaces every tensor with the fine-tune's
    (``model.safetensors``, loaded strictly): the base's weights are written as zeros of the same
    shapes, which compress to nothing in git (test_train_demo checks the chunks are identical)."""
    from safetensors.torch import load_file, save_file
    import torch

    dst = policy / "base_model"
    # the base's *.py is lerobot's configuration module, which save_pretrained copies beside the
    # config: LeRobot loads the model with its own classes, so the copy is not needed (nor ours to ship)
    shutil.copytree(base, dst, ignore=shutil.ignore_patterns("model.safetensors", "*.lock", "*.py"))
    tensors = load_file(str(base / "model.safetensors"))
    save_file({k: torch.zeros_like(v) for k, v in tensors.items()}, str(dst / "model.safetensors"), metadata={"format": "pt"})
    rel = {"checkpoint_path": "base_model", "discrete_action_tokenizer": "base_model/action_tokenizer"}
    cfg = json.loads((policy / "config.json").read_text())
    cfg.update(rel)
    (policy / "config.json").write_text(json.dumps(cfg, indent=4))
    pre = json.loads((policy / "policy_preprocessor.json").read_text())
    for step in pre["steps"]:
        for k, v in rel.items():
            if k in step.get("config", {}):
                step["config"][k] = v
    (policy / "policy_preprocessor.json").write_text(json.dumps(pre, indent=2))
    train_cfg = policy / "train_config.json"
    if train_cfg.is_file():  # the training run's own record: absolute paths of this machine
        train_cfg.rename(policy / "train_config.as_run.json")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in PKGS:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="so101", choices=sorted(DEFAULT_TASK))
    parser.add_argument("--episodes", type=int, default=40, help="demonstrations to record")
    parser.add_argument("--seed", type=int, default=0, help="demonstration k uses scene seed + k")
    parser.add_argument("--train-seed", type=int, default=0, help="the base weights' and LeRobot's training seed")
    parser.add_argument("--steps", type=int, default=2500, help="training steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--flow-timesteps", type=int, default=4, help="flow-matching timesteps per sample (LeRobot's default 8)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads of the trainer (1: on a shared 2-core machine two threads spin-wait on "
                             "each other: 0.8 vs 3.4 s a step, two runs one after the other under the same load)")
    parser.add_argument("--workers", type=int, default=1, help="LeRobot data-loader processes (0 = load in the trainer)")
    parser.add_argument("--save-every", type=int, default=0, help="also keep a checkpoint every this many steps (0 = the last only)")
    parser.add_argument("--size", default="small", help="base model size (molmoact2-build-tiny-checkpoint --size)")
    parser.add_argument("--camera-width", type=int, default=160)
    parser.add_argument("--camera-height", type=int, default=120)
    parser.add_argument("--real-time-factor", type=float, default=0.5, help="demonstrations: simulated s per wall s")
    # demonstrations: the committed fine-tune's recipe (models/so101_touch_cube)
    add_expert_arguments(parser, approach_height_m=0.0, expert_mode="servo", press_depth_m=0.03, start_jitter_rad=0.3)
    parser.add_argument("--demos", type=Path, default=None, help="reuse this molmoact2-demos output instead of recording")
    parser.add_argument("--out", type=Path, default=Path("artifacts/train_demo"), help="output directory (replaced)")
    parser.add_argument("--checkpoint-cache", type=Path, default=Path("checkpoints"), help="where base checkpoints are built once")
    args = parser.parse_args(argv)
    for name in ("episodes", "steps", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    from molmoact2_common.embodiment import load_embodiment

    from .core.evaluation.export import ExportConfig, export_lerobot
    from .core.tiny_checkpoint import SIZES, cached_tiny_checkpoint

    if args.size not in SIZES:
        parser.error(f"--size {args.size!r}: one of {', '.join(SIZES)}")
    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    emb = load_embodiment(args.robot)
    task = DEFAULT_TASK[args.robot]
    recipe: dict = {"robot": args.robot, "task": task, "seed": args.seed, "train_seed": args.train_seed, "episodes": args.episodes, "steps": args.steps,
                    "batch_size": args.batch_size, "lr": args.lr, "flow_timesteps": args.flow_timesteps, "threads": args.threads, "workers": args.workers, "detour_rad": args.detour_rad, "approach_height_m": args.approach_height_m, "expert_mode": args.expert_mode, "start_jitter_rad": args.start_jitter_rad, "press_depth_m": args.press_depth_m, "size": args.size, "versions": _versions(), "stages": {}}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    t_all = time.monotonic()

    # 1. demonstrations through the real graph
    t0 = time.monotonic()
    if args.demos:
        demos = args.demos.resolve()
        recipe["stages"]["demos"] = {"reused": str(demos)}
    else:
        demos = out / "demos"
        cmd = [sys.executable, "-m", "molmoact2_policy.demos", "--robot", args.robot, "--episodes", str(args.episodes),
               "--seed", str(args.seed), "--out", str(demos), "--camera-width", str(args.camera_width),
               "--camera-height", str(args.camera_height), "--real-time-factor", str(args.real_time_factor),
               *expert_argv(args)]
        print(f"[train-demo] 1/3 demonstrations: {' '.join(cmd[1:])}", flush=True)
        code = subprocess.call(cmd, env=env)
        if code != 0 and not (demos / "bag").exists():
            print(f"[train-demo] FAILED: the demonstrations did not run (logs in {demos / 'logs'})")
            return 1
        recipe["stages"]["demos"] = {"command": cmd[1:], "exit": code, "wall_s": round(time.monotonic() - t0, 1)}
    summary = json.loads((demos / "demos.json").read_text())
    ok = sum(1 for r in summary.get("results", []) if r.get("success"))
    print(f"[train-demo] {ok} successful demonstrations of {len(summary.get('results', []))}", flush=True)

    # 2. export the successful episodes
    t0 = time.monotonic()
    dataset = out / "dataset"
    repo_id = f"local/{args.robot}_{task}"
    print(f"[train-demo] 2/3 export: molmoact2-export-lerobot {demos / 'bag'} -e {args.robot} -o {dataset} "
          f"--episodes labelled --image-size {args.camera_width}x{args.camera_height}", flush=True)
    exported = export_lerobot(ExportConfig([str(demos / "bag")], args.robot, str(dataset), repo_id=repo_id,
                                           episodes="labelled", image_size=(args.camera_width, args.camera_height)))
    recipe["stages"]["export"] = {"episodes": len(exported["episodes"]), "frames": sum(b["frames"] for b in exported["bags"]),
                                  "labelled_exported": sum(bool(e["exported"]) for e in exported.get("labelled_episodes", [])),
                                  "skipped": exported["bags"][0]["skipped"], "too_short_frames": exported["bags"][0].get("too_short_frames"),
                                  "wall_s": round(time.monotonic() - t0, 1)}
    if not exported["episodes"]:
        print("[train-demo] FAILED: no successful demonstration to learn from")
        return 1

    # 3. fine-tune with LeRobot
    t0 = time.monotonic()
    base = cached_tiny_checkpoint(args.checkpoint_cache.resolve(), size=args.size) if args.train_seed == 0 else None
    if base is None:  # a non-default seed gets its own base weights
        from .core.tiny_checkpoint import build_tiny_checkpoint

        base = build_tiny_checkpoint(out / "base", seed=args.train_seed, size=args.size)
    meta = json.loads((base / "norm_stats.json").read_text())["metadata_by_tag"][emb.model.norm_tag]
    log_freq = max(1, min(50, args.steps // 20))
    cmd = lerobot_train_command(dataset, repo_id, base, out / "train", emb.model.norm_tag, meta["setup_type"],
                                [c.name for c in emb.cameras_in_model_order()], args.steps, args.batch_size, args.lr, args.train_seed,
                                log_freq=log_freq, save_freq=args.save_every or args.steps,
                                flow_timesteps=args.flow_timesteps, workers=args.workers)
    print(f"[train-demo] 3/3 fine-tune: {' '.join(Path(cmd[0]).name if i == 0 else c for i, c in enumerate(cmd))}", flush=True)
    losses = run_training(cmd, args.steps, out / "train.log", {**env, "OMP_NUM_THREADS": str(args.threads),
                                                                "MKL_NUM_THREADS": str(args.threads)}, log_freq)
    write_loss(losses, out)
    recipe["stages"]["train"] = {"command": [Path(cmd[0]).name, *cmd[1:]], "base": str(base),
                                 "first_loss": losses[0][1] if losses else None, "last_loss": losses[-1][1] if losses else None,
                                 "wall_s": round(time.monotonic() - t0, 1)}
    policy = out / "policy"
    shutil.copytree(out / "train" / "checkpoints" / "last" / "pretrained_model", policy)
    make_portable(policy, base)
    recipe["wall_s"] = round(time.monotonic() - t_all, 1)
    (policy / "recipe.json").write_text(json.dumps(recipe, indent=2))
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2))
    print(f"[train-demo] OK in {recipe['wall_s']:.0f} s: policy {policy} (loss {recipe['stages']['train']['first_loss']} -> "
          f"{recipe['stages']['train']['last_loss']}; plot {out / 'loss.png'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
