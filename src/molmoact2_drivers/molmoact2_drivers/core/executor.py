"""Chunk executor: turns action chunks into a servo-rate target, on a clock it is given.

Timing. Step k of a chunk is due at ``stamp + k * dt`` on the node's clock (wall time on a
robot, ``/clock`` in simulation and replay). The executor never reads a clock itself: every call
passes ``now`` (seconds), so the same code runs on wall time, simulated time and in tests. Steps
already in the past when a chunk arrives are dropped, measured from ``now`` (not from a latency
estimate), and counted.

Blending. A new chunk that overlaps the running one is blended:

- ``replace``: the new chunk takes over at once (from the current target, linearly to its first
  future step, so the target never jumps);
- ``crossfade``: the target fades linearly from the old chunk's path to the new one's over
  ``crossfade_s`` seconds;
- ``ensemble``: exponential temporal ensembling (ACT): every chunk that still covers ``now``
  contributes with weight ``exp(-coeff * i)``, ``i = 0`` for the oldest.

Each chunk's path starts at an anchor, the position commanded at the moment it arrived, so a
chunk whose first future step is far away is approached linearly, never jumped to.

Interpolation. Targets are interpolated linearly between step times, so a 30 Hz chunk drives a
100 or 250 Hz servo loop smoothly.

Hold. When every chunk has run out, ``target()`` reports ``exhausted`` and the caller holds the
last commanded position (never zeros, never a dataset mean: both made MolmoAct2 jump on SO-101
arms, LeRobot PR #4223 / #4454). A clock that stalls (a paused simulator) yields the same target
again: the arm holds instead of racing; a clock that jumps backwards drops the chunks (hold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

BLENDING_MODES = ("replace", "crossfade", "ensemble")


class ChunkRefused(ValueError):
    """A chunk the executor will not run; the message says why."""


@dataclass
class Chunk:
    """One chunk in the executor's joint order: ``positions`` is (horizon, joints)."""

    stamp: float
    dt: float
    positions: np.ndarray
    sequence: int = 0


@dataclass
class SubmitResult:
    accepted: bool
    steps_dropped_late: int = 0
    steps_kept: int = 0
    reason: str = ""


@dataclass
class TargetResult:
    """The executor's output at one tick. ``target`` is None when nothing is running (hold);
    on the tick the last chunk runs out it is the chunk's final target and ``exhausted`` is set."""

    target: np.ndarray | None
    exhausted: bool = False
    active_sequence: int = 0
    steps_remaining: int = 0
    clock_jumped_back: bool = False


@dataclass
class _Path:
    """A chunk as a piecewise-linear path: knot times (ascending) and positions."""

    times: np.ndarray
    points: np.ndarray
    sequence: int
    arrived: float
    step_times: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def end(self) -> float:
        return float(self.times[-1])

    def at(self, t: float) -> np.ndarray:
        times = self.times
        if t <= times[0]:
            return self.points[0].copy()
        if t >= times[-1]:
            return self.points[-1].copy()
        i = int(np.searchsorted(times, t, side="right"))  # times[i-1] <= t < times[i]
        t0, t1 = times[i - 1], times[i]
        w = (t - t0) / (t1 - t0)
        return self.points[i - 1] + w * (self.points[i] - self.points[i - 1])

    def steps_remaining(self, t: float) -> int:
        return int(np.count_nonzero(self.step_times > t))


class ChunkExecutor:
    """Chunk timing, late-step dropping, blending, interpolation and hold, for one arm."""

    def __init__(
        self,
        n_joints: int,
        blending: str = "crossfade",
        crossfade_s: float = 0.2,
        ensemble_coeff: float = 0.5,
        execute_steps: int = 0,
        max_future_s: float = 2.0,
    ) -> None:
        if blending not in BLENDING_MODES:
            raise ValueError(f"blending must be one of {', '.join(BLENDING_MODES)}, got {blending!r}")
        if n_joints <= 0:
            raise ValueError("n_joints must be > 0")
        if crossfade_s < 0 or not math.isfinite(crossfade_s):
            raise ValueError(f"crossfade_s must be >= 0, got {crossfade_s}")
        if ensemble_coeff < 0 or not math.isfinite(ensemble_coeff):
            raise ValueError(f"ensemble_coeff must be >= 0, got {ensemble_coeff}")
        if execute_steps < 0:
            raise ValueError(f"execute_steps must be >= 0 (0: all), got {execute_steps}")
        self.n_joints = n_joints
        self.blending = blending
        self.crossfade_s = float(crossfade_s)
        self.ensemble_coeff = float(ensemble_coeff)
        self.execute_steps = int(execute_steps)
        self.max_future_s = float(max_future_s)
        self._paths: list[_Path] = []
        self._last_target: np.ndarray | None = None
        self._last_now: float | None = None
        self.steps_dropped_late = 0

    # -- input ------------------------------------------------------------------------------
    def submit(self, chunk: Chunk, now: float, current: np.ndarray | None) -> SubmitResult:
        """Add a chunk at time ``now``; ``current`` is the position commanded right now (the anchor).

        ``current=None`` gives the chunk no anchor (its path holds its first future step until
        that step is due): the arming ramp, not the executor, then brings the arm onto it.

        Raises ChunkRefused for a malformed chunk. A chunk whose every step is already past is
        refused with ``accepted=False`` (its steps are counted as dropped late).
        """
        pos = np.asarray(chunk.positions, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] != self.n_joints or pos.shape[0] == 0:
            raise ChunkRefused(f"chunk positions have shape {pos.shape}, expected (horizon >= 1, {self.n_joints})")
        if not np.all(np.isfinite(pos)):
            raise ChunkRefused("chunk holds NaN or inf targets")
        if not (math.isfinite(chunk.dt) and chunk.dt > 0) and pos.shape[0] > 1:
            raise ChunkRefused(f"chunk dt = {chunk.dt}: must be > 0")
        if not math.isfinite(chunk.stamp):
            raise ChunkRefused("chunk stamp is not finite")
        if chunk.stamp - now > self.max_future_s:
            raise ChunkRefused(
                f"chunk stamped {chunk.stamp - now:.3f} s in the future (limit {self.max_future_s} s): "
                "the policy's clock and the driver's disagree (use_sim_time on one side only?)")
        if self.execute_steps:
            pos = pos[: self.execute_steps]
        step_times = chunk.stamp + np.arange(pos.shape[0]) * (chunk.dt if pos.shape[0] > 1 else 0.0)
        future = step_times >= now
        dropped = int(pos.shape[0] - np.count_nonzero(future))
        self.steps_dropped_late += dropped
        if not np.any(future):
            return SubmitResult(False, dropped, 0,
                                f"all {pos.shape[0]} steps are already past (chunk {chunk.sequence} stamped "
                                f"{now - chunk.stamp:.3f} s ago, last step due {now - step_times[-1]:.3f} s ago)")
        st = step_times[future]
        pts = pos[future]
        self._prune(now)
        if current is not None and st[0] > now:
            anchor = np.asarray(current, dtype=np.float64)
            times = np.concatenate([[now], st])
            points = np.vstack([anchor[None, :], pts])
        else:
            times, points = st, pts
        path = _Path(times, points, int(chunk.sequence), float(now), st)
        if self.blending == "replace":
            self._paths = [path]
        elif self.blending == "crossfade":
            # keep the path being faded from: the newest one (itself possibly mid-fade, frozen)
            self._paths = [self._frozen_blend(now)] if self._paths else []
            self._paths.append(path)
        else:
            self._paths.append(path)
        self._last_now = now if self._last_now is None else self._last_now
        return SubmitResult(True, dropped, int(len(st)))

    def clear(self) -> None:
        """Drop every chunk (the caller holds)."""
        self._paths = []

    # -- output -----------------------------------------------------------------------------
    def target(self, now: float) -> TargetResult:
        jumped = self._last_now is not None and now < self._last_now - 1e-9
        self._last_now = now
        if jumped:
            self._paths = []
            return TargetResult(None, True, 0, 0, clock_jumped_back=True)
        if not self._paths:
            return TargetResult(None, False)
        end = max(p.end for p in self._paths)
        if now > end:
            # run out: the final target of the blend (the caller holds it from now on)
            final = self._evaluate(end)
            self._paths = []
            self._last_target = final
            return TargetResult(final, True)
        self._prune(now)
        q = self._evaluate(now)
        self._last_target = q
        newest = self._paths[-1]
        return TargetResult(q, False, newest.sequence, newest.steps_remaining(now))

    @property
    def running(self) -> bool:
        return bool(self._paths)

    # -- internals --------------------------------------------------------------------------
    def _prune(self, now: float) -> None:
        if self.blending == "replace":
            self._paths = self._paths[-1:]
        elif self.blending == "crossfade":
            if len(self._paths) == 2 and now >= self._paths[1].arrived + self.crossfade_s:
                self._paths = self._paths[1:]
        else:
            keep = [p for p in self._paths if p.end >= now]
            self._paths = keep if keep else self._paths[-1:]

    def _evaluate(self, now: float) -> np.ndarray:
        paths = self._paths
        if self.blending == "replace" or len(paths) == 1:
            return paths[-1].at(now)
        if self.blending == "crossfade":
            old, new = paths[-2], paths[-1]
            w = 1.0 if self.crossfade_s == 0 else min(1.0, max(0.0, (now - new.arrived) / self.crossfade_s))
            return (1.0 - w) * old.at(now) + w * new.at(now)
        covering = [p for p in paths if p.end >= now] or paths[-1:]
        weights = np.exp(-self.ensemble_coeff * np.arange(len(covering)))
        stacked = np.stack([p.at(now) for p in covering])
        return (weights[:, None] * stacked).sum(axis=0) / weights.sum()

    def _frozen_blend(self, now: float) -> _Path:
        """The current blended path, sampled from ``now`` on, as one path (a fade from a fade)."""
        if len(self._paths) == 1:
            return self._paths[0]
        old, new = self._paths[-2], self._paths[-1]
        knots = np.unique(np.concatenate([[now], old.times[old.times > now], new.times[new.times > now],
                                          [new.arrived + self.crossfade_s]]))
        knots = knots[knots >= now]
        pts = np.stack([self._evaluate(t) for t in knots])
        return _Path(knots, pts, new.sequence, new.arrived, new.step_times)
