"""The episode event schema, shared by everything that marks episodes in a recording.

One event is a JSON object on ``/episode/event`` (std_msgs/String, ``qos.EPISODE_EVENT``),
recorded with the data; it carries the whole episode as it stands, so the newest event of an
episode is all an export needs. The operator's episode manager (molmoact2_policy.core.episodes)
and the simulated-task episode supervisor (molmoact2_drivers) both write it; the exporter reads it.

    {"event": "start" | "stop" | "success" | "failure" | "discard" | "interrupted" | "leader_lost" | "estop",
     "episode": 3, "instruction": "...", "outcome": <OUTCOMES>, "start_ns": ..., "stop_ns": ... | null,
     "marks": [...], "stamp_ns": ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field

EVENT_TOPIC = "/episode/event"
OUTCOMES = ("recording", "unlabelled", "success", "failure", "discarded", "interrupted", "aborted")
EVENTS = ("start", "stop", "success", "failure", "discard", "interrupted", "leader_lost", "estop")
EXPORTABLE = ("success", "failure")


@dataclass
class Episode:
    index: int  # 1, 2, ... in the session
    instruction: str
    start_ns: int
    stop_ns: int | None = None
    outcome: str = "recording"
    marks: list[str] = field(default_factory=list)

    def as_event(self, event: str, stamp_ns: int) -> dict:
        return {"event": event, "episode": self.index, "instruction": self.instruction, "outcome": self.outcome,
                "start_ns": self.start_ns, "stop_ns": self.stop_ns, "marks": list(self.marks), "stamp_ns": stamp_ns}
