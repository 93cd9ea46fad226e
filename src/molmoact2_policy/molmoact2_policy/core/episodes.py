"""Episodes of a demonstration recording, marked IN THE BAG (ROS-free core of the episode manager).

The manager segments one continuous recording into episodes, each with its instruction and its
outcome. Every change is one *event*, a JSON object published on ``/episode/event``
(std_msgs/String, reliable) that the recorder records with the data. Each event is
self-contained: it carries the whole episode as it stands (``start_ns``, ``stop_ns``,
``outcome``, ``instruction``, ``marks``), so the newest event of an episode is all the export
needs, a lost intermediate event loses nothing, and a crash keeps every episode whose events
reached the bag (the recorder makes its segments durable every second).

    {"event": "start" | "stop" | "success" | "failure" | "discard" | "interrupted" | "leader_lost" | "estop",
     "episode": 3, "instruction": "pick up the red block", "outcome": <OUTCOMES>,
     "start_ns": ..., "stop_ns": ... | null, "marks": ["leader lost: ..."], "stamp_ns": ...}

Outcomes: ``recording`` (started, not stopped), ``unlabelled`` (stopped, not marked yet),
``success``, ``failure``, ``discarded`` (re-recorded), ``interrupted`` (Ctrl-C, reset or a crash
during the episode), ``aborted`` (an e-stop or a leader lost during the episode; the reason is
in ``marks``). Only ``success`` (and ``failure`` on request) is ever exported; an episode whose
newest event in the bag is still ``recording`` counts as ``interrupted``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from molmoact2_common.episode_events import EVENT_TOPIC, EVENTS, EXPORTABLE, OUTCOMES, Episode  # noqa: F401  (the schema)


class EpisodeError(RuntimeError):
    """An operator action that cannot be done now; the message says why (nothing changed)."""


class EpisodeManager:
    """The operator's actions on one session. ``clock()`` gives the recording clock in ns (the
    node's ROS clock, the one the recorder stamps with); ``publish(event_dict)`` sends an event
    (the node publishes it as JSON). Actions raise ``EpisodeError`` and change nothing when they
    make no sense now."""

    def __init__(self, clock: Callable[[], int], publish: Callable[[dict], None],
                 instructions: Iterable[str] = ()) -> None:
        self.clock = clock
        self.publish = publish
        self.instructions = [s.strip() for s in instructions if s and s.strip()]
        self.instruction_index = 0
        self.instruction = self.instructions[0] if self.instructions else ""
        self.episodes: list[Episode] = []

    # ---- state -----------------------------------------------------------------------------
    @property
    def current(self) -> Episode | None:
        """The episode being recorded, or None."""
        return self.episodes[-1] if self.episodes and self.episodes[-1].outcome == "recording" else None

    @property
    def last(self) -> Episode | None:
        return self.episodes[-1] if self.episodes else None

    def count(self, outcome: str) -> int:
        return sum(1 for e in self.episodes if e.outcome == outcome)

    def elapsed_s(self) -> float:
        ep = self.current
        return 0.0 if ep is None else max(0.0, (self.clock() - ep.start_ns) / 1e9)

    def status(self) -> dict:
        ep = self.last
        return {"recording": self.current is not None, "episode": ep.index if ep else 0,
                "outcome": ep.outcome if ep else "", "elapsed_s": self.elapsed_s(), "instruction": self.instruction,
                "episodes": len(self.episodes), "successes": self.count("success"), "failures": self.count("failure"),
                "marks": list(ep.marks) if ep else []}

    def _emit(self, ep: Episode, event: str) -> dict:
        ev = ep.as_event(event, self.clock())
        self.publish(ev)
        return ev

    # ---- actions ---------------------------------------------------------------------------
    def set_instruction(self, text: str) -> str:
        text = (text or "").strip()
        if not text:
            raise EpisodeError("empty instruction refused")
        if self.current is not None:
            raise EpisodeError(f"episode {self.current.index} is recording: stop it before changing the instruction")
        self.instruction = text
        return f"instruction: {text!r}"

    def next_instruction(self) -> str:
        if not self.instructions:
            raise EpisodeError("no instruction list (parameter 'instructions'): set one with set_instruction")
        if self.current is not None:
            raise EpisodeError(f"episode {self.current.index} is recording: stop it before the next instruction")
        self.instruction_index = (self.instruction_index + 1) % len(self.instructions)
        self.instruction = self.instructions[self.instruction_index]
        return f"instruction {self.instruction_index + 1}/{len(self.instructions)}: {self.instruction!r}"

    def start(self) -> str:
        if self.current is not None:
            raise EpisodeError(f"episode {self.current.index} is recording already")
        if not self.instruction:
            raise EpisodeError("no instruction: set one (set_instruction, or parameter 'instructions') before starting")
        ep = Episode(len(self.episodes) + 1, self.instruction, self.clock())
        self.episodes.append(ep)
        self._emit(ep, "start")
        return f"episode {ep.index} recording: {ep.instruction!r}"

    def stop(self) -> str:
        ep = self.current
        if ep is None:
            raise EpisodeError("no episode is recording")
        ep.stop_ns, ep.outcome = self.clock(), "unlabelled"
        self._emit(ep, "stop")
        return f"episode {ep.index} stopped ({(ep.stop_ns - ep.start_ns) / 1e9:.1f} s): mark it success or failure"

    def _label(self, outcome: str) -> str:
        ep = self.last
        if ep is None:
            raise EpisodeError("no episode yet")
        if ep.outcome in ("discarded", "interrupted"):
            raise EpisodeError(f"episode {ep.index} is {ep.outcome}: record a new one")
        if outcome == "success" and ep.outcome == "aborted":
            raise EpisodeError(f"episode {ep.index} was aborted ({'; '.join(ep.marks)}): it cannot be a success; re-record it")
        if ep.outcome == "recording":
            ep.stop_ns = self.clock()
        if ep.outcome != "aborted":
            ep.outcome = outcome
        self._emit(ep, outcome)
        return f"episode {ep.index}: {ep.outcome}"

    def mark_success(self) -> str:
        """The current episode (stopping it) or the last one is a success."""
        return self._label("success")

    def mark_failure(self) -> str:
        return self._label("failure")

    def rerecord(self) -> str:
        """Discard the current episode (stopping it) or the last one; never exported."""
        ep = self.last
        if ep is None:
            raise EpisodeError("no episode to discard")
        if ep.outcome == "discarded":
            raise EpisodeError(f"episode {ep.index} is discarded already")
        if ep.outcome == "recording":
            ep.stop_ns = self.clock()
        ep.outcome = "discarded"
        self._emit(ep, "discard")
        return f"episode {ep.index} discarded: start to record it again ({self.instruction!r})"

    def interrupt(self, reason: str = "interrupted") -> str | None:
        """Ctrl-C, a reset or a shutdown: the current episode ends as 'interrupted' (never a success)."""
        ep = self.current
        if ep is None:
            return None
        ep.stop_ns, ep.outcome = self.clock(), "interrupted"
        ep.marks.append(reason)
        self._emit(ep, "interrupted")
        return f"episode {ep.index} interrupted ({reason})"

    def abort(self, event: str, reason: str) -> str | None:
        """An e-stop or a leader lost during the episode: it stops as 'aborted' with the reason."""
        if event not in ("estop", "leader_lost"):
            raise ValueError(f"abort event '{event}' is not estop or leader_lost")
        ep = self.current
        if ep is None:
            return None
        ep.stop_ns, ep.outcome = self.clock(), "aborted"
        ep.marks.append(reason)
        self._emit(ep, event)
        return f"episode {ep.index} aborted: {reason}"


# ---- the contract of the teleop status topic ------------------------------------------------
def leader_lost_reason(text: str) -> str | None:
    """``teleop_status`` (std_msgs/String, JSON from the leader node): ``{"state": "connected" |
    "lost" | "connecting", "event": ..., "leader": ..., "arm": ...}``. A "lost" state is a leader
    gone: the reason to mark the episode with; anything else, None. Text that is not such JSON
    raises ValueError naming what is wrong."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"teleop status is not JSON: {exc}") from None
    if not isinstance(body, dict) or "state" not in body:
        raise ValueError(f"teleop status has no 'state': {text[:120]!r}")
    if body["state"] != "lost":
        return None
    who = body.get("leader") or body.get("arm") or "leader"
    return f"leader lost ({who}): {body.get('event', '')}".rstrip(": ")


# ---- reading the episodes back from a bag ---------------------------------------------------
@dataclass
class LabelledEpisode:
    index: int
    instruction: str
    outcome: str
    start_ns: int
    stop_ns: int | None
    marks: list[str]


def episodes_from_events(texts: Iterable[str]) -> tuple[list[LabelledEpisode], list[str]]:
    """The session's episodes from the event texts in bag order: the newest event of each
    episode wins. Returns (episodes by index, problems: events that could not be read). An
    episode still 'recording' at the end of the bag (a crash) is 'interrupted'."""
    latest: dict[int, dict] = {}
    problems = []
    for text in texts:
        try:
            ev = json.loads(text)
            n = int(ev["episode"])
            if ev["outcome"] not in OUTCOMES:
                raise ValueError(f"outcome {ev['outcome']!r}")
            int(ev["start_ns"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"unreadable episode event ({type(exc).__name__}: {exc}): {str(text)[:120]!r}")
            continue
        latest[n] = ev
    out = []
    for n in sorted(latest):
        ev = latest[n]
        outcome = "interrupted" if ev["outcome"] == "recording" else ev["outcome"]
        stop = ev.get("stop_ns")
        out.append(LabelledEpisode(n, str(ev.get("instruction", "")), outcome, int(ev["start_ns"]),
                                   None if stop is None else int(stop), list(ev.get("marks") or [])))
    return out, problems
