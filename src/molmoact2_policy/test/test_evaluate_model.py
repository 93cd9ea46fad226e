"""Replay evaluation with the real MolmoAct2 code (tiny offline checkpoint): the report, seed
determinism, circularity, damaged bags, Think's refresh fraction, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from molmoact2_policy.core.evaluation import synthetic
from molmoact2_policy.core.evaluation.evaluate import EvalConfig, evaluate
from molmoact2_policy.core.evaluation.report import write_report

pytestmark = [pytest.mark.model, pytest.mark.slow]
SO101_JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


@pytest.fixture(scope="module")
def demo_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval") / "demo"
    spec = synthetic.SyntheticSpec(cameras={"front": "/cameras/front/image_raw", "wrist": "/cameras/wrist/image_raw"},
                                   joint_topic="/joint_states", joint_names=SO101_JOINTS, seconds=1.5, camera_hz=15,
                                   joint_hz=50, chunk_topic="/action_chunk", chunk_model_id="teleop-controller",
                                   instruction_topic="/instruction", instruction="stack the cups", split_seconds=0.5)
    synthetic.write_synthetic_bag(path, spec)
    return path


def _cfg(bag, ckpt, **kw):
    opts = {"checkpoint": str(ckpt), "num_steps": 2, "num_threads": 2}
    opts.update(kw.pop("backend_options", {}))
    return EvalConfig(str(bag), "so101", backend="hf", backend_options=opts, progress=False, every=3, **kw)


def test_evaluation_report_has_json_markdown_and_plots_with_metrics_by_horizon_step(demo_bag, tiny_checkpoint_dir, tmp_path):
    results, metrics = evaluate(_cfg(demo_bag, tiny_checkpoint_dir))
    write_report(results, metrics, tmp_path / "report", "md")
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    m = data["metrics"]
    assert data["instruction"] == "stack the cups"  # from the bag's instruction topic
    assert data["observations"]["evaluated"] > 5 and m["chunks_scored"] > 0
    assert len(m["mae_by_step"]) == m["horizon_steps"] and len(m["mae_by_step"][0]) == 6
    assert m["gripper_agreement"] is not None and m["latency_s"]["p99"] > 0
    assert not data["circular"]["circular"] and "teleop-controller" in data["circular"]["bag_action_chunk_models"]
    assert {"trajectories.png", "error_vs_horizon.png", "latency_hist.png"} <= set(data["plots"])
    for p in data["plots"]:
        assert (tmp_path / "report" / p).read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| step | samples |" in md and "![trajectories.png](trajectories.png)" in md


def test_evaluation_is_deterministic_for_a_seed(demo_bag, tiny_checkpoint_dir):
    a, _ = evaluate(_cfg(demo_bag, tiny_checkpoint_dir, seed=7))
    b, _ = evaluate(_cfg(demo_bag, tiny_checkpoint_dir, seed=7))
    c, _ = evaluate(_cfg(demo_bag, tiny_checkpoint_dir, seed=8))
    assert a["metrics"]["mae_by_step"] == b["metrics"]["mae_by_step"]
    assert a["metrics"]["mae_by_step"] != c["metrics"]["mae_by_step"]


def test_a_bag_driven_by_the_same_model_is_reported_circular(tmp_path, tiny_checkpoint_dir):
    spec = synthetic.SyntheticSpec(cameras={"front": "/cameras/front/image_raw", "wrist": "/cameras/wrist/image_raw"},
                                   joint_topic="/joint_states", joint_names=SO101_JOINTS, seconds=0.5,
                                   chunk_topic="/action_chunk", chunk_model_id=tiny_checkpoint_dir.name)
    synthetic.write_synthetic_bag(tmp_path / "selfdriven", spec)
    results, metrics = evaluate(_cfg(tmp_path / "selfdriven", tiny_checkpoint_dir, instruction="x", max_observations=2))
    assert results["circular"]["circular"] and "circular" in results["circular"]["explanation"]
    write_report(results, metrics, tmp_path / "r", "html")
    assert "Circular comparison" in (tmp_path / "r" / "report.html").read_text()


def test_a_truncated_bag_is_evaluated_and_its_broken_records_reported(demo_bag, tmp_path, tiny_checkpoint_dir):
    import shutil

    bag = tmp_path / "damaged"
    shutil.copytree(demo_bag, bag)
    f = bag / "damaged_1.mcap" if (bag / "damaged_1.mcap").exists() else sorted(bag.glob("*_1.mcap"))[0]
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 2 // 3])
    results, _ = evaluate(_cfg(bag, tiny_checkpoint_dir))
    broken = results["broken_records"]
    assert broken["count"] >= 1 and any(b["position"].startswith("byte ") for b in broken["listed"])
    assert results["observations"]["evaluated"] > 5


def test_think_reports_depth_refresh_fraction_against_scene_change(tmp_path, tiny_think_checkpoint_dir):
    spec = synthetic.SyntheticSpec(cameras={"front": "/cameras/front/image_raw", "wrist": "/cameras/wrist/image_raw"},
                                   joint_topic="/joint_states", joint_names=SO101_JOINTS, seconds=1.2, camera_hz=15)
    synthetic.write_synthetic_bag(tmp_path / "think", spec)
    results, metrics = evaluate(_cfg(tmp_path / "think", tiny_think_checkpoint_dir, instruction="x", max_observations=4,
                                     backend_options={"think": True}))
    t = results["metrics"]["think"]
    assert t["observations"] == 4 and 0 <= t["mean_refresh_fraction"] <= 1
    assert results["backend"]["mode"] == "think"
    written = write_report(results, metrics, tmp_path / "r")
    assert "refresh_fraction.png" in written["plots"]


def test_evaluate_command_line_runs_as_a_module(demo_bag, tiny_checkpoint_dir, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "molmoact2_policy.core.evaluation.cli", "evaluate", str(demo_bag),
                           "-e", "so101", "-c", str(tiny_checkpoint_dir), "--num-steps", "1", "--num-threads", "2",
                           "--max-observations", "3", "-o", str(out), "--format", "html"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "evaluating" in proc.stderr  # the progress bar
    assert (out / "report.html").exists() and (out / "results.json").exists()


def test_evaluate_command_line_missing_topics_exits_with_the_bag_topics(tmp_path):
    spec = synthetic.SyntheticSpec(cameras={"front": "/elsewhere/front"}, joint_topic="/js", joint_names=SO101_JOINTS, seconds=0.2)
    synthetic.write_synthetic_bag(tmp_path / "b", spec)
    proc = subprocess.run([sys.executable, "-m", "molmoact2_policy.core.evaluation.cli", "evaluate", str(tmp_path / "b"),
                           "-e", "so101", "-c", "/nonexistent", "-i", "x", "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "/elsewhere/front" in proc.stderr and "/js" in proc.stderr


def test_evaluation_runs_against_a_remote_act_server(demo_bag, tiny_checkpoint_dir, tmp_path):
    import socket
    import urllib.request

    from support.ros_harness import ChildProcess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ChildProcess.python_module("molmoact2_policy.server", "--backend", "hf", "--checkpoint", str(tiny_checkpoint_dir),
                                        "--norm-tag", "so100_so101_molmoact2", "--cameras", "front,wrist",
                                        "--port", str(port), "--num-threads", "1")
    try:
        import time

        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/act", timeout=1).read()
                break
            except OSError:
                assert server.alive() and time.monotonic() < deadline, server.output()
                time.sleep(0.2)
        results, _ = evaluate(EvalConfig(str(demo_bag), "so101", backend="remote",
                                         backend_options={"url": f"http://127.0.0.1:{port}", "timeout_s": 30.0},
                                         progress=False, every=5, max_observations=3))
    finally:
        server.stop()
    assert results["backend"]["kind"] == "remote"
    assert results["observations"]["evaluated"] == 3 and results["metrics"]["chunks_scored"] > 0


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_evaluate_scores_every_chunk_of_a_per_topic_block_bag(tmp_path, tiny_checkpoint_dir, storage):
    """A bag whose joint states were all written before its camera frames (per-topic blocks)
    evaluates exactly as the same recording written in time order: every chunk whose future the
    bag holds is scored, against the same ground truth."""
    kw = dict(cameras={"front": "/cameras/front/image_raw", "wrist": "/cameras/wrist/image_raw"}, joint_topic="/joint_states",
              joint_names=SO101_JOINTS, seconds=2.0, camera_hz=15, joint_hz=50, instruction_topic="/instruction",
              instruction="stack the cups", storage=storage)
    synthetic.write_synthetic_bag(tmp_path / "timeorder", synthetic.SyntheticSpec(**kw))
    synthetic.write_synthetic_bag(tmp_path / "blocks", synthetic.SyntheticSpec(**kw, file_order="per_topic_blocks"))
    ref, _ = evaluate(_cfg(tmp_path / "timeorder", tiny_checkpoint_dir))
    got, _ = evaluate(_cfg(tmp_path / "blocks", tiny_checkpoint_dir))
    obs, m = got["observations"], got["metrics"]
    assert obs == ref["observations"] and obs["evaluated"] >= 18 and not got["broken_records"]["count"]
    # all but the chunks at the very end, whose horizon runs past the recording
    horizon_s = m["horizon_steps"] * m["dt"]
    assert m["chunks_scored"] + m["chunks_unscored"] == obs["evaluated"]
    assert m["chunks_unscored"] <= int(horizon_s * got["rate_hz"] / 3) + 1
    assert m["chunks_scored"] == ref["metrics"]["chunks_scored"] and m["mae_by_step"] == ref["metrics"]["mae_by_step"]
