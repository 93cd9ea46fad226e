"""The episode loop (core.sim.episode_loop): episodes judged from the simulator's task state, a
scripted success counts, a miss times out, bring-up and resets never count against an episode."""

from __future__ import annotations

import pytest

from molmoact2_drivers.core.sim.episode_loop import EpisodeLoop


def state(episode, success=False, seed=None, phase="running"):
    return {"episode": episode, "seed": 100 + episode if seed is None else seed, "success": success, "phase": phase,
            "instruction": "touch the cube"}


def test_an_episode_starts_only_when_the_arms_are_ready_and_bring_up_time_never_counts():
    loop = EpisodeLoop(episodes=1, timeout_s=5.0, settle_s=0.0)
    assert not loop.update(state(0), 0.0, arms_ready=False).events
    assert not loop.update(state(0), 30.0, arms_ready=False).events  # long past the timeout: not started yet
    out = loop.update(state(0), 31.0, arms_ready=True)
    assert [e["event"] for e in out.events] == ["start"] and out.events[0]["start_ns"] == 31_000_000_000
    assert not loop.update(state(0), 35.5, arms_ready=True).events  # 4.5 s into it: still running


def test_a_scripted_success_counts_with_its_time_and_settles_before_the_reset():
    loop = EpisodeLoop(episodes=2, timeout_s=5.0, settle_s=0.5)
    loop.update(state(0), 1.0, True)
    assert not loop.update(state(0, success=True), 3.0, True).reset  # settling: the frames after success are recorded
    out = loop.update(state(0, success=True), 3.5, True)
    assert out.reset and not out.done
    ev = out.events[-1]
    assert ev["event"] == "success" and ev["outcome"] == "success" and ev["stop_ns"] == 3_500_000_000
    r = loop.results[0]
    assert r.success and r.time_to_success_s == pytest.approx(2.0) and r.seed == 100


def test_a_scripted_miss_does_not_count_and_fails_at_the_timeout():
    loop = EpisodeLoop(episodes=1, timeout_s=5.0, settle_s=0.0)
    loop.update(state(0), 0.0, True)
    assert not loop.update(state(0), 4.9, True).events
    out = loop.update(state(0), 5.0, True)
    assert out.done and out.events[-1]["outcome"] == "failure" and "no success" in out.events[-1]["marks"][0]
    assert not loop.results[0].success and loop.results[0].time_to_success_s is None
    assert not loop.update(state(1), 6.0, True).events  # done: nothing more


def test_the_next_episode_is_the_next_sim_episode_never_the_old_one_again():
    loop = EpisodeLoop(episodes=3, timeout_s=5.0, settle_s=0.0)
    loop.update(state(0), 0.0, True)
    assert loop.update(state(0, success=True), 1.0, True).reset
    assert not loop.update(state(0, success=True), 1.1, True).events  # the reset has not landed yet: wait
    out = loop.update(state(1), 1.2, True)
    assert [e["event"] for e in out.events] == ["start"] and out.events[0]["episode"] == 2
    assert loop.update(state(1), 6.2, True).events[-1]["outcome"] == "failure"  # its own timeout, from its own start
    assert [r.seed for r in loop.results] == [100, 101]


def test_an_estop_or_fault_mid_episode_ends_it_as_a_failure_with_the_reason():
    loop = EpisodeLoop(episodes=1, timeout_s=5.0, settle_s=0.0)
    loop.update(state(0), 0.0, True)
    out = loop.update(state(0), 1.0, arms_ready=False)
    assert out.events[-1]["outcome"] == "failure" and "e-stop" in loop.results[0].reason


def test_a_paused_sim_is_not_judged():
    loop = EpisodeLoop(episodes=1, timeout_s=5.0, settle_s=0.0)
    loop.update(state(0), 0.0, True)
    assert not loop.update(state(0, phase="paused"), 50.0, True).events


@pytest.mark.parametrize("kw", [{"episodes": -1, "timeout_s": 1, "settle_s": 0}, {"episodes": 1, "timeout_s": 0, "settle_s": 0},
                                {"episodes": 1, "timeout_s": 1, "settle_s": -1}])
def test_bad_loop_settings_are_refused(kw):
    with pytest.raises(ValueError):
        EpisodeLoop(**kw)
