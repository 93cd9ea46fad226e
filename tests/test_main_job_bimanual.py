"""The main job on bimanual YAM, shortened: both MuJoCo YAM arms in one sim node (one /clock), three
rendered cameras, the tiny checkpoint's 14-D chunks split between one driver per arm, as separate
processes over real DDS. Both arms move, stay within their limits, and the bag reads back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from molmoact2_common.embodiment import load_embodiment
from support.ros_harness import ROOT

pytestmark = [pytest.mark.ros, pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def bimanual_run(tmp_path_factory, tiny_checkpoint_dir):
    out = tmp_path_factory.mktemp("main_job_yam") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "molmoact2_policy.main_job", "--mode", "graph", "--robot", "yam_bimanual", "--sim-seconds", "5",
         "--out", str(out), "--checkpoint-cache", str(tiny_checkpoint_dir.parent.parent)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    return proc, out


def test_bimanual_main_job_moves_both_arms_within_their_limits(bimanual_run):
    proc, out = bimanual_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    emb = load_embodiment("yam_bimanual")
    assert summary["robot"] == "yam_bimanual"
    assert summary["arms_moved"] == {"left": True, "right": True}, summary["joint_range_rad"]
    for arm in ("left", "right"):  # each arm's own joints moved, not only the other arm's
        assert max(summary["joint_range_rad"][f"{arm}_joint{i}"] for i in range(1, 7)) > 0.01
    assert summary["limit_violations"] == []
    assert set(summary["joint_range_rad"]) == set(emb.joint_names)
    # both drivers took chunks and commanded their arm
    assert set(summary["chunks_executed_per_driver"]) == {"left", "right"}
    assert min(summary["chunks_executed_per_driver"].values()) > 0
    assert set(summary["control_rate_per_driver_hz"]) == {"left", "right"}
    assert summary["control_rate_hz"] == min(summary["control_rate_per_driver_hz"].values()) > 0
    for png in ("camera_top.png", "camera_left.png", "camera_right.png", "change_mask_top.png", "joint_trajectories.png"):
        assert (out / png).stat().st_size > 1000, f"{png} missing or empty"


def test_bimanual_main_job_bag_reads_back(bimanual_run):
    proc, out = bimanual_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from mcap.reader import make_reader

    from molmoact2_policy.core.evaluation.bagio import BagReader

    topics = BagReader(out / "bag").topics()
    for topic in ("/action_chunk", "/observation", "/clock", "/sim/joint_states", "/change_mask/top",
                  "/left/joint_states", "/right/joint_states", "/left/commanded_joint_states",
                  "/right/commanded_joint_states", "/left/driver_status", "/right/driver_status",
                  "/sim/cameras/top/image_raw", "/sim/cameras/left/image_raw", "/sim/cameras/right/image_raw"):
        assert topic in topics and topics[topic].count > 0, f"{topic} not recorded: {sorted(topics)}"
    seen = set()
    for f in sorted((out / "bag").glob("*.mcap")):
        with open(f, "rb") as stream:
            for _schema, channel, _message in make_reader(stream).iter_messages(topics=["/left/joint_states"]):
                seen.add(channel.topic)
    assert seen == {"/left/joint_states"}
    assert (out / "bag" / "metadata.yaml").is_file()
