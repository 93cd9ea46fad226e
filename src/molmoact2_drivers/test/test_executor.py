"""Chunk executor: timing on a passed-in clock, late-step dropping, blending, interpolation, hold."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2_drivers.core.executor import Chunk, ChunkExecutor, ChunkRefused


def ramp(h, j=2, start=0.0, step=0.1):
    return start + step * np.arange(h)[:, None] * np.ones((1, j))


def test_step_k_is_due_at_stamp_plus_k_dt_on_the_given_clock():
    ex = ChunkExecutor(2, "replace")
    assert ex.submit(Chunk(100.0, 0.1, ramp(5)), 100.0, np.zeros(2)).accepted
    for k in range(5):
        np.testing.assert_allclose(ex.target(100.0 + 0.1 * k).target, 0.1 * k)


def test_targets_are_interpolated_linearly_between_steps_at_the_servo_rate():
    ex = ChunkExecutor(2, "replace")
    ex.submit(Chunk(0.0, 1 / 30, ramp(10)), 0.0, np.zeros(2))
    t = np.arange(0, 9 / 30, 0.01)  # 100 Hz servo over a 30 Hz chunk
    out = np.array([ex.target(x).target[0] for x in t])
    np.testing.assert_allclose(out, 0.1 * t * 30, atol=1e-12)


def test_steps_already_past_when_the_chunk_arrives_are_dropped_and_counted():
    ex = ChunkExecutor(2, "replace")
    res = ex.submit(Chunk(0.0, 0.1, ramp(10)), 0.35, np.zeros(2))  # arrives 350 ms late
    assert res.accepted and res.steps_dropped_late == 4 and res.steps_kept == 6
    # the path starts from where the arm is, then joins step 4 when it is due
    np.testing.assert_allclose(ex.target(0.35).target, 0.0)
    np.testing.assert_allclose(ex.target(0.4).target, 0.4)
    assert ex.steps_dropped_late == 4


def test_a_chunk_entirely_in_the_past_is_refused_as_stale():
    ex = ChunkExecutor(2)
    res = ex.submit(Chunk(0.0, 0.1, ramp(3)), 5.0, np.zeros(2))
    assert not res.accepted and res.steps_dropped_late == 3 and "past" in res.reason
    assert ex.target(5.0).target is None


def test_nan_or_inf_or_bad_shape_chunks_are_refused():
    ex = ChunkExecutor(2)
    bad = ramp(3)
    bad[1, 0] = np.nan
    with pytest.raises(ChunkRefused, match="NaN"):
        ex.submit(Chunk(0.0, 0.1, bad), 0.0, np.zeros(2))
    bad[1, 0] = np.inf
    with pytest.raises(ChunkRefused):
        ex.submit(Chunk(0.0, 0.1, bad), 0.0, np.zeros(2))
    with pytest.raises(ChunkRefused, match="shape"):
        ex.submit(Chunk(0.0, 0.1, np.zeros((3, 3))), 0.0, np.zeros(2))


def test_a_chunk_stamped_far_in_the_future_is_refused_as_a_clock_mismatch():
    ex = ChunkExecutor(2, max_future_s=2.0)
    with pytest.raises(ChunkRefused, match="future"):
        ex.submit(Chunk(1.7e9, 0.1, ramp(3)), 100.0, np.zeros(2))


def test_when_the_chunk_runs_out_the_final_target_is_reported_then_nothing_never_zero():
    ex = ChunkExecutor(2, "replace")
    ex.submit(Chunk(0.0, 0.1, ramp(3, start=1.0)), 0.0, np.zeros(2))
    r = ex.target(0.5)
    assert r.exhausted
    np.testing.assert_allclose(r.target, 1.2)  # the last step, not zeros or a mean
    assert ex.target(0.6).target is None and not ex.running


def test_replace_takes_over_at_once_from_the_current_command_without_a_jump():
    ex = ChunkExecutor(1, "replace")
    ex.submit(Chunk(0.0, 0.1, np.zeros((20, 1))), 0.0, np.zeros(1))
    ex.submit(Chunk(0.5, 0.1, np.ones((10, 1))), 0.5, np.zeros(1))
    np.testing.assert_allclose(ex.target(0.5).target, 1.0)
    ex2 = ChunkExecutor(1, "replace")
    ex2.submit(Chunk(0.0, 0.1, np.zeros((20, 1))), 0.0, np.zeros(1))
    ex2.submit(Chunk(0.6, 0.1, np.ones((10, 1))), 0.5, np.zeros(1))  # first step due in 100 ms
    np.testing.assert_allclose(ex2.target(0.55).target, 0.5)  # linear from the current command


def test_crossfade_blends_linearly_from_the_old_path_to_the_new_one():
    ex = ChunkExecutor(1, "crossfade", crossfade_s=0.2)
    ex.submit(Chunk(0.0, 0.1, np.zeros((30, 1))), 0.0, np.zeros(1))
    ex.submit(Chunk(1.0, 0.1, np.ones((10, 1))), 1.0, np.zeros(1))
    np.testing.assert_allclose(ex.target(1.0).target, 0.0, atol=1e-12)
    np.testing.assert_allclose(ex.target(1.05).target, 0.25, atol=1e-12)
    np.testing.assert_allclose(ex.target(1.1).target, 0.5, atol=1e-12)
    np.testing.assert_allclose(ex.target(1.2).target, 1.0, atol=1e-12)
    np.testing.assert_allclose(ex.target(1.5).target, 1.0, atol=1e-12)


def test_temporal_ensembling_weights_older_chunks_exponentially():
    ex = ChunkExecutor(1, "ensemble", ensemble_coeff=0.5)
    ex.submit(Chunk(0.0, 0.1, np.zeros((30, 1))), 0.0, np.zeros(1))
    ex.submit(Chunk(0.0, 0.1, np.ones((30, 1))), 0.0, np.zeros(1))
    w0, w1 = 1.0, np.exp(-0.5)
    np.testing.assert_allclose(ex.target(0.5).target, w1 / (w0 + w1))
    # once the oldest has run out only the newer chunk counts
    ex.submit(Chunk(2.5, 0.1, np.full((10, 1), 2.0)), 2.5, np.zeros(1))
    assert ex.target(3.0).target[0] == pytest.approx(2.0)


def test_a_stalled_clock_holds_the_same_target_instead_of_racing():
    ex = ChunkExecutor(2, "replace")
    ex.submit(Chunk(0.0, 0.1, ramp(10)), 0.0, np.zeros(2))
    first = ex.target(0.25).target
    for _ in range(100):  # a paused simulation: the servo loop keeps ticking, the clock does not
        np.testing.assert_array_equal(ex.target(0.25).target, first)


def test_a_clock_jumping_backwards_drops_the_chunks():
    ex = ChunkExecutor(2, "replace")
    ex.submit(Chunk(10.0, 0.1, ramp(10)), 10.0, np.zeros(2))
    ex.target(10.3)
    r = ex.target(2.0)
    assert r.clock_jumped_back and r.target is None and not ex.running


def test_execute_steps_keeps_only_the_first_steps_of_each_chunk():
    ex = ChunkExecutor(2, "replace", execute_steps=3)
    ex.submit(Chunk(0.0, 0.1, ramp(10)), 0.0, np.zeros(2))
    r = ex.target(0.15)
    assert r.steps_remaining == 1
    r = ex.target(0.25)
    assert r.exhausted
    np.testing.assert_allclose(r.target, 0.2)
