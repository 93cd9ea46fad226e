"""The episode manager's ROS-free core: segmentation, outcomes, re-record, Ctrl-C -> interrupted,
leader lost / e-stop marks, and reading the episodes back from the event texts."""

from __future__ import annotations

import json

import pytest

from molmoact2_policy.core.episodes import EpisodeError, EpisodeManager, episodes_from_events, leader_lost_reason

S = 1_000_000_000


class Clock:
    def __init__(self):
        self.ns = 100 * S

    def __call__(self):
        return self.ns

    def advance(self, seconds):
        self.ns += int(seconds * S)


@pytest.fixture
def session():
    clock = Clock()
    events = []
    mgr = EpisodeManager(clock, events.append, ["pick up the red block", "put it back"])
    return mgr, clock, events


def test_start_stop_mark_segments_the_recording_into_episodes_with_instruction_and_outcome(session):
    mgr, clock, events = session
    mgr.start()
    clock.advance(3.0)
    assert mgr.status()["recording"] and mgr.status()["elapsed_s"] == pytest.approx(3.0)
    mgr.stop()
    mgr.mark_success()
    mgr.next_instruction()
    mgr.start()
    clock.advance(2.0)
    mgr.mark_failure()  # marking while recording stops the episode too
    assert [(e.index, e.instruction, e.outcome) for e in mgr.episodes] == [
        (1, "pick up the red block", "success"), (2, "put it back", "failure")]
    assert mgr.episodes[0].stop_ns - mgr.episodes[0].start_ns == 3 * S
    assert mgr.episodes[1].stop_ns - mgr.episodes[1].start_ns == 2 * S
    assert [e["event"] for e in events] == ["start", "stop", "success", "start", "failure"]
    st = mgr.status()
    assert (st["episodes"], st["successes"], st["failures"], st["recording"]) == (2, 1, 1, False)


def test_every_event_carries_the_whole_episode_so_the_newest_alone_suffices(session):
    mgr, clock, events = session
    mgr.start()
    clock.advance(1.5)
    mgr.stop()
    mgr.mark_success()
    eps, problems = episodes_from_events([json.dumps(events[-1])])  # only the last event reached the bag
    assert not problems
    assert (eps[0].instruction, eps[0].outcome, eps[0].stop_ns - eps[0].start_ns) == ("pick up the red block", "success", int(1.5 * S))


def test_rerecord_discards_the_current_or_the_last_episode_and_it_is_never_a_success(session):
    mgr, clock, events = session
    mgr.start()
    clock.advance(1.0)
    mgr.rerecord()  # while recording: stopped and discarded
    assert mgr.episodes[0].outcome == "discarded" and mgr.current is None
    with pytest.raises(EpisodeError, match="discarded"):
        mgr.mark_success()
    mgr.start()
    clock.advance(1.0)
    mgr.stop()
    mgr.mark_success()
    mgr.rerecord()  # the last one, after its label
    assert [e.outcome for e in mgr.episodes] == ["discarded", "discarded"]
    assert mgr.instruction == "pick up the red block"  # record the same instruction again
    assert events[-1]["event"] == "discard" and events[-1]["outcome"] == "discarded"


def test_ctrl_c_during_an_episode_ends_it_interrupted_not_success(session):
    mgr, clock, events = session
    mgr.start()
    clock.advance(2.0)
    assert "interrupted" in mgr.interrupt("interrupted (shutdown)")
    assert mgr.episodes[0].outcome == "interrupted" and mgr.episodes[0].stop_ns == mgr.episodes[0].start_ns + 2 * S
    assert events[-1]["event"] == "interrupted"
    with pytest.raises(EpisodeError, match="interrupted"):
        mgr.mark_success()
    assert mgr.interrupt() is None  # nothing recording: nothing to do


def test_a_crash_mid_episode_reads_back_as_interrupted(session):
    mgr, clock, events = session
    mgr.start()
    clock.advance(1.0)
    mgr.mark_success()
    mgr.start()  # then the process dies: the bag's newest event of episode 2 is its start
    eps, _ = episodes_from_events(json.dumps(e) for e in events)
    assert [(e.index, e.outcome) for e in eps] == [(1, "success"), (2, "interrupted")]


def test_leader_lost_during_an_episode_aborts_it_and_it_cannot_be_marked_success(session):
    mgr, clock, events = session
    mgr.start()
    reason = leader_lost_reason(json.dumps({"leader": "/leader", "arm": "arm", "state": "lost",
                                            "event": "serial port /dev/ttyACM1 gone", "losses": 1}))
    assert reason.startswith("leader lost (/leader)") and "serial port" in reason
    mgr.abort("leader_lost", reason)
    assert mgr.episodes[0].outcome == "aborted" and mgr.episodes[0].marks == [reason]
    assert events[-1]["event"] == "leader_lost"
    with pytest.raises(EpisodeError, match="aborted"):
        mgr.mark_success()
    assert mgr.abort("estop", "e-stop") is None  # between episodes nothing is marked


def test_estop_during_an_episode_aborts_it(session):
    mgr, clock, events = session
    mgr.start()
    mgr.abort("estop", "e-stop on arm 'arm'")
    assert (mgr.episodes[0].outcome, events[-1]["event"]) == ("aborted", "estop")


def test_teleop_status_connected_is_no_loss_and_bad_text_is_refused_by_name():
    assert leader_lost_reason(json.dumps({"state": "connected", "event": "back"})) is None
    with pytest.raises(ValueError, match="not JSON"):
        leader_lost_reason("lost!")
    with pytest.raises(ValueError, match="no 'state'"):
        leader_lost_reason(json.dumps({"leader": "x"}))


def test_refused_actions_say_why_and_change_nothing(session):
    mgr, clock, events = session
    with pytest.raises(EpisodeError, match="no episode is recording"):
        mgr.stop()
    with pytest.raises(EpisodeError, match="no episode yet"):
        mgr.mark_success()
    mgr.start()
    with pytest.raises(EpisodeError, match="recording already"):
        mgr.start()
    with pytest.raises(EpisodeError, match="stop it before"):
        mgr.next_instruction()
    with pytest.raises(EpisodeError, match="stop it before"):
        mgr.set_instruction("other")
    assert len(events) == 1 and mgr.instruction == "pick up the red block"
    empty = EpisodeManager(clock, events.append)
    with pytest.raises(EpisodeError, match="no instruction"):
        empty.start()
    with pytest.raises(EpisodeError, match="empty instruction"):
        empty.set_instruction("  ")


def test_next_instruction_cycles_through_the_list(session):
    mgr, _, _ = session
    assert "2/2" in mgr.next_instruction() and mgr.instruction == "put it back"
    mgr.next_instruction()
    assert mgr.instruction == "pick up the red block"


def test_unreadable_events_are_reported_not_guessed():
    eps, problems = episodes_from_events(["not json", json.dumps({"episode": 1}),
                                          json.dumps({"episode": 2, "outcome": "great", "start_ns": 1})])
    assert eps == [] and len(problems) == 3 and "outcome 'great'" in problems[2]
