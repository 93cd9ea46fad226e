"""Seeded task episodes back to back, judged from the simulator's task state (no ROS).

The episode supervisor node feeds ``EpisodeLoop.update`` every task state the sim publishes
(``core.sim.tasks.TaskStatus.as_dict()``) with the node's clock (simulated time) and whether the
arms are ready (every driver actuating, started, not e-stopped). The loop decides:

- an episode *starts* at the first state of a new sim episode (after a reset) once the arms are
  ready; the very first episode starts when the arms first become ready (bring-up time never
  counts against it);
- it *ends* with ``success`` when the task's latched success appears, or with ``failure`` when
  ``timeout_s`` of simulated time has passed since it started;
- ``settle_s`` after the end (the arm rests on what it reached: the frames a policy learns to stop
  from) the episode is *closed*: its result is final and the loop asks for a reset, or reports
  ``done`` after ``episodes`` results (0 = never done).

Every start and close is an episode event in the recording's schema
(``molmoact2_common.episode_events``): the exporter cuts a demonstration bag into its successful
episodes with them, and an evaluation bag carries its own per-episode outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from molmoact2_common.episode_events import Episode


@dataclass
class EpisodeResult:
    episode: int  # 1, 2, ... (the event's index)
    sim_episode: int  # the sim's episode counter
    seed: int
    success: bool
    time_to_success_s: float | None  # simulated seconds from the episode's start
    duration_s: float  # simulated seconds from start to end
    reason: str = ""  # why a failure failed

    def as_dict(self) -> dict:
        return {"episode": self.episode, "sim_episode": self.sim_episode, "seed": self.seed, "success": self.success,
                "time_to_success_s": None if self.time_to_success_s is None else round(self.time_to_success_s, 4),
                "duration_s": round(self.duration_s, 4), "reason": self.reason}


@dataclass
class LoopActions:
    events: list[dict] = field(default_factory=list)  # episode events to publish, in order
    reset: bool = False  # call the sim's ~/reset_episode now
    done: bool = False  # the requested number of episodes is complete


class EpisodeLoop:
    def __init__(self, episodes: int, timeout_s: float, settle_s: float) -> None:
        if episodes < 0:
            raise ValueError(f"episodes must be >= 0, got {episodes}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if not settle_s >= 0:
            raise ValueError(f"settle_s must be >= 0, got {settle_s}")
        self.episodes, self.timeout_s, self.settle_s = int(episodes), float(timeout_s), float(settle_s)
        self.results: list[EpisodeResult] = []
        self.current: Episode | None = None
        self._sim_episode = -1  # the sim episode being run
        self._started_s = 0.0
        self._seed = 0
        self._ended: tuple[float, bool, float | None, str] | None = None  # (end time, success, time to success, reason)
        self._awaiting_reset = False  # a reset was asked for; the next sim episode is the next episode
        self._used: set[int] = set()  # sim episodes already run (never run one twice)
        self.done = False

    def update(self, state: dict, now_s: float, arms_ready: bool) -> LoopActions:
        out = LoopActions()
        if self.done or state.get("phase", "running") != "running":
            return out
        sim_episode = int(state["episode"])
        if self.current is None:
            if sim_episode in self._used or not arms_ready:
                return out
            self._start(sim_episode, state, now_s, out)
            return out
        if sim_episode != self._sim_episode:
            return out  # a reset we did not ask for mid-episode: the old episode's state is over; wait for it
        if self._ended is None:
            if state.get("success"):
                tts = now_s - self._started_s
                self._ended = (now_s, True, tts, "")
            elif now_s - self._started_s >= self.timeout_s:
                self._ended = (now_s, False, None, f"no success in {self.timeout_s:g} s")
            elif not arms_ready:
                self._ended = (now_s, False, None, "the arms stopped being ready (e-stop, fault or a driver lost)")
        if self._ended is not None and now_s - self._ended[0] >= self.settle_s:
            self._close(now_s, out)
        return out

    def _start(self, sim_episode: int, state: dict, now_s: float, out: LoopActions) -> None:
        self._sim_episode, self._started_s, self._seed = sim_episode, now_s, int(state.get("seed", 0))
        self._used.add(sim_episode)
        self._ended = None
        self.current = Episode(len(self.results) + 1, str(state.get("instruction", "")), _ns(now_s))
        out.events.append(self.current.as_event("start", _ns(now_s)))

    def _close(self, now_s: float, out: LoopActions) -> None:
        end_s, success, tts, reason = self._ended
        ep = self.current
        ep.stop_ns, ep.outcome = _ns(now_s), "success" if success else "failure"
        if reason:
            ep.marks.append(reason)
        out.events.append(ep.as_event(ep.outcome, _ns(now_s)))
        self.results.append(EpisodeResult(ep.index, self._sim_episode, self._seed, success, tts, end_s - self._started_s, reason))
        self.current, self._ended = None, None
        if self.episodes and len(self.results) >= self.episodes:
            self.done = out.done = True
        else:
            out.reset = True

    def status(self) -> dict:
        return {"episode": self.current.index if self.current else len(self.results), "done": self.done,
                "requested": self.episodes, "successes": sum(r.success for r in self.results),
                "results": [r.as_dict() for r in self.results]}


def _ns(t_s: float) -> int:
    return int(round(t_s * 1e9))
