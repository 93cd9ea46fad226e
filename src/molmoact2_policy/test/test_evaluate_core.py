"""Replay evaluation without a model: metric alignment, topic maps, joint name mapping and
refusals, camera encodings, observations rebuilt with the live synchroniser's rules."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2_common.embodiment import load_embodiment
from molmoact2_policy.core.evaluation import synthetic
from molmoact2_policy.core.evaluation.bagio import BagReader
from molmoact2_policy.core.evaluation.export import SKIP_REASONS, iter_frames
from molmoact2_policy.core.evaluation.evaluate import EvalConfig, EvaluationError, evaluate
from molmoact2_policy.core.evaluation.metrics import Decimated, OpenLoopMetrics
from molmoact2_policy.core.evaluation.stream import ObservationStream, Tick
from molmoact2_policy.core.evaluation.topic_map import TopicMapError, load_topic_map
from molmoact2_policy.core.policy_io import PolicyIO

NS = 1_000_000_000
SO101_JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def _bag(tmp_path, name="bag", joint_names=SO101_JOINTS, **kw):
    spec = synthetic.SyntheticSpec(cameras={"front": "/cameras/front/image_raw", "wrist": "/cameras/wrist/image_raw"},
                                   joint_topic="/joint_states", joint_names=joint_names, **kw)
    synthetic.write_synthetic_bag(tmp_path / name, spec)
    return tmp_path / name, spec


def _metrics_with_truth(shift_steps: int) -> OpenLoopMetrics:
    dt = 1 / 30
    m = OpenLoopMetrics(SO101_JOINTS, ["gripper"], dt, horizon=10)
    t0 = 1_000 * NS
    for i in range(300):  # joint states at 100 Hz for 3 s
        t = t0 + i * NS // 100
        m.add_joints(t, SO101_JOINTS, synthetic.trajectory((t - t0) / NS, 6))
        if i % 10 == 0 and i < 200:  # a chunk every 0.1 s: the true future, shifted by shift_steps
            # step k is the command issued at t + k*dt: the position executed at t + (k+1)*dt
            ts = (t - t0) / NS
            chunk = np.stack([synthetic.trajectory(ts + (k + 1 + shift_steps) * dt, 6) for k in range(10)])
            m.add_prediction(i, t, chunk, 0.01)
    m.finish()
    return m


def test_metrics_score_each_step_against_the_position_executed_one_step_after_it_is_issued():
    exact = _metrics_with_truth(0).summary()
    late = _metrics_with_truth(3).summary()
    arm = slice(0, 5)
    assert exact["chunks_scored"] == 20
    assert max(max(row[arm]) for row in exact["mae_by_step"]) < 1e-3  # only interpolation error
    assert min(np.mean(row[arm]) for row in late["mae_by_step"]) > 10 * max(np.mean(row[arm]) for row in exact["mae_by_step"])
    assert exact["gripper_agreement"] > 0.95
    assert len(exact["mae_by_step"]) == 10 and set(exact["mae_per_joint"]) == set(SO101_JOINTS)


def test_metrics_count_chunks_whose_future_the_bag_does_not_hold():
    m = OpenLoopMetrics(["a"], [], 0.1, horizon=5)
    m.add_joints(0, ["a"], [0.0])
    m.add_joints(NS, ["a"], [1.0])
    m.add_prediction(0, int(0.9 * NS), np.zeros((5, 1)), 0.0)
    m.finish()
    assert m.summary()["chunks_unscored"] == 1 and m.summary()["chunks_scored"] == 0


def test_decimated_keeps_a_bounded_even_sample_of_any_stream():
    d = Decimated(100)
    for i in range(100_000):
        d.add(i)
    assert len(d.items) < 100 and d.items[0] == 0 and d.items == sorted(d.items)


def test_observations_are_rebuilt_at_the_policy_rate_with_the_synchroniser(tmp_path):
    bag, _ = _bag(tmp_path, seconds=1.0, camera_hz=15, joint_hz=50)
    emb = load_embodiment("so101")
    stream = ObservationStream(BagReader(bag), load_topic_map(None, emb), emb)
    ticks = [e for e in stream if isinstance(e, Tick)]
    assert 28 <= len(ticks) <= 30  # 30 Hz over ~1 s
    assert all(t.obs.complete for t in ticks)
    assert ticks[0].obs.joint_names == emb.joint_names
    assert np.diff([t.time_ns for t in ticks]).tolist() == [round(NS / 30)] * (len(ticks) - 1)


@pytest.mark.parametrize("encoding", ["bgr8", "mono8", "yuv422", "jpeg", "png"])
def test_camera_topics_in_any_encoding_decode_to_rgb(tmp_path, encoding):
    bag, spec = _bag(tmp_path, seconds=0.4, encoding=encoding)
    emb = load_embodiment("so101")
    ticks = [e for e in ObservationStream(BagReader(bag), load_topic_map(None, emb), emb) if isinstance(e, Tick)]
    frame = ticks[-1].obs.frames[0].image
    assert frame.shape == (spec.height, spec.width, 3) and frame.dtype == np.uint8


def test_missing_topics_error_lists_the_topics_the_bag_has(tmp_path):
    spec = synthetic.SyntheticSpec(cameras={"front": "/cam/front"}, joint_topic="/arm/joint_states", joint_names=SO101_JOINTS, seconds=0.2)
    synthetic.write_synthetic_bag(tmp_path / "b", spec)
    with pytest.raises(TopicMapError) as err:
        evaluate(EvalConfig(str(tmp_path / "b"), "so101", instruction="x", progress=False))
    text = str(err.value)
    assert "/cameras/front/image_raw" in text and "/cameras/wrist/image_raw" in text and "/joint_states" in text
    assert "/cam/front" in text and "/arm/joint_states" in text  # what the bag does have


def test_other_joint_names_are_refused_naming_the_mismatches(tmp_path):
    bag, _ = _bag(tmp_path, joint_names=["1", "2", "3", "4", "5", "6"], seconds=0.3)
    emb = load_embodiment("so101")
    with pytest.raises(TopicMapError) as err:
        list(ObservationStream(BagReader(bag), load_topic_map(None, emb), emb))
    assert "shoulder_pan" in str(err.value) and "bag joints matching no embodiment joint: 1, 2, 3, 4, 5, 6" in str(err.value)


def test_other_joint_names_and_order_are_mapped_by_name_through_the_topic_map(tmp_path):
    names = ["6", "5", "4", "3", "2", "1"]  # another order, other names
    bag, spec = _bag(tmp_path, joint_names=names, seconds=0.4)
    emb = load_embodiment("so101")
    tmap = load_topic_map("usb_cam_so101", emb)
    tmap.cameras = {"front": "/cameras/front/image_raw", "wrist": "/cameras/wrist/image_raw"}
    ticks = [e for e in ObservationStream(BagReader(bag), tmap, emb) if isinstance(e, Tick)]
    obs = ticks[-1].obs
    assert obs.joint_names == emb.joint_names
    # "1" carried trajectory column 5 in the bag: it must land on shoulder_pan
    t = (obs.joint_stamp_ns - spec.start_ns) / NS
    assert obs.joint_positions[0] == pytest.approx(synthetic.trajectory(t, 6)[5])


def test_topic_maps_for_real_robot_bags_load_against_their_embodiments():
    for name, emb in (("realsense_yam_bimanual", "yam_bimanual"), ("usb_cam_so101", "so101"), ("droid_franka", "franka_droid")):
        e = load_embodiment(emb)
        m = load_topic_map(name, e)
        assert list(m.cameras) == e.model.camera_order and m.joint_states


def test_evaluation_without_an_instruction_is_refused(tmp_path):
    bag, _ = _bag(tmp_path, seconds=0.2)
    with pytest.raises(EvaluationError, match="instruction"):
        evaluate(EvalConfig(str(bag), "so101", progress=False))


def test_a_malformed_joint_state_is_reported_and_the_rest_is_used(tmp_path):
    from molmoact2_policy.core.evaluation.bagio import BagWriter, make_typestore

    store = make_typestore()
    bag, spec = _bag(tmp_path, seconds=0.5)
    # append a second recording of the same set-up with one bad JointState in the middle
    w = BagWriter(tmp_path / "bad", "mcap", store)
    for topic, typ in (("/cameras/front/image_raw", "sensor_msgs/msg/Image"), ("/cameras/wrist/image_raw", "sensor_msgs/msg/Image"),
                       ("/joint_states", "sensor_msgs/msg/JointState")):
        w.add_topic(topic, typ)
    reader = BagReader(bag, store)
    n_joint = 0
    for rec in reader.messages():
        n_joint += rec.topic == "/joint_states"
        if rec.topic == "/joint_states" and n_joint == 10:
            w.write(rec.topic, rec.timestamp_ns, synthetic.joint_state_cdr(store, rec.timestamp_ns, SO101_JOINTS, [0.0] * 5))
        elif rec.topic in w.topics:
            w.write(rec.topic, rec.timestamp_ns, rec.data)
    w.close()
    emb = load_embodiment("so101")
    bad_reader = BagReader(tmp_path / "bad", store)
    ticks = [e for e in ObservationStream(bad_reader, load_topic_map(None, emb), emb) if isinstance(e, Tick)]
    assert len(ticks) >= 12 and all(t.obs.complete for t in ticks)
    assert len(bad_reader.broken) == 1 and "6 names but 5 positions" in bad_reader.broken[0].reason
    assert bad_reader.broken[0].position.startswith("bad_0.mcap @ byte ")


def _export_frames(bag, emb, counts=None):
    counts = counts if counts is not None else dict.fromkeys(SKIP_REASONS, 0)
    stream = ObservationStream(BagReader(bag), load_topic_map(None, emb), emb, emb.control_rate_hz)
    return [f for f in iter_frames(stream, PolicyIO(emb), emb.cameras_in_model_order(), "wire", "x", int(0.2 * NS),
                                   int(0.2 * NS), counts) if f is not None]


def test_action_at_t_is_the_command_issued_at_t_in_both_evaluate_and_export(tmp_path):
    """The LeRobot convention in both: the export's action at frame t is the position executed
    next (frame t+1's state), and the metrics score step k of a chunk from t against the position
    executed at t + (k+1) dt, so a policy that outputs the dataset's own action[t : t+H] scores 0."""
    emb = load_embodiment("so101")
    io = PolicyIO(emb)
    bag, _ = _bag(tmp_path, seconds=2.0, camera_hz=30, joint_hz=90)
    frames = _export_frames(bag, emb)
    step = int(round(NS / emb.control_rate_hz))
    assert len(frames) > 40
    s_index = {j: i for i, j in enumerate(io.state_joints)}
    for a, b in zip(frames, frames[1:]):
        assert b.time_ns - a.time_ns == step
        np.testing.assert_array_equal(a.action, [b.state[s_index[j]] for j in io.action_joints])
    horizon = 8
    m = OpenLoopMetrics(io.action_joints, [g for g in emb.grippers if g in io.action_joints], io.dt, horizon)
    for i, f in enumerate(frames):  # in time order, as evaluate feeds it
        m.add_joints(f.time_ns, io.state_joints, f.state)
        if i + horizon <= len(frames):
            m.add_prediction(i, f.time_ns, np.stack([frames[i + k].action for k in range(horizon)]), 0.0)
    m.finish()
    s = m.summary()
    assert s["chunks_scored"] == len(frames) - horizon and s["chunks_unscored"] == 1
    assert s["samples_by_step"] == [len(frames) - horizon] * (horizon - 1) + [len(frames) - horizon]
    assert max(max(row) for row in s["mae_by_step"]) < 1e-6


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("order", ["per_topic_blocks", "reversed", "interleaved_chunks"])
def test_observations_of_a_bag_in_any_file_order_are_those_of_the_time_ordered_bag(tmp_path, storage, order):
    emb = load_embodiment("so101")
    ref, _ = _bag(tmp_path, "ref", seconds=2.0, storage=storage)
    bag, _ = _bag(tmp_path, "shuffled", seconds=2.0, storage=storage, file_order=order)

    def ticks(b):
        return [(t.time_ns, t.obs.complete, t.obs.stale, t.obs.joint_stamp_ns, tuple(t.obs.camera_stamps_ns),
                 tuple(np.round(t.obs.joint_positions, 12))) for t in ObservationStream(BagReader(b), load_topic_map(None, emb), emb)
                if isinstance(t, Tick)]

    expected = ticks(ref)
    assert len(expected) >= 55 and sum(not c or s for _, c, s, *_ in expected) <= 1
    assert ticks(bag) == expected
