"""Real-time chunking's policy-side core (ROS-free, torch-free): the left-over re-timed to the new
observation, the inference delay estimated from measured latency, no prefix across episodes."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2_policy.core.backends.base import RtcInputs
from molmoact2_policy.core.rtc import (DelayEstimator, RtcPlanner, RtcSettings, blend_onto_prefix, left_over,
                                       prefix_weights)

DT = 1 / 30
NS = 1_000_000_000


def test_left_over_is_the_previous_chunks_rest_re_timed_to_the_new_stamp():
    prev = np.stack([np.arange(10.0), 10 * np.arange(10.0)], axis=1)  # step k due at 5 s + k * dt
    stamp = 5 * NS
    same = left_over(prev, stamp, DT, stamp)
    np.testing.assert_allclose(same, prev, atol=1e-6)
    # the new observation is 2.5 steps later: row j = the old path at new_stamp + j * dt
    rest = left_over(prev, stamp, DT, stamp + int(2.5 * DT * NS))
    assert rest.shape == (7, 2) and rest.dtype == np.float32
    np.testing.assert_allclose(rest[:, 0], 2.5 + np.arange(7), atol=1e-5)
    np.testing.assert_allclose(rest[:, 1], 25 + 10 * np.arange(7), atol=1e-4)
    # exactly on a step: no interpolation error
    np.testing.assert_allclose(left_over(prev, stamp, DT, stamp + int(round(3 * DT * NS)))[:, 0], np.arange(3.0, 10.0), atol=1e-5)


def test_left_over_is_none_once_the_previous_chunk_is_past_or_the_stamp_goes_back():
    prev = np.zeros((10, 3))
    assert left_over(prev, 0, DT, int(9.5 * DT * NS)) is None
    assert left_over(prev, 0, DT, int(9 * DT * NS)).shape == (1, 3)
    assert left_over(prev, NS, DT, 0) is None


def test_delay_estimate_follows_a_changing_latency():
    est = DelayEstimator(window=30, percentile=95)
    assert est.steps(DT) == 0  # nothing measured yet
    for _ in range(30):
        est.add(0.050)
    assert est.steps(DT) == 2  # 50 ms = 1.5 steps -> 2
    est.add(0.300)  # one slow chunk among 30 does not set it (a percentile, not one sample)
    assert est.steps(DT) == 2
    for _ in range(5):
        est.add(0.300)  # latency went up: a few chunks later the estimate is up
    assert est.steps(DT) == 9
    for _ in range(30):
        est.add(0.100)  # and back down once the window holds only the new latency
    assert est.steps(DT) == 3


def test_delay_estimate_is_a_high_percentile_of_the_window():
    est = DelayEstimator(window=100, percentile=90)
    for latency in np.linspace(0.010, 0.200, 100):
        est.add(float(latency))
    assert est.latency_s() == pytest.approx(np.percentile(np.linspace(0.010, 0.200, 100), 90))
    est.add(float("nan"))  # a bad measurement is ignored
    assert len(est) == 100


def test_rtc_planner_gives_the_prefix_and_delay_and_never_carries_a_prefix_across_episodes():
    planner = RtcPlanner(RtcSettings(execution_horizon=8, max_guidance_weight=5.0, prefix_attention_schedule="EXP"))
    assert planner.inputs_for(1, 0) is None  # first chunk of an episode: no prefix
    chunk = np.arange(30.0)[:, None] * np.ones((1, 6))
    planner.record(1, 0, chunk, DT, latency_s=0.1)
    rtc = planner.inputs_for(1, int(4 * DT * NS))
    np.testing.assert_allclose(rtc.prev_chunk_left_over[:, 0], np.arange(4.0, 30.0), atol=1e-4)
    assert rtc.inference_delay == 3 and rtc.execution_horizon == 8
    assert rtc.max_guidance_weight == 5.0 and rtc.prefix_attention_schedule == "EXP"
    assert planner.inputs_for(2, int(4 * DT * NS)) is None  # another episode: the old chunk is no prefix
    planner.reset()
    assert planner.inputs_for(1, int(4 * DT * NS)) is None


def test_rtc_settings_refuse_bad_values_naming_them():
    with pytest.raises(ValueError, match="prefix_attention_schedule"):
        RtcSettings(prefix_attention_schedule="linear").validate()
    with pytest.raises(ValueError, match="max_guidance_weight"):
        RtcSettings(max_guidance_weight=0).validate()
    with pytest.raises(ValueError, match="execution_horizon"):
        RtcSettings(execution_horizon=0).validate()


@pytest.mark.parametrize("schedule", ["LINEAR", "EXP", "ZEROS", "ONES"])
@pytest.mark.parametrize("start,end,total", [(3, 10, 30), (0, 10, 30), (9, 20, 30), (10, 10, 30), (12, 8, 30), (5, 40, 30)])
def test_prefix_weights_are_lerobots_rtc_schedules(schedule, start, end, total):
    """The weights the blend uses are those LeRobot's guidance uses (compared with its own code)."""
    torch = pytest.importorskip("torch")
    rtc = pytest.importorskip("lerobot.policies.rtc.modeling_rtc")
    from lerobot.policies.rtc.configuration_rtc import RTCConfig

    theirs = rtc.RTCProcessor(RTCConfig(prefix_attention_schedule=schedule)).get_prefix_weights(start, end, total)
    assert isinstance(theirs, torch.Tensor)
    np.testing.assert_allclose(prefix_weights(start, end, total, schedule), theirs.numpy(), atol=1e-6)


def test_prefix_blend_makes_the_frozen_steps_the_prefix_and_joins_the_rest_by_the_guidance_weights():
    rng = np.random.default_rng(3)
    generated = rng.standard_normal((30, 6)).astype(np.float32)
    prefix = generated[:22] + rng.normal(0, 0.05, (22, 6)).astype(np.float32)  # a guided chunk misses its prefix a little
    rtc = RtcInputs(prev_chunk_left_over=prefix, inference_delay=9, execution_horizon=20)
    out = blend_onto_prefix(generated, rtc)
    assert out.shape == generated.shape and out.dtype == generated.dtype
    np.testing.assert_array_equal(out[:9], prefix[:9])  # the frozen steps are the prefix exactly
    np.testing.assert_array_equal(out[20:], generated[20:])  # beyond the horizon: the model's
    w = np.linspace(1, 0, 13)[1:-1]  # LINEAR between the delay and the horizon
    np.testing.assert_allclose(out[9:20], w[:, None] * prefix[9:20] + (1 - w[:, None]) * generated[9:20], atol=1e-6)
    # a prefix shorter than the horizon cuts it (LeRobot's guidance does the same)
    short = RtcInputs(prev_chunk_left_over=prefix[:12], inference_delay=9, execution_horizon=20)
    out = blend_onto_prefix(generated, short)
    np.testing.assert_array_equal(out[:9], prefix[:9])
    np.testing.assert_array_equal(out[12:], generated[12:])


def test_prefix_blend_is_off_unless_asked_and_refuses_a_prefix_of_other_joints():
    generated = np.zeros((30, 6), np.float32)
    rtc = RtcInputs(prev_chunk_left_over=np.ones((20, 6), np.float32), inference_delay=5, execution_horizon=10)
    assert RtcPlanner(RtcSettings()).shape(generated, rtc) is generated
    assert RtcPlanner(RtcSettings(prefix_blend=True)).shape(generated, None) is generated
    np.testing.assert_array_equal(RtcPlanner(RtcSettings(prefix_blend=True)).shape(generated, rtc)[:5], 1.0)
    with pytest.raises(ValueError, match="does not fit"):
        blend_onto_prefix(generated, RtcInputs(prev_chunk_left_over=np.ones((20, 7), np.float32), inference_delay=5))
