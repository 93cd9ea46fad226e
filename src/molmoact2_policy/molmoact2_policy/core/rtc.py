"""Real-time chunking (RTC) on the policy side, ROS-free and torch-free.

With RTC the model generates each chunk as a continuation of the one being executed: the steps of
the previous chunk that will still run while the new chunk is computed are given to the model as a
prefix (``prev_chunk_left_over``), the first ``inference_delay`` of them frozen (weight 1) and the
next ones, up to ``execution_horizon``, guided with decaying weight (LeRobot 0.6.1,
``lerobot/policies/rtc/``). Three things are worked out here:

* ``left_over``: the previous chunk's steps from the new observation's stamp on, re-timed so that
  row ``j`` is due at ``new_stamp + j * dt`` (linear interpolation between the old chunk's steps,
  which were due at ``old_stamp + k * dt``), in model units;
* ``DelayEstimator``: the inference delay in steps from measured latency (observation capture ->
  chunk published): a running high percentile over a window of recent chunks, never one sample;
* ``RtcPlanner``: what the runtime keeps between chunks (the previous chunk, its episode) and the
  ``RtcInputs`` of the next request. A prefix never crosses an episode boundary: a reset, an
  e-stop, a pause or a new instruction drops it;
* ``blend_onto_prefix`` (``prefix_blend``, ours, not LeRobot's): the guidance pulls the generated
  chunk towards the prefix only softly (its weight is clamped by ``max_guidance_weight``), so the
  frozen steps miss the prefix by a residual that differs from chunk to chunk and shows as a step
  where the driver switches chunks. Blending the generated chunk onto the prefix afterwards with the
  guidance's own weights makes the frozen steps the prefix exactly and joins the rest to it over
  the guided steps; beyond ``execution_horizon`` the chunk is the model's.

The driver executes RTC chunks by time like any other (``replace`` blending): the first
``inference_delay`` steps are already past when the chunk arrives, and they equal the frozen prefix.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .backends.base import RTC_SCHEDULES, RtcInputs

CHUNK_MODES = ("independent", "rtc")


@dataclass(frozen=True)
class RtcSettings:
    """LeRobot's ``RTCConfig`` knobs (same names) plus the delay estimator's window."""

    execution_horizon: int = 10
    max_guidance_weight: float = 10.0
    prefix_attention_schedule: str = "LINEAR"
    latency_window: int = 30  # chunks
    latency_percentile: float = 95.0
    prefix_blend: bool = False  # ours: blend_onto_prefix after the model

    def validate(self) -> None:
        if self.execution_horizon < 1:
            raise ValueError(f"execution_horizon must be >= 1, got {self.execution_horizon}")
        if not (self.max_guidance_weight > 0 and math.isfinite(self.max_guidance_weight)):
            raise ValueError(f"max_guidance_weight must be > 0 (LeRobot RTCConfig), got {self.max_guidance_weight}")
        if self.prefix_attention_schedule not in RTC_SCHEDULES:
            raise ValueError(f"prefix_attention_schedule '{self.prefix_attention_schedule}' must be one of "
                             f"{', '.join(RTC_SCHEDULES)}")
        if self.latency_window < 1:
            raise ValueError(f"latency_window must be >= 1, got {self.latency_window}")
        if not 0 < self.latency_percentile <= 100:
            raise ValueError(f"latency_percentile must be in (0, 100], got {self.latency_percentile}")


def left_over(actions: np.ndarray, stamp_ns: int, dt: float, new_stamp_ns: int) -> np.ndarray | None:
    """The previous chunk's not-yet-executed part, re-timed to ``new_stamp_ns``.

    ``actions`` (N, D) were due at ``stamp_ns + k * dt``. Returns (M, D) with row ``j`` the old
    chunk's value at ``new_stamp_ns + j * dt`` (linear between its steps), for every such time up to
    its last step; None when the whole chunk is already past (or the new stamp is older).
    """
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or not dt > 0:
        return None
    offset = (int(new_stamp_ns) - int(stamp_ns)) * 1e-9 / dt  # in steps of the old chunk
    if offset < 0:
        return None
    last = a.shape[0] - 1
    eps = 1e-6  # steps: stamps are integer nanoseconds, a step is not
    count = int(math.floor(last - offset + eps)) + 1
    if count <= 0:
        return None
    t = offset + np.arange(count)
    i0 = np.minimum(np.floor(t + eps).astype(np.intp), last)
    i1 = np.minimum(i0 + 1, last)
    w = np.clip(t - i0, 0.0, 1.0)[:, None]
    return ((1.0 - w) * a[i0] + w * a[i1]).astype(np.float32)


def prefix_weights(start: int, end: int, total: int, schedule: str) -> np.ndarray:
    """The weight of the prefix at each of ``total`` steps, as LeRobot's RTC guidance weighs it
    (``RTCProcessor.get_prefix_weights``): 1 before ``start`` (the frozen steps), then down to 0 by
    ``end`` (LINEAR: evenly spaced strictly between 1 and 0; EXP: those times their own
    ``expm1 / (e - 1)``), 0 from ``end`` on. ZEROS: 1 before ``start`` only; ONES: 1 before ``end``."""
    start, end, total = max(0, int(start)), max(0, int(end)), max(0, int(total))
    start = min(start, end)
    w = np.zeros(total)
    if schedule == "ZEROS":
        w[:start] = 1.0
        return w
    if schedule == "ONES":
        w[:end] = 1.0
        return w
    n = min(end, total) - start
    if n > 0:
        ramp = np.linspace(1.0, 0.0, n + 2)[1:-1]
        if schedule == "EXP":
            ramp = ramp * np.expm1(ramp) / (math.e - 1.0)
        w[start:start + n] = ramp
    w[:min(start, total)] = 1.0
    return w


def blend_onto_prefix(actions: np.ndarray, rtc: RtcInputs) -> np.ndarray:
    """``actions`` (N, D, model units) generated with ``rtc``'s prefix, blended onto that prefix with
    the guidance's weights: row i = w_i * prefix_i + (1 - w_i) * actions_i over the rows the prefix
    covers. The horizon is cut to the prefix's length, as LeRobot's guidance cuts it."""
    a = np.asarray(actions)
    prefix = np.asarray(rtc.prev_chunk_left_over, dtype=np.float64)
    if a.ndim != 2 or prefix.ndim != 2 or prefix.shape[1] != a.shape[1]:
        raise ValueError(f"prefix of shape {prefix.shape} does not fit a chunk of shape {a.shape}")
    n = min(len(prefix), len(a))
    horizon = min(int(rtc.execution_horizon), len(prefix))
    w = prefix_weights(min(int(rtc.inference_delay), horizon), horizon, n, rtc.prefix_attention_schedule)[:, None]
    out = a.astype(np.float64)
    out[:n] = w * prefix[:n] + (1.0 - w) * out[:n]
    return out.astype(a.dtype, copy=False)


class DelayEstimator:
    """Inference delay in control steps: ``ceil(p / dt)`` with ``p`` the ``percentile`` of the last
    ``window`` measured latencies. A high percentile, so that the steps frozen in the prefix cover
    the delay of nearly every chunk; over a window, so that it follows a latency that changes (a
    loaded machine, a slower network) within ``window`` chunks and one outlier does not set it."""

    def __init__(self, window: int = 30, percentile: float = 95.0) -> None:
        if window < 1 or not 0 < percentile <= 100:
            raise ValueError(f"window {window} must be >= 1 and percentile {percentile} in (0, 100]")
        self.percentile = float(percentile)
        self._latencies: deque[float] = deque(maxlen=int(window))

    def add(self, latency_s: float) -> None:
        if math.isfinite(latency_s) and latency_s >= 0:
            self._latencies.append(float(latency_s))

    def __len__(self) -> int:
        return len(self._latencies)

    def latency_s(self) -> float:
        if not self._latencies:
            return 0.0
        return float(np.percentile(np.fromiter(self._latencies, float), self.percentile))

    def steps(self, dt: float) -> int:
        return int(math.ceil(self.latency_s() / dt - 1e-9)) if dt > 0 else 0


@dataclass
class _Previous:
    episode: int
    stamp_ns: int
    actions: np.ndarray  # (N, D) model units
    dt: float


class RtcPlanner:
    """The previous chunk and the delay estimate, turned into each request's ``RtcInputs``."""

    def __init__(self, settings: RtcSettings) -> None:
        settings.validate()
        self.settings = settings
        self.delay = DelayEstimator(settings.latency_window, settings.latency_percentile)
        self._previous: _Previous | None = None

    def reset(self) -> None:
        """Episode boundary: the next chunk starts without a prefix."""
        self._previous = None

    def inputs_for(self, episode: int, stamp_ns: int) -> RtcInputs | None:
        prev = self._previous
        if prev is None or prev.episode != episode:
            return None
        rest = left_over(prev.actions, prev.stamp_ns, prev.dt, stamp_ns)
        if rest is None:
            return None
        s = self.settings
        return RtcInputs(prev_chunk_left_over=rest, inference_delay=min(self.delay.steps(prev.dt), rest.shape[0]),
                         execution_horizon=s.execution_horizon, max_guidance_weight=s.max_guidance_weight,
                         prefix_attention_schedule=s.prefix_attention_schedule)

    def shape(self, actions: np.ndarray, rtc: RtcInputs | None) -> np.ndarray:
        """The chunk to publish from what the model generated for ``rtc``: blended onto its prefix
        when ``prefix_blend`` is on, else as generated."""
        if rtc is None or not self.settings.prefix_blend:
            return actions
        return blend_onto_prefix(actions, rtc)

    def record(self, episode: int, stamp_ns: int, actions: np.ndarray, dt: float, latency_s: float) -> None:
        """A chunk was published: it is what the arm executes next; ``latency_s`` = capture -> publish."""
        self._previous = _Previous(int(episode), int(stamp_ns), np.asarray(actions, dtype=np.float32), float(dt))
        self.delay.add(latency_s)
