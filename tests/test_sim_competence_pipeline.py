"""The competence pipeline, short: demonstrations through the real graph -> LeRobot dataset ->
lerobot-train -> closed-loop evaluation of the fine-tune through the full graph. Every stage
connects, and what each writes is well formed and reads back with LeRobot (the success-rate
figures themselves come from molmoact2-sim-eval runs quoted in the README)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("mujoco")
pytest.importorskip("lerobot")


def _run(cmd, timeout, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    return proc, proc.stdout[-4000:] + proc.stderr[-4000:]


def _portable_policy_gives_the_same_chunks_as_lerobots_own_directory(policy, lerobot_dir, elsewhere):
    """The portable copy (base model inside, relative paths, zero base weights) moved to another
    directory loads through our lerobot backend and gives LeRobot's own directory's chunks exactly."""
    import shutil

    import numpy as np

    from molmoact2_policy.core.backends.base import PolicyRequest
    from molmoact2_policy.core.backends.lerobot_policy import LeRobotBackend

    shutil.copytree(policy, elsewhere)
    assert json.loads((elsewhere / "config.json").read_text())["checkpoint_path"] == "base_model"
    assert not list((elsewhere / "base_model").glob("*.py"))  # no copy of lerobot's source in the product
    rng = np.random.default_rng(0)
    req = PolicyRequest(images=[rng.integers(0, 255, (72, 96, 3), dtype=np.uint8) for _ in range(2)],
                        state=np.array([0.0, -90.0, 90.0, 60.0, 0.0, 10.0]), instruction="touch the cube",
                        norm_tag="so100_so101_molmoact2", camera_names=["front", "wrist"], seed=1)
    chunks = [np.asarray(LeRobotBackend(str(d), camera_names=["front", "wrist"]).predict(req).actions) for d in (lerobot_dir, elsewhere)]
    np.testing.assert_array_equal(chunks[0], chunks[1])


@pytest.mark.ros
@pytest.mark.slow
def test_demos_export_finetune_and_closed_loop_eval_connect_and_read_back(tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = tmp_path / "train"
    proc, log = _run([sys.executable, "-m", "molmoact2_policy.train_demo", "--episodes", "2", "--seed", "3", "--train-seed", "3", "--steps", "2",
                      "--batch-size", "2", "--size", "tiny", "--camera-width", "96", "--camera-height", "72",
                      "--out", str(out), "--checkpoint-cache", str(tmp_path / "ck")], timeout=600)
    assert proc.returncode == 0, log
    recipe = json.loads((out / "recipe.json").read_text())
    export = recipe["stages"]["export"]
    assert recipe["seed"] == 3 and recipe["train_seed"] == 3, recipe
    # the two successful demonstrations (a loaded machine may leave one without fresh frames: the
    # exporter skips stale frames and says why), cameras as rendered, read back by LeRobot
    assert export["labelled_exported"] >= 1 and export["episodes"] >= export["labelled_exported"], export
    ds = LeRobotDataset("local/so101_touch_cube", root=out / "dataset", video_backend="pyav")
    assert ds.meta.total_episodes == export["episodes"] and ds.meta.total_frames == export["frames"], export
    assert ds.meta.tasks.index.tolist() == ["touch the cube"]
    item = ds[0]
    assert tuple(item["observation.images.front"].shape) == (3, 72, 96)
    assert item["observation.state"].shape[-1] == 6 and item["action"].shape[-1] == 6
    # the fine-tune: LeRobot's pretrained_model layout, with the recipe and a loss curve
    policy = out / "policy"
    assert json.loads((policy / "config.json").read_text())["type"] == "molmoact2"
    assert (policy / "model.safetensors").is_file() and (policy / "recipe.json").is_file()
    assert (out / "loss.png").stat().st_size > 1000 and (out / "loss.csv").read_text().startswith("step,loss")
    _portable_policy_gives_the_same_chunks_as_lerobots_own_directory(policy, out / "train" / "checkpoints" / "last" /
                                                                     "pretrained_model", tmp_path / "elsewhere")

    ev = tmp_path / "eval"
    proc, log = _run([sys.executable, "-m", "molmoact2_policy.sim_eval", "--checkpoint", str(policy), "--episodes", "2",
                      "--seed", "500", "--episode-timeout-s", "1.5", "--camera-width", "96", "--camera-height", "72",
                      "--out", str(ev)], timeout=600)
    assert proc.returncode == 0, log
    report = json.loads((ev / "report.json").read_text())
    assert report["episodes"] == 2 and [e["seed"] for e in report["per_episode"]] == [500, 501], report["per_episode"]
    assert all(e["outcome"] in ("success", "failure") for e in report["per_episode"])
    lo, hi = report["success_rate_95ci"]
    assert 0.0 <= lo <= report["success_rate"] <= hi <= 1.0
    assert report["driver_counters"]["chunks_received"] > 0  # the fine-tune drove the driver
    assert set(report["safety_events"]) >= {"tracking_faults", "watchdog_holds", "refusals_nonfinite"}
    assert any((ev / f).is_file() for f in ("strip_success.png", "strip_failure.png"))
    assert "episodes succeeded" in (ev / "report.md").read_text()

    # the main job's headline on this fine-tune: fine-tuned and random weights side by side
    cfg = tmp_path / "main_job.yaml"
    cfg.write_text("mode: competence\ncompetence: {episodes: 1, baseline_episodes: 1, baseline_size: tiny, "
                   "episode_timeout_s: 1.5, seed: 700, lockstep: true}\n")
    job = tmp_path / "job"
    proc, log = _run([sys.executable, "-m", "molmoact2_policy.main_job", "--config", str(cfg), "--policy", str(policy),
                      "--out", str(job), "--checkpoint-cache", str(tmp_path / "ck")], timeout=600)
    assert proc.returncode == 0, log
    summary = json.loads((job / "summary.json").read_text())
    assert set(summary["reports"]) == {"fine-tuned", "random weights"}
    assert all(r["episodes"] == 1 and r["seeds"] == [700, 700] for r in summary["reports"].values()), summary
    assert "fine-tuned" in proc.stdout and "random weights" in proc.stdout and "95% CI" in proc.stdout
