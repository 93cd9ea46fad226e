"""The policy's inference loop, ROS-free: newest observation wins, rate modes, episodes, statistics.

``PolicyRuntime`` owns one worker thread. Callbacks only drop the newest observation into a slot
(``offer_observation``) and return; the worker always infers on the newest one, so a slow model never
works through a backlog and never blocks a callback. Rate modes: ``max`` (as fast as possible, once
per new observation), ``fixed`` (at most ``rate_hz``), ``on_demand`` (one chunk per
``request_chunk()``, e.g. when the arm's executor asks for the next chunk).

Episodes: a new instruction, an activation, ``reset()``, or a gap in observations longer than
``episode_gap_s`` starts a new episode: Think's depth cache is dropped, a pending demand and the
observation slot are cleared, and a chunk still being computed for the previous episode is discarded,
so nothing leaks from one episode into the next. ``max_episode_s`` stops inference when exceeded,
whether or not observations keep coming: no inference starts past the limit, and a chunk whose
inference was under way when the limit passed is not published.

Chunk modes: ``independent`` (each chunk on its own) or ``rtc`` (real-time chunking, ``core.rtc``):
each request then carries the published chunk's not-yet-executed steps re-timed to the new
observation and the delay estimated from capture -> publish latencies; a new episode drops them.

Failures never publish: a stale observation is refused by name (the sink's ``warn`` names the camera
or the joint-state source: one arm's driver that died, or lags the other arm's), NaN/inf
in a chunk puts the status in error, and backend failures (a remote server down or slow) are retried
with exponential backoff; the loop never gets stuck. While running, the status message says why no
chunk comes: the newest refusal, or no observation for longer than ``SILENCE_NOTE_S`` (a camera
pipeline that stopped); the next published chunk clears it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .backends.base import BackendError, BackendUnavailable, NonFiniteActions, PolicyBackend, PolicyRequest
from .policy_io import PolicyIO, PolicyIOError
from .rtc import CHUNK_MODES, RtcPlanner, RtcSettings

# seconds without an observation (wall) before the status says so; and the most often the status
# message is rewritten for a new age while refusals go on (the cause stays named, the traffic small)
SILENCE_NOTE_S = 0.5
NOTE_PERIOD_S = 0.5

RATE_MODES = ("max", "fixed", "on_demand")

# Status states (mirroring molmoact2_msgs/PolicyStatus)
IDLE, WARMING, RUNNING, PAUSED, ERROR = "idle", "warming", "running", "paused", "error"


@dataclass
class ObservationInput:
    """One synchronised observation as arrays, wire units."""

    stamp_ns: int  # capture stamp of the main (first model-order) camera: the consuming stamp
    camera_names: list[str]
    images: list[np.ndarray]
    capture_stamps_ns: list[int]
    camera_stale: list[bool]
    joint_names: list[str]
    positions: list[float]
    received_mono: float = field(default_factory=time.perf_counter)  # callback entry (after deserialisation)
    deserialise_s: float = 0.0
    # one entry per joint-state source (one per arm driver): its newest stamp and the camera node's
    # stale flag; empty when the observation does not say (then joints are not age-checked)
    joint_sources: list[str] = field(default_factory=list)
    joint_source_stamps_ns: list[int] = field(default_factory=list)
    joint_source_stale: list[bool] = field(default_factory=list)


@dataclass
class ChunkOutput:
    stamp_ns: int
    joint_names: list[str]
    positions: np.ndarray  # (N, D) wire units
    dt: float
    sequence: int
    latency_s: float  # consume -> chunk ready (model call included)
    depth_codes: np.ndarray | None = None
    depth_refreshed: np.ndarray | None = None
    depth_rows: int = 0
    depth_cols: int = 0
    num_depth_codes: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    received_mono: float = 0.0


class RuntimeSink(Protocol):
    def consuming(self, stamp_ns: int) -> None: ...
    def chunk(self, out: ChunkOutput) -> None: ...
    def status(self, state: str, message: str) -> None: ...
    def warn(self, key: str, message: str) -> None: ...


@dataclass
class RuntimeConfig:
    rate_mode: str = "max"
    rate_hz: float = 10.0
    max_age_s: float = 0.5  # 0: no age check
    joint_state_max_age_s: float = 0.2  # per joint-state source; 0: no age check
    joint_state_max_skew_s: float = 0.1  # a source this far behind the newest one is stale; 0: no check
    episode_gap_s: float = 2.0  # 0: never
    max_episode_s: float = 0.0  # 0: unlimited
    seed: int | None = None
    retry_initial_s: float = 0.2
    retry_max_s: float = 5.0
    num_steps: int | None = None
    # "rtc": each request carries the previous chunk's left-over and the estimated delay (core.rtc)
    chunk_mode: str = "independent"
    rtc: RtcSettings = field(default_factory=RtcSettings)
    execute_steps: int = 0  # steps of a chunk the driver executes (0: all): the left-over ends there

    def validate(self) -> None:
        if self.chunk_mode not in CHUNK_MODES:
            raise ValueError(f"chunk_mode '{self.chunk_mode}' must be one of {', '.join(CHUNK_MODES)}")
        if self.chunk_mode == "rtc":
            self.rtc.validate()
        if self.rate_mode not in RATE_MODES:
            raise ValueError(f"rate_mode '{self.rate_mode}' must be one of {', '.join(RATE_MODES)}")
        if self.rate_mode == "fixed" and not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0 in fixed rate mode, got {self.rate_hz}")
        for name in ("max_age_s", "joint_state_max_age_s", "joint_state_max_skew_s", "episode_gap_s", "max_episode_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


class LatencyStats:
    def __init__(self, window: int = 200) -> None:
        self.latencies: deque[float] = deque(maxlen=window)
        self.done: deque[float] = deque(maxlen=window)
        self.count = 0
        self._p99 = 0.0

    def add(self, latency: float, now: float) -> None:
        self.latencies.append(latency)
        self.done.append(now)
        self.count += 1
        self._p99 = float(np.percentile(self.latencies, 99))  # once per chunk, off the consume path

    @property
    def last(self) -> float:
        return self.latencies[-1] if self.latencies else 0.0

    @property
    def p99(self) -> float:
        return self._p99

    @property
    def rate(self) -> float:
        if len(self.done) < 2:
            return 0.0
        span = self.done[-1] - self.done[0]
        return (len(self.done) - 1) / span if span > 0 else 0.0


class PolicyRuntime:
    def __init__(self, backend: PolicyBackend, io: PolicyIO, config: RuntimeConfig, sink: RuntimeSink,
                 now_ns: Callable[[], int], monotonic: Callable[[], float] = time.monotonic) -> None:
        config.validate()
        self.backend = backend
        self.io = io
        self.config = config
        self.sink = sink
        self.now_ns = now_ns
        self.monotonic = monotonic
        self.stats = LatencyStats()
        self.rtc = RtcPlanner(config.rtc) if config.chunk_mode == "rtc" else None
        self.sequence = 0
        self.instruction = ""
        self.state = IDLE
        self.message = ""
        self._cv = threading.Condition()
        self._slot: ObservationInput | None = None
        self._last_obs_mono: float | None = None
        self._noted_at: float | None = None  # monotonic() of the last "why no chunk" status note
        self._demand = 0
        self._active = False
        self._episode = 0
        self._episode_start = 0.0
        self._reset_pending = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._worker_idle = False  # the worker waits for an observation (offer_observation hands over)
        self._in_model = threading.Event()
        self.last_rtc = None  # the RtcInputs of the newest published chunk (None: no prefix); for tests/bench

    # ------------------------------------------------------------------ control (any thread)
    def start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="policy-inference", daemon=True)
            self._thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._stop = True
            self._active = False
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def activate(self) -> None:
        with self._cv:
            self._active = True
            self._new_episode_locked()
            self._set_state(RUNNING if self.instruction else PAUSED,
                            "" if self.instruction else "waiting for an instruction")
            self._cv.notify_all()

    def deactivate(self, message: str = "deactivated") -> None:
        with self._cv:
            self._active = False
            self._slot = None
            self._demand = 0
            self._set_state(PAUSED, message)
            self._cv.notify_all()

    @property
    def active(self) -> bool:
        return self._active

    def set_instruction(self, text: str) -> None:
        text = (text or "").strip()
        with self._cv:
            changed = text != self.instruction
            self.instruction = text
            if changed:
                self._new_episode_locked()
            if self._active:
                self._set_state(RUNNING if text else PAUSED, "" if text else "waiting for an instruction")
            self._cv.notify_all()

    def reset(self) -> None:
        with self._cv:
            self._new_episode_locked()
            self._cv.notify_all()

    def request_chunk(self) -> None:
        with self._cv:
            self._demand += 1
            self._cv.notify_all()

    def offer_observation(self, obs: ObservationInput) -> bool:
        """Newest wins; never blocks beyond a short lock. True when the idle worker takes this
        observation at once (rate mode ``max``): then ``wait_handoff`` lets it run to the model call."""
        now = self.monotonic()
        with self._cv:
            handoff = self._worker_idle and self._active and bool(self.instruction) and self.config.rate_mode == "max"
            if handoff:
                self._in_model.clear()
            gap = self.config.episode_gap_s
            if self._last_obs_mono is not None and gap > 0 and now - self._last_obs_mono > gap:
                self._new_episode_locked()
                self.sink.warn("gap", f"no observation for {now - self._last_obs_mono:.2f} s (> episode_gap_s "
                               f"{gap:g}): new episode, depth cache dropped")
            self._last_obs_mono = now
            self._slot = obs
            self._cv.notify_all()
        return handoff

    def wait_handoff(self, timeout: float = 0.002) -> bool:
        """Block the caller (the observation callback) until the worker has started the model call on
        the observation just offered, at most ``timeout``: the worker then has the GIL to itself from
        taking the observation to the model, instead of waiting for the executor's bookkeeping."""
        return self._in_model.wait(timeout)

    @property
    def episode(self) -> int:
        return self._episode

    # ------------------------------------------------------------------ internals
    def _new_episode_locked(self) -> None:
        if self.rtc is not None:  # a prefix never crosses an episode (reset, e-stop, pause, instruction)
            self.rtc.reset()
        self._episode += 1
        self._episode_start = self.monotonic()
        self._reset_pending = True
        self._slot = None
        self._demand = 0

    def _set_state(self, state: str, message: str) -> None:
        if state != self.state or message != self.message:
            self.state, self.message = state, message
            self.sink.status(state, message)

    def _wait(self, seconds: float) -> bool:
        """Interruptible sleep; False when stopping."""
        with self._cv:
            self._cv.wait_for(lambda: self._stop, timeout=max(0.0, seconds))
            return not self._stop

    def _episode_over_locked(self) -> bool:
        """True (and inference stopped) once the episode is longer than max_episode_s."""
        limit = self.config.max_episode_s
        if not (self._active and limit > 0 and self.monotonic() - self._episode_start > limit):
            return False
        self._active = False
        self._slot = None
        self._demand = 0
        self._set_state(PAUSED, f"episode longer than max_episode_s ({limit:g} s): stopped")
        return True

    def _take(self) -> tuple[ObservationInput, int, str] | None:
        with self._cv:
            while True:
                if self._stop:
                    return None
                # checked on every pass, not only when idle: steady observations never skip it
                self._episode_over_locked()
                ready = self._active and self.instruction and self._slot is not None
                if ready and self.config.rate_mode == "on_demand":
                    ready = self._demand > 0
                if ready:
                    break
                self._worker_idle = True
                self._cv.wait(0.2)
                self._worker_idle = False
                self._note_silence_locked()
            obs = self._slot
            self._slot = None
            if self.config.rate_mode == "on_demand":
                self._demand = 0
            if self._reset_pending:
                self._reset_pending = False
                self.backend.reset()
            return obs, self._episode, self.instruction

    def _note(self, message: str) -> None:
        """Say in the running status why no chunk comes; an error's message is never overwritten."""
        now = self.monotonic()
        if self.state != RUNNING or message == self.message:
            return
        if self.message and self._noted_at is not None and now - self._noted_at < NOTE_PERIOD_S:
            return
        self._noted_at = now
        self._set_state(RUNNING, message)

    def _note_silence_locked(self) -> None:
        last = self._last_obs_mono
        if not (self._active and self.instruction) or last is None:
            return
        silent = self.monotonic() - last
        if silent > SILENCE_NOTE_S:
            self._note(f"no observation for {silent:.1f} s (camera ingestion stopped?): no chunk; "
                       "the arm holds when its chunk runs out")

    def _refuse(self, message: str) -> bool:
        self.sink.warn("stale", message)
        self._note(message)
        return False

    def _fresh(self, obs: ObservationInput) -> bool:
        stale = [c for c, s in zip(obs.camera_names, obs.camera_stale) if s]
        if stale:
            return self._refuse(f"observation refused: camera(s) {', '.join(stale)} stale")
        stale = [j for j, s in zip(obs.joint_sources, obs.joint_source_stale) if s]
        if stale:
            return self._refuse(f"observation refused: joint state of {', '.join(stale)} stale")
        now = None
        if self.config.max_age_s > 0:
            now = self.now_ns()
            for cam, stamp in zip(obs.camera_names, obs.capture_stamps_ns):
                age = (now - int(stamp)) * 1e-9
                if age > self.config.max_age_s:
                    return self._refuse(f"observation refused: camera '{cam}' frame is {age:.3f} s old "
                                        f"(max_age_s {self.config.max_age_s:g})")
        sources = list(zip(obs.joint_sources, (int(s) for s in obs.joint_source_stamps_ns)))
        if self.config.joint_state_max_age_s > 0 and sources:
            now = self.now_ns() if now is None else now
            for src, stamp in sources:
                age = (now - stamp) * 1e-9
                if age > self.config.joint_state_max_age_s:
                    return self._refuse(f"observation refused: joint state of '{src}' is {age:.3f} s old "
                                        f"(joint_state_max_age_s {self.config.joint_state_max_age_s:g})")
        if self.config.joint_state_max_skew_s > 0 and len(sources) > 1:
            newest_src, newest = max(sources, key=lambda s: s[1])
            for src, stamp in sources:
                skew = (newest - stamp) * 1e-9
                if skew > self.config.joint_state_max_skew_s:
                    return self._refuse(f"observation refused: joint state of '{src}' is {skew:.3f} s behind "
                                        f"'{newest_src}' (joint_state_max_skew_s {self.config.joint_state_max_skew_s:g})")
        return True

    def _loop(self) -> None:
        backoff = 0.0
        next_due = 0.0
        while True:
            taken = self._take()
            if taken is None:
                return
            obs, episode, instruction = taken
            if self.config.rate_mode == "fixed":
                now = self.monotonic()
                if now < next_due:
                    if not self._wait(next_due - now):
                        return
                    with self._cv:  # a newer observation may have arrived while waiting
                        if self._slot is not None and self._episode == episode:
                            obs, self._slot = self._slot, None
                next_due = max(next_due + 1.0 / self.config.rate_hz, self.monotonic())
            if not self._fresh(obs):
                self._in_model.set()  # no model call for this one: release a waiting callback now
                continue
            try:
                self._infer(obs, episode, instruction)
                backoff = 0.0
            except BackendUnavailable as exc:
                backoff = min(self.config.retry_max_s, max(self.config.retry_initial_s, backoff * 2))
                self._set_state(ERROR, f"backend unavailable, retrying in {backoff:.1f} s: {exc}")
                if not self._wait(backoff):
                    return
            except NonFiniteActions as exc:
                self._set_state(ERROR, f"chunk not published: {exc}; the arm keeps holding")
            except (BackendError, PolicyIOError) as exc:
                self._set_state(ERROR, str(exc))
                backoff = min(self.config.retry_max_s, max(self.config.retry_initial_s, backoff * 2))
                if not self._wait(backoff):
                    return

    def _infer(self, obs: ObservationInput, episode: int, instruction: str) -> None:
        t0 = time.perf_counter()
        self.sink.consuming(obs.stamp_ns)
        images, state = self.io.assemble(obs.camera_names, obs.images, obs.joint_names, obs.positions)
        rtc = None
        if self.rtc is not None:
            with self._cv:
                rtc = self.rtc.inputs_for(episode, obs.stamp_ns)
        request = PolicyRequest(images=images, state=state, instruction=instruction, norm_tag=self.io.norm_tag,
                                camera_names=list(self.io.camera_order), seed=self.config.seed,
                                num_steps=self.config.num_steps, rtc=rtc)
        t1 = time.perf_counter()
        self._in_model.set()
        result = self.backend.predict(request)
        t2 = time.perf_counter()
        actions = self.rtc.shape(result.actions, rtc) if self.rtc is not None else result.actions
        positions = self.io.actions_to_wire(actions)
        if not np.isfinite(positions).all():  # NaN/inf in the prediction carry through the conversion
            result.check_finite()  # names how many the model produced
            raise NonFiniteActions("converted chunk holds NaN/inf")
        t3 = time.perf_counter()
        # Publish under the lock: once deactivate() or a new episode has taken it, nothing from this
        # inference is published and the state it set is never overwritten.
        with self._cv:
            if episode != self._episode or not self._active or self._episode_over_locked():
                return  # the episode ended while inferring: never publish into it or the next one
            self.sequence += 1
            out = ChunkOutput(
                stamp_ns=obs.stamp_ns, joint_names=list(self.io.action_joints), positions=positions, dt=self.io.dt,
                sequence=self.sequence, latency_s=t3 - t0, depth_codes=result.depth_codes,
                depth_refreshed=result.depth_refreshed, depth_rows=result.depth_rows, depth_cols=result.depth_cols,
                num_depth_codes=result.num_depth_codes,
                timings={"assemble": t1 - t0, "model": t2 - t1, "convert": t3 - t2, "deserialise": obs.deserialise_s,
                         **{f"backend_{k}": v for k, v in result.timings.items()}},
                received_mono=obs.received_mono,
            )
            self.sink.chunk(out)
            if self.rtc is not None:  # what the arm executes next; latency = capture -> published
                executed = actions[: self.config.execute_steps] if self.config.execute_steps else actions
                self.rtc.record(episode, obs.stamp_ns, executed, self.io.dt, (self.now_ns() - obs.stamp_ns) * 1e-9)
            self.last_rtc = rtc
            self.stats.add(t3 - t0, time.perf_counter())
            self._set_state(RUNNING, "")
