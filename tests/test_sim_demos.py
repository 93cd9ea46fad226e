"""Demonstrations through the real graph (molmoact2-demos): the sim with a task, camera ingestion,
the real driver, the scripted expert and the recorder; the bag holds cameras, joint states,
instruction, success and task state, and the success flips true in every episode."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("mujoco")


@pytest.mark.ros
@pytest.mark.slow
def test_two_seeded_demo_episodes_are_recorded_with_success_in_each(tmp_path):
    from molmoact2_policy.demos import bag_episodes

    out = tmp_path / "demos"
    proc = subprocess.run([sys.executable, "-m", "molmoact2_policy.demos", "--robot", "so101", "--episodes", "2",
                           "--seed", "7", "--out", str(out), "--camera-rate-hz", "10", "--real-time-factor", "0.5",
                           "--camera-width", "96", "--camera-height", "72", "--wall-timeout-s", "150"],
                          capture_output=True, text=True, timeout=200)
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted((out / "logs").glob("*.log"))) if (out / "logs").exists() else ""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + logs
    summary = json.loads((out / "demos.json").read_text())
    assert [r["seed"] for r in summary["results"]] == [7, 8]
    assert all(r["success"] for r in summary["results"])
    bag = bag_episodes(out / "bag")  # read back from the bag itself, not from the expert's word
    for topic in ("/sim/cameras/front/image_raw", "/sim/cameras/wrist/image_raw", "/joint_states", "/sim/joint_states",
                  "/instruction", "/sim/robot/task/success", "/sim/robot/task/state", "/action_chunk"):
        assert topic in bag["topics"], (topic, bag["topics"])
    eps = bag["episodes"]
    assert sorted(eps) == ["0", "1"] and [eps[k]["seed"] for k in ("0", "1")] == [7, 8]
    assert eps["0"]["goals"] != eps["1"]["goals"]  # re-randomised
    for k in ("0", "1"):
        assert eps[k]["success_seen"] and eps[k]["success_topic_true"], eps[k]
        assert eps[k]["instruction"] == "touch the cube"
    assert bag["drivers"]["/driver_status"]["chunks_refused"] == 0
    # the supervisor marked each episode in the bag: the exporter cuts the recording with these
    from molmoact2_policy.core.episodes import EVENT_TOPIC, episodes_from_events
    from molmoact2_policy.core.evaluation.bagio import BagReader

    reader = BagReader(out / "bag")
    labelled, problems = episodes_from_events(str(reader.decode(m).data) for m in reader.messages([EVENT_TOPIC]))
    assert not problems, problems
    assert [(e.index, e.outcome, e.instruction) for e in labelled] == [(1, "success", "touch the cube"), (2, "success", "touch the cube")]
    assert labelled[0].stop_ns <= labelled[1].start_ns  # the reset lies between them, in neither
