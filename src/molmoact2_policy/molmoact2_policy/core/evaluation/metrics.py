"""Open-loop metrics: each predicted chunk against what the robot actually did next.

What "the action at t" is (the LeRobot convention, shared with ``export.py``): the action at
t is the command issued at t, i.e. the position the arm executes next. Step k of a chunk
predicted from the observation at time t is the command issued at t + k*dt (the ActionChunk
contract: due at header.stamp + k*dt), so its ground truth is the executed joint position one
step later, at t + (k+1)*dt, linearly interpolated between the recorded joint states. A policy
that outputs a LeRobot dataset's own ``action[t : t+H]`` scores zero error on the bag it was
exported from. A chunk is scored once the recording has passed its last step's ground-truth
time (so memory holds only the chunks still in flight and a short joint history).

Figures: per-joint MAE and RMSE by horizon step (wire units: rad, gripper opening 0..1), gripper
open/closed agreement (threshold 0.5), the latency distribution, and for Think the fraction of
depth cells refreshed against the fraction of the scene that changed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

NS = 1_000_000_000


@dataclass
class _Pending:
    index: int
    t_ns: int
    chunk: np.ndarray  # (H, J) wire units


class Decimated:
    """At most ``cap`` evenly spaced samples of a stream of any length (constant memory):
    keeps every ``stride``-th item, doubling the stride when full."""

    def __init__(self, cap: int = 400) -> None:
        self.cap = cap
        self.stride = 1
        self.items: list = []
        self._n = 0

    def add(self, item) -> None:
        if self._n % self.stride == 0:
            self.items.append(item)
            if len(self.items) >= self.cap:
                self.items = self.items[::2]
                self.stride *= 2
        self._n += 1


class OpenLoopMetrics:
    def __init__(self, joints: list[str], grippers: list[str], dt: float, horizon: int, history_s: float | None = None) -> None:
        self.joints = list(joints)
        self.gripper_idx = [self.joints.index(g) for g in grippers if g in self.joints]
        self.dt_ns = int(round(dt * NS))
        self.horizon = int(horizon)
        self.abs = np.zeros((horizon, len(joints)))
        self.sq = np.zeros((horizon, len(joints)))
        self.n = np.zeros(horizon, dtype=np.int64)
        self.grip_agree = np.zeros(horizon, dtype=np.int64)
        self.grip_n = np.zeros(horizon, dtype=np.int64)
        self.pending: deque[_Pending] = deque()
        keep = history_s if history_s is not None else (horizon + 2) * dt + 1.0
        self.keep_ns = int(keep * NS)
        self.hist_t: deque[int] = deque()
        self.hist_q: deque[np.ndarray] = deque()
        self._current = np.full(len(joints), np.nan)
        self._index = {j: i for i, j in enumerate(joints)}
        self.latencies: list[float] = []
        self.scored = 0
        self.unscored = 0
        self.executed = Decimated(600)  # (t, q)
        self.predicted = Decimated(16)  # (t, chunk)
        self.think = Decimated(600)  # (t, refreshed fraction, changed fraction) for plots
        self._think_sums = np.zeros(6)  # n, sx, sy, sxx, syy, sxy: running, constant memory

    # inputs ----------------------------------------------------------------------------------

    def add_joints(self, t_ns: int, names, positions) -> None:
        for n, p in zip(names, positions):
            i = self._index.get(n)
            if i is not None:
                self._current[i] = p
        if np.isnan(self._current).any():
            return
        q = self._current.copy()
        self.hist_t.append(int(t_ns))
        self.hist_q.append(q)
        self.executed.add((int(t_ns), q))
        self._score_ready()
        oldest_needed = (self.pending[0].t_ns if self.pending else int(t_ns)) - self.dt_ns
        while len(self.hist_t) > 2 and self.hist_t[1] < min(oldest_needed, int(t_ns) - self.keep_ns):
            self.hist_t.popleft()
            self.hist_q.popleft()

    def add_prediction(self, index: int, t_ns: int, chunk_wire: np.ndarray, latency_s: float) -> None:
        chunk = np.asarray(chunk_wire, dtype=np.float64)[: self.horizon]
        self.pending.append(_Pending(index, int(t_ns), chunk))
        self.latencies.append(float(latency_s))
        self.predicted.add((int(t_ns), chunk))

    def add_think(self, t_ns: int, refreshed_fraction: float, changed_fraction: float) -> None:
        x, y = float(refreshed_fraction), float(changed_fraction)
        self.think.add((t_ns / NS, x, y))
        self._think_sums += (1.0, x, y, x * x, y * y, x * y)

    # scoring ---------------------------------------------------------------------------------

    def _interp(self, t_ns: int) -> np.ndarray | None:
        ts = self.hist_t
        if not ts or t_ns < ts[0] or t_ns > ts[-1]:
            return None
        # history is short (a few seconds): a linear search from the end is cheap
        i = len(ts) - 1
        while i > 0 and ts[i - 1] > t_ns:
            i -= 1
        if i == 0:
            return self.hist_q[0]
        t0, t1 = ts[i - 1], ts[i]
        if t1 == t0:
            return self.hist_q[i]
        a = (t_ns - t0) / (t1 - t0)
        return (1 - a) * self.hist_q[i - 1] + a * self.hist_q[i]

    def _score_ready(self) -> None:
        if not self.hist_t:
            return
        newest = self.hist_t[-1]
        while self.pending and self._truth_time(self.pending[0], len(self.pending[0].chunk) - 1) <= newest:
            self._score(self.pending.popleft())

    def _truth_time(self, p: _Pending, k: int) -> int:
        """When step k of a chunk is executed: one step after it is issued (see the module doc)."""
        return p.t_ns + (k + 1) * self.dt_ns

    def _score(self, p: _Pending) -> None:
        any_step = False
        for k, pred in enumerate(p.chunk):
            gt = self._interp(self._truth_time(p, k))
            if gt is None:
                continue
            any_step = True
            err = pred - gt
            self.abs[k] += np.abs(err)
            self.sq[k] += err * err
            self.n[k] += 1
            for g in self.gripper_idx:
                self.grip_agree[k] += int((pred[g] > 0.5) == (gt[g] > 0.5))
                self.grip_n[k] += 1
        if any_step:
            self.scored += 1
        else:
            self.unscored += 1

    def finish(self) -> None:
        """Score what can still be scored; chunks whose future the bag does not hold are counted."""
        while self.pending:
            p = self.pending.popleft()
            last_due = self._truth_time(p, len(p.chunk) - 1)
            if self.hist_t and last_due <= self.hist_t[-1]:
                self._score(p)
            else:
                self.unscored += 1

    # results ---------------------------------------------------------------------------------

    def summary(self) -> dict:
        n = np.maximum(self.n, 1)[:, None]
        mae = self.abs / n
        rmse = np.sqrt(self.sq / n)
        valid = self.n > 0
        lat = np.asarray(self.latencies)
        out = {
            "joints": self.joints,
            "horizon_steps": int(self.horizon),
            "dt": self.dt_ns / NS,
            "chunks_scored": int(self.scored),
            "chunks_unscored": int(self.unscored),
            "samples_by_step": self.n.tolist(),
            "mae_by_step": _rows(mae, valid),
            "rmse_by_step": _rows(rmse, valid),
            "mae_per_joint": _per_joint(self.abs.sum(0), self.n.sum(), self.joints),
            "rmse_per_joint": {j: (math.sqrt(v) if v is not None else None) for j, v in
                               _per_joint(self.sq.sum(0), self.n.sum(), self.joints).items()},
            "gripper_agreement_by_step": [
                (float(a) / float(b) if b else None) for a, b in zip(self.grip_agree, self.grip_n)
            ] if self.gripper_idx else None,
            "gripper_agreement": (float(self.grip_agree.sum()) / float(self.grip_n.sum())
                                  if self.gripper_idx and self.grip_n.sum() else None),
            "latency_s": {
                "count": int(lat.size),
                "mean": float(lat.mean()) if lat.size else None,
                "p50": float(np.percentile(lat, 50)) if lat.size else None,
                "p90": float(np.percentile(lat, 90)) if lat.size else None,
                "p99": float(np.percentile(lat, 99)) if lat.size else None,
                "max": float(lat.max()) if lat.size else None,
            },
        }
        n_t, sx, sy, sxx, syy, sxy = self._think_sums
        if n_t:
            vx, vy = sxx / n_t - (sx / n_t) ** 2, syy / n_t - (sy / n_t) ** 2
            corr = float((sxy / n_t - sx * sy / n_t**2) / math.sqrt(vx * vy)) if n_t > 2 and vx > 1e-12 and vy > 1e-12 else None
            out["think"] = {
                "observations": int(n_t),
                "mean_refresh_fraction": float(sx / n_t),
                "mean_scene_change_fraction": float(sy / n_t),
                "refresh_vs_change_correlation": corr,
            }
        return out


def _rows(m: np.ndarray, valid: np.ndarray) -> list:
    return [[float(x) for x in row] if ok else None for row, ok in zip(m, valid)]


def _per_joint(total: np.ndarray, n: int, joints: list[str]) -> dict:
    return {j: (float(total[i]) / n if n else None) for i, j in enumerate(joints)}
