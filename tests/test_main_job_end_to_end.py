"""The main job, shortened: the full graph closed-loop in MuJoCo on the tiny checkpoint, as separate
processes over real DDS. The arm moves, stays within its limits, and the recorded bag reads back
with our reader and with the mcap reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from molmoact2_common.embodiment import load_embodiment
from support.ros_harness import ROOT

pytestmark = [pytest.mark.ros, pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def main_job_run(tmp_path_factory, tiny_checkpoint_dir):
    out = tmp_path_factory.mktemp("main_job") / "run"
    # No ROS_DOMAIN_ID: the main job claims a domain of its own, so nothing another test left
    # running on the session's domain can reach the closed loop.
    env = {k: v for k, v in os.environ.items() if k != "ROS_DOMAIN_ID"}
    proc = subprocess.run(
        [sys.executable, "-m", "molmoact2_policy.main_job", "--mode", "graph", "--sim-seconds", "6", "--out", str(out),
         "--checkpoint-cache", str(tiny_checkpoint_dir.parent.parent)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, env=env,
    )
    return proc, out


def test_main_job_closes_the_loop_and_the_arm_moves_within_limits(main_job_run):
    proc, out = main_job_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chunks_published"] > 0
    assert summary["joints_moved"], summary["joint_range_rad"]
    assert summary["limit_violations"] == []
    assert summary["control_rate_hz"] > 0
    # the summary is computed from joint states that stayed inside the embodiment's limits
    emb = load_embodiment("so101")
    assert set(summary["joint_range_rad"]) == set(emb.joint_names)
    for png in ("camera_front.png", "change_mask_front.png", "joint_trajectories.png"):
        assert (out / png).stat().st_size > 1000, f"{png} missing or empty"


def test_main_job_bag_reads_back(main_job_run):
    proc, out = main_job_run
    from mcap.reader import make_reader

    from molmoact2_policy.core.evaluation.bagio import BagReader

    topics = BagReader(out / "bag").topics()
    for topic in ("/action_chunk", "/observation", "/joint_states", "/change_mask/front", "/clock"):
        assert topics[topic].count > 0, f"{topic} not recorded: {sorted(topics)}"
    files = sorted((out / "bag").glob("*.mcap"))
    assert files, "no mcap file in the bag"
    seen = set()
    for f in files:
        with open(f, "rb") as stream:
            for _schema, channel, _message in make_reader(stream).iter_messages(topics=["/action_chunk"]):
                seen.add(channel.topic)
    assert seen == {"/action_chunk"}
    assert (out / "bag" / "metadata.yaml").is_file()
