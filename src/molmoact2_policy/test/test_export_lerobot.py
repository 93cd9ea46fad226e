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


def _bag_reference(bag):
    """The bag read by rosbags' own reader, sorted by time: joint (stamp, positions) and per
    camera topic (stamp, rgb) lists."""
    from rosbags.rosbag2 import Reader

    from molmoact2_policy.core.evaluation.bagio import make_typestore

    store = make_typestore()
    joints, images = [], {}
    with Reader(bag) as r:
        for c, t, raw in r.messages():
            msg = store.deserialize_cdr(raw, c.msgtype)
            if c.topic == "/joint_states":
                joints.append((t, np.asarray(msg.position, np.float64)))
            elif c.msgtype == "sensor_msgs/msg/Image":
                images.setdefault(c.topic, []).append((t, np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3)))
    joints.sort(key=lambda x: x[0])
    for v in images.values():
        v.sort(key=lambda x: x[0])
    return joints, images


def _newest_at_or_before(items, t):
    best = None
    for stamp, value in items:
        if stamp > t:
            break
        best = (stamp, value)
    return best


def _check_frame_by_frame(ds, summary, refs, max_state_age_s):
    """Every dataset frame: its state and images are the bag's newest at or before its time (within
    the bound), its action is the state one frame later, its timestamp its offset in its episode."""
    step = summary["frame_period_ns"]
    hf = ds.hf_dataset.with_format(None)
    checked = 0
    for ep in summary["episodes"]:
        joints, images = refs[ep["bag"]]
        rows = [i for i, e in enumerate(hf["episode_index"]) if e == ep["episode_index"]]
        assert len(rows) == ep["frames"]
        for j, row in enumerate(rows):
            t = ep["first_frame_ns"] + j * step
            item = hf[row]
            assert item["frame_index"] == j and abs(item["timestamp"] - j / ds.meta.fps) < 1e-4
            stamp, q = _newest_at_or_before(joints, t)
            assert t - stamp <= max_state_age_s * 1e9, f"episode {ep['episode_index']} frame {j}: state {t - stamp} ns old"
            np.testing.assert_allclose(item["observation.state"], q, atol=1e-6, err_msg=f"{ep['bag']} frame {j}")
            _, q_next = _newest_at_or_before(joints, t + step)
            np.testing.assert_allclose(item["action"], q_next, atol=1e-6, err_msg=f"{ep['bag']} frame {j} action")
            if j % 4 == 0:  # images: decoding every frame of every episode is slow; a quarter of them
                sample = ds[row]
                for cam, topic in (("front", "/cameras/front/image_raw"), ("wrist", "/cameras/wrist/image_raw")):
                    got = sample[f"observation.images.{cam}"].numpy().transpose(1, 2, 0) * 255
                    errs = [float(np.abs(got - img).mean()) for _, img in images[topic]]
                    _, want = _newest_at_or_before(images[topic], t)
                    err = float(np.abs(got - want).mean())
                    assert err < 12 and err <= min(errs) + 1.0, f"{ep['bag']} frame {j} {cam}: {err} vs best {min(errs)}"
            checked += 1
    return checked


ORDERS = [(s, o) for s in ("mcap", "sqlite3") for o in ("per_topic_blocks", "reversed", "interleaved_chunks")]


def test_export_matches_bag_frame_by_frame_for_adversarial_file_orders(tmp_path, small_so101):
    """One bag per (storage, file order), one export: every frame checked against the bag as
    rosbags reads it (the state and images at the frame's time, the action one frame later)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    bags = []
    for storage, order in ORDERS:
        bag = tmp_path / f"{storage}_{order}"
        _bag(bag, seconds=1.2, storage=storage, file_order=order, instruction=f"{storage} {order}")
        bags.append(str(bag))
    summary = export_lerobot(ExportConfig(bags, str(small_so101), str(tmp_path / "ds"), units="wire", progress=False))
    per_bag = {b["bag"]: b for b in summary["bags"]}
    for b in bags:  # the whole bag is one episode: nothing skipped but the tick before the cameras and the last frame
        assert per_bag[b]["episodes"] == 1 and per_bag[b]["frames"] >= 33, per_bag[b]
        assert per_bag[b]["out_of_order_records"] == 0
    assert not summary["broken_records"]
    ds = LeRobotDataset(summary["repo_id"], root=tmp_path / "ds", video_backend=VIDEO_BACKEND)
    assert ds.num_episodes == len(bags)
    refs = {b: _bag_reference(b) for b in bags}
    assert _check_frame_by_frame(ds, summary, refs, 0.2) == len(ds)
    assert [ds[ds.meta.episodes["dataset_from_index"][e["episode_index"]]]["task"] for e in summary["episodes"]] == [
        f"{s} {o}" for s, o in ORDERS]


def test_export_skips_and_counts_frames_without_fresh_state(tmp_path, small_so101):
    """Joint states stop for 0.5 s mid-bag: the frames without a fresh state are skipped and
    counted by reason, never filled with the last one, and the episode is cut at the gap (so
    every frame's dataset time is its bag time)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    bag = tmp_path / "gap"
    _bag(bag, seconds=1.6, joint_gap=(0.5, 1.0), file_order="per_topic_blocks")
    summary = export_lerobot(ExportConfig([str(bag)], str(small_so101), str(tmp_path / "ds"), units="wire",
                                          max_state_age=0.05, progress=False))
    b = summary["bags"][0]
    skipped = b["skipped"]
    # ticks 0.5..1.0 s: state 0.05..0.2 s old -> state_too_old, older -> stale (the synchroniser's 0.2 s)
    assert skipped["state_too_old"] >= 3 and skipped["stale"] >= 8
    assert skipped["no_action"] == 2  # the frame before the gap and the last one
    assert b["episodes"] == 2 and b["frames"] == sum(e["frames"] for e in summary["episodes"])
    gap_ns = [synthetic.SyntheticSpec.start_ns + int(x * 1e9) for x in (0.5, 1.0)]
    first, second = summary["episodes"]
    assert first["first_frame_ns"] + first["frames"] * summary["frame_period_ns"] <= gap_ns[0] + int(0.05e9)
    assert second["first_frame_ns"] >= gap_ns[1]
    ds = LeRobotDataset(summary["repo_id"], root=tmp_path / "ds", video_backend=VIDEO_BACKEND)
    assert ds.num_episodes == 2
    assert _check_frame_by_frame(ds, summary, {str(bag): _bag_reference(bag)}, 0.05) == len(ds)
