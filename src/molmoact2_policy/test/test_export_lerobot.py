"""Bag -> LeRobot dataset v3.0, read back with LeRobot's own loader (videos decoded by PyAV with
the FFmpeg its wheel bundles: the project's VIDEO_BACKEND)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from molmoact2_common.embodiment import config_root, load_embodiment
from molmoact2_policy.core.evaluation import synthetic
from molmoact2_policy.core.evaluation.export import VIDEO_BACKEND, ExportConfig, ExportError, export_lerobot

pytestmark = [pytest.mark.model, pytest.mark.slow]
SO101_JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


@pytest.fixture(scope="module")
def small_so101(tmp_path_factory):
    """The so101 embodiment with 64x48 cameras (small videos keep the test fast)."""
    raw = yaml.safe_load((config_root() / "embodiments" / "so101.yaml").read_text())
    for cam in raw["cameras"]:
        cam["width"], cam["height"] = 64, 48
    path = tmp_path_factory.mktemp("emb") / "so101_small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _bag(path, seconds=1.0, **kw):
    spec = synthetic.SyntheticSpec(cameras={"front": "/cameras/front/image_raw", "wrist": "/cameras/wrist/image_raw"},
                                   joint_topic="/joint_states", joint_names=SO101_JOINTS, seconds=seconds, camera_hz=30,
                                   joint_hz=90, instruction_topic="/instruction", **kw)
    synthetic.write_synthetic_bag(path, spec)
    return spec


def test_export_reads_back_with_lerobot_dataset_loader(tmp_path, small_so101):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    _bag(tmp_path / "ep0", instruction="pick up the red block")
    _bag(tmp_path / "ep1", seconds=0.6, instruction="put it back")
    summary = export_lerobot(ExportConfig([str(tmp_path / "ep0"), str(tmp_path / "ep1")], str(small_so101),
                                          str(tmp_path / "ds"), repo_id="lab/so101_demo", progress=False))
    frames = [e["frames"] for e in summary["episodes"]]
    assert frames[0] >= 25 and frames[1] >= 14

    ds = LeRobotDataset("lab/so101_demo", root=tmp_path / "ds", video_backend=VIDEO_BACKEND)
    emb = load_embodiment(small_so101)
    assert ds.meta.info.codebase_version == "v3.0" and ds.meta.fps == 30 and ds.meta.robot_type == emb.name
    assert ds.num_episodes == 2 and len(ds) == sum(frames)
    assert ds.meta.video_keys == ["observation.images.front", "observation.images.wrist"]
    assert ds.meta.features["observation.state"]["names"] == emb.model.state_joints
    assert ds.meta.features["action"]["names"] == emb.model.action_joints
    first, second = ds[0], ds[1]
    assert first["observation.images.front"].shape == (3, 48, 64)
    assert first["task"] == "pick up the red block" and ds[frames[0]]["task"] == "put it back"
    # state in the checkpoint's model units (SO-101: degrees with the old calibration's signs/offsets)
    state = first["observation.state"].numpy()
    assert state.shape == (6,)
    wire = emb.model.state_units.to_wire(state.astype(np.float64))
    assert np.all(np.abs(wire[:5]) <= 0.31)  # the demonstration stays within 0.3 rad
    # the action of frame i is what the arm did next: the state of frame i+1
    np.testing.assert_allclose(first["action"].numpy(), second["observation.state"].numpy(), atol=1e-4)
    # the video frames are the recorded images (moving red square on a textured background)
    img = (first["observation.images.front"].numpy().transpose(1, 2, 0) * 255)
    assert img[..., 0].max() > 150 and img[..., 1].mean() < 120


def test_export_refuses_an_existing_output_and_a_bag_without_task_text(tmp_path, small_so101):
    spec = synthetic.SyntheticSpec(cameras={"front": "/cameras/front/image_raw", "wrist": "/cameras/wrist/image_raw"},
                                   joint_topic="/joint_states", joint_names=SO101_JOINTS, seconds=0.2)
    synthetic.write_synthetic_bag(tmp_path / "b", spec)
    with pytest.raises(ExportError, match="task text"):
        export_lerobot(ExportConfig([str(tmp_path / "b")], str(small_so101), str(tmp_path / "ds"), progress=False))
    (tmp_path / "exists").mkdir()
    with pytest.raises(ExportError, match="exists already"):
        export_lerobot(ExportConfig([str(tmp_path / "b")], str(small_so101), str(tmp_path / "exists"), instruction="x", progress=False))


def test_export_command_line_runs_as_a_module(tmp_path, small_so101):
    _bag(tmp_path / "ep", seconds=0.4)
    proc = subprocess.run([sys.executable, "-m", "molmoact2_policy.core.evaluation.cli", "export", str(tmp_path / "ep"),
                           "-e", str(small_so101), "-o", str(tmp_path / "ds"), "--units", "wire", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ds" / "meta" / "info.json").exists()
