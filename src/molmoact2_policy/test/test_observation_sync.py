"""Observation synchroniser: newest frames in model order, joints merged by name, staleness by
age and skew per source, with explicit times (as bag replay drives it)."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2_policy.core.observation_sync import NS, ObservationSynchronizer, SyncError

MS = 1_000_000


def _img(v):
    return np.full((4, 6, 3), v, np.uint8)


def _sync(**kw):
    args = dict(
        camera_order=["top", "left", "right"],
        joint_sources=["left", "right"],
        joint_order=["left_j1", "left_g", "right_j1", "right_g"],
        camera_max_age=0.2, camera_max_skew=0.05, joint_max_age=0.2, joint_max_skew=0.05,
    )
    args.update(kw)
    return ObservationSynchronizer(**args)


def _feed_all(s, t):
    for i, c in enumerate(["right", "top", "left"]):
        s.add_frame(c, _img(i), t)
    s.add_joint_state("right", ["right_g", "right_j1"], [0.5, 2.0], t)
    s.add_joint_state("left", ["left_j1", "left_g"], [1.0, 0.25], t)


def test_frames_come_out_in_model_order_with_their_capture_stamps():
    s = _sync()
    s.add_frame("right", _img(3), 10 * NS + 3)
    s.add_frame("top", _img(1), 10 * NS + 1)
    s.add_frame("left", _img(2), 10 * NS + 2)
    s.add_joint_state("left", ["left_j1", "left_g"], [0, 0], 10 * NS)
    s.add_joint_state("right", ["right_j1", "right_g"], [0, 0], 10 * NS)
    o = s.assemble(10 * NS + 5 * MS)
    assert o.complete and not o.stale
    assert o.camera_names == ["top", "left", "right"]
    assert [int(f.image[0, 0, 0]) for f in o.frames] == [1, 2, 3]
    assert o.camera_stamps_ns == [10 * NS + 1, 10 * NS + 2, 10 * NS + 3]


def test_newest_frame_wins_and_out_of_order_frames_are_ignored():
    s = _sync()
    _feed_all(s, 5 * NS)
    s.add_frame("top", _img(50), 5 * NS + 10 * MS)
    s.add_frame("top", _img(99), 5 * NS + 5 * MS)  # older, arrives late
    o = s.assemble(5 * NS + 20 * MS)
    assert int(o.frames[0].image[0, 0, 0]) == 50


def test_joint_states_from_two_arms_are_merged_by_name_in_embodiment_order():
    s = _sync()
    _feed_all(s, NS)
    o = s.assemble(NS + MS)
    assert o.joint_names == ["left_j1", "left_g", "right_j1", "right_g"]
    np.testing.assert_array_equal(o.joint_positions, [1.0, 0.25, 2.0, 0.5])
    assert [j.name for j in o.joint_sources] == ["left", "right"]


def test_merged_joint_stamp_is_the_oldest_source():
    s = _sync()
    _feed_all(s, NS)
    s.add_joint_state("left", ["left_j1", "left_g"], [1, 1], NS + 10 * MS)
    o = s.assemble(NS + 20 * MS)
    assert o.joint_stamp_ns == NS
    assert [j.stamp_ns for j in o.joint_sources] == [NS + 10 * MS, NS]


def test_velocity_and_effort_are_merged_only_when_every_source_reports_them():
    s = _sync()
    s.add_joint_state("left", ["left_j1", "left_g"], [1, 2], NS, velocities=[0.1, 0.2])
    s.add_joint_state("right", ["right_j1", "right_g"], [3, 4], NS, velocities=[0.3, 0.4], efforts=[])
    o = s.assemble(NS)
    np.testing.assert_array_equal(o.joint_velocities, [0.1, 0.2, 0.3, 0.4])
    assert o.joint_efforts is None


def test_joint_name_reported_by_two_sources_is_refused():
    s = _sync()
    s.add_joint_state("left", ["left_j1", "left_g"], [0, 0], NS)
    with pytest.raises(SyncError, match="unique across the robot"):
        s.add_joint_state("right", ["left_j1"], [0], NS)


def test_bad_joint_and_frame_input_is_refused_with_a_message():
    s = _sync()
    with pytest.raises(SyncError, match="2 names but 1 positions"):
        s.add_joint_state("left", ["a", "b"], [0], NS)
    with pytest.raises(SyncError, match="unknown joint-state source 'middle'"):
        s.add_joint_state("middle", ["a"], [0], NS)
    with pytest.raises(SyncError, match="unknown camera 'wrist'"):
        s.add_frame("wrist", _img(0), NS)
    with pytest.raises(SyncError, match="uint8 RGB"):
        s.add_frame("top", np.zeros((4, 4), np.uint8), NS)
    with pytest.raises(SyncError, match="camera_max_age"):
        _sync(camera_max_age=0)


def test_camera_older_than_max_age_is_stale_and_named():
    s = _sync()
    _feed_all(s, NS)
    for c in ("top", "right"):
        s.add_frame(c, _img(0), NS + 300 * MS)
    s.add_joint_state("left", ["left_j1", "left_g"], [0, 0], NS + 300 * MS)
    s.add_joint_state("right", ["right_j1", "right_g"], [0, 0], NS + 300 * MS)
    o = s.assemble(NS + 300 * MS)
    assert [c.stale for c in o.cameras] == [False, True, False]
    assert o.stale
    reasons = o.stale_reasons()
    assert list(reasons) == ["camera:left"] and "max_age" in reasons["camera:left"]


def test_camera_skewed_beyond_max_skew_is_stale_even_when_young():
    s = _sync(camera_max_age=1.0)
    _feed_all(s, NS)
    s.add_frame("top", _img(0), NS + 80 * MS)
    s.add_frame("left", _img(0), NS + 80 * MS)
    o = s.assemble(NS + 90 * MS)
    assert [c.stale for c in o.cameras] == [False, False, True]
    assert "max_skew" in o.stale_reasons()["camera:right"]


def test_one_arm_driver_lagging_the_other_is_stale_by_skew():
    s = _sync(joint_max_age=1.0)
    _feed_all(s, NS)
    s.add_joint_state("left", ["left_j1", "left_g"], [0, 0], NS + 60 * MS)
    o = s.assemble(NS + 61 * MS)
    assert [j.stale for j in o.joint_sources] == [False, True]
    assert "max_skew" in o.stale_reasons()["joints:right"]


def test_dead_joint_source_goes_stale_by_age():
    s = _sync()
    _feed_all(s, NS)
    o = s.assemble(NS + 201 * MS)
    assert all(j.stale for j in o.joint_sources) and all(c.stale for c in o.cameras)
    assert not s.assemble(NS + 200 * MS).stale  # exactly max_age is still fresh


def test_never_received_sources_make_the_observation_incomplete():
    s = _sync()
    s.add_frame("top", _img(0), NS)
    o = s.assemble(NS)
    assert not o.complete
    assert o.stale_reasons()["camera:left"] == "never received"
    assert o.stale_reasons()["joints:left"] == "never received"


def test_missing_joints_are_reported():
    s = _sync()
    _feed_all(s, NS)
    s.add_joint_state("right", ["right_j1"], [0], NS)  # the gripper dropped out
    o = s.assemble(NS)
    assert o.missing_joints == ["right_g"] and not o.complete
    assert "right_g" in o.stale_reasons()["joints"]


def test_camera_that_returns_is_fresh_again_without_restart():
    s = _sync()
    _feed_all(s, NS)
    assert s.assemble(NS + 500 * MS).cameras[0].stale
    _feed_all(s, NS + 600 * MS)
    o = s.assemble(NS + 610 * MS)
    assert not o.stale and o.complete


def test_recorded_stamps_replay_gives_the_same_staleness_as_live():
    # bag replay: the same stamps give the same observation whatever the wall clock
    log = []
    for run in range(2):
        s = _sync()
        for k in range(5):
            t = NS + k * 33 * MS
            _feed_all(s, t)
            if k == 3:
                s.add_frame("left", _img(7), t - 100 * MS)  # ignored: older
            o = s.assemble(t + 2 * MS)
            log.append((run, [c.stamp_ns for c in o.cameras], o.stale))
    assert [x[1:] for x in log[:5]] == [x[1:] for x in log[5:]]


def test_any_source_name_is_accepted_when_sources_are_not_fixed():
    s = ObservationSynchronizer(["top"], joint_sources=[], joint_order=[])
    s.add_frame("top", _img(0), NS)
    s.add_joint_state("/so100/joint_states", ["a", "b"], [1, 2], NS)
    o = s.assemble(NS)
    assert o.complete and o.joint_names == ["a", "b"]


def test_clock_jumping_back_resets_the_synchroniser():
    """A replay looping (/clock restarts): the new loop's inputs, stamped earlier than the last ones
    kept, are taken again instead of being dropped as out of order, and nothing from before the jump
    is passed on."""
    s = _sync()
    _feed_all(s, 100 * NS)
    before = s.assemble(100 * NS + 5 * MS)
    assert before.complete and not before.stale
    assert not s.note_time(100 * NS + 5 * MS)
    # the clock restarts at 1 s: the synchroniser forgets the inputs of the previous loop
    assert s.note_time(1 * NS)
    o = s.assemble(1 * NS)
    assert not o.complete and s.clock_resets == 1
    assert all(f is None for f in o.frames)
    # the new loop's frames and joint states (stamped long before the last kept ones) are taken
    s.add_frame("top", _img(77), 1 * NS)
    s.add_frame("left", _img(78), 1 * NS)
    s.add_joint_state("left", ["left_j1", "left_g"], [3.0, 0.5], 1 * NS)
    assert not s.assemble(1 * NS + 5 * MS).complete  # 'right' and the right arm: never seen in this loop
    s.add_frame("right", _img(79), 1 * NS)
    s.add_joint_state("right", ["right_j1", "right_g"], [4.0, 0.75], 1 * NS)
    o = s.assemble(1 * NS + 10 * MS)
    assert o.complete and not o.stale
    assert [int(f.image[0, 0, 0]) for f in o.frames] == [77, 78, 79]
    assert o.camera_stamps_ns == [1 * NS] * 3
    assert list(o.joint_positions) == [3.0, 0.5, 4.0, 0.75]
    # a clock moving forward never resets
    assert not s.note_time(1 * NS + 20 * MS)
    assert s.clock_resets == 1 and s.assemble(1 * NS + 20 * MS).complete


def test_a_frame_arriving_after_the_clock_jumped_back_is_taken_at_once():
    s = _sync()
    _feed_all(s, 100 * NS)
    s.note_time(100 * NS)
    assert s.note_time(2 * NS)  # the camera node tells the time before adding each input
    s.add_frame("top", _img(42), 2 * NS)
    o = s.assemble(2 * NS + MS)
    assert o.frames[0] is not None and int(o.frames[0].image[0, 0, 0]) == 42
