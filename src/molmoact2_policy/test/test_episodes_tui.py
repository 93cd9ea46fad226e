"""The terminal UI without a terminal: the screen it draws for a session's state, and its keys
driving the episode manager's core (the pty test in test_episodes_node.py runs the real thing)."""

from __future__ import annotations

from molmoact2_policy.core.episodes import EpisodeError, EpisodeManager
from molmoact2_policy.episodes_tui import KEYS, handle_key, render


class Session:
    """What the UI drives: ``act(name)`` as the node offers it, over the real core."""

    def __init__(self):
        self.ns = 0
        self.events = []
        self.core = EpisodeManager(lambda: self.ns, self.events.append, ["pick up the red block", "put it back"])
        self.log_lines = []

    def act(self, name):
        try:
            self.log_lines.append(getattr(self.core, name)())
            return True, self.log_lines[-1]
        except EpisodeError as exc:
            self.log_lines.append(f"{name} refused: {exc}")
            return False, str(exc)


def test_screen_shows_episode_count_elapsed_time_instruction_and_the_keys():
    s = Session()
    screen = render({**s.core.status(), "event_subscribers": 0}, s.log_lines)
    assert "episodes 0" in screen and "no episode yet" in screen and "pick up the red block" in screen
    assert "NONE: the episodes are not being recorded" in screen
    for key, (_, label) in KEYS.items():
        assert f"[{key}] {label}" in screen
    handle_key(s, "s")
    s.ns += int(12.5e9)
    screen = render({**s.core.status(), "event_subscribers": 1}, s.log_lines)
    assert "RECORDING episode 1" in screen and "12.5 s" in screen and "NONE" not in screen
    assert "episode 1 recording: 'pick up the red block'" in screen


def test_keys_drive_start_success_next_instruction_failure_rerecord():
    s = Session()
    for k in "sy" "n" "sf" "sr":
        assert handle_key(s, k)
    assert [(e.instruction, e.outcome) for e in s.core.episodes] == [
        ("pick up the red block", "success"), ("put it back", "failure"), ("put it back", "discarded")]
    screen = render(s.core.status(), s.log_lines)
    assert "episodes 3   successes 1   failures 1" in screen and "last episode 3: discarded" in screen


def test_a_refused_key_is_shown_with_its_reason_and_quit_keys_end_the_loop():
    s = Session()
    handle_key(s, "e")
    assert "stop refused: no episode is recording" in render(s.core.status(), s.log_lines)
    assert handle_key(s, "?")  # unknown keys are ignored
    assert not handle_key(s, "q") and not handle_key(s, "\x03")
