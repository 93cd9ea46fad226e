"""One arm's driver logic, ROS-free: chunk intake, arming, executor, safety, faults, hold.

The driver node is a thin wrapper: it converts messages and calls ``on_chunk``, ``on_heartbeat``,
``on_estop``, the service methods and ``tick`` (at the servo rate, from a steady timer). Two clocks
come in on every call: ``now``, the node's clock in seconds (``/clock`` under use_sim_time) for
chunk timing and the stale-chunk watchdog, and ``wall``, ``time.monotonic()``, for the operator
heartbeat (a human's deadman runs on real time even when the simulation does not).

States (molmoact2_msgs/DriverStatus): HOLDING (sending the last commanded position, torque on),
ARMING (ramping onto a new chunk's path), EXECUTING, ESTOPPED (latched until ``reset``), ERROR (a
backend fault or a tracking error; holding where the backend still accepts commands, until
``reset``).

What the driver guarantees (each one is a test in test_driver_safety_transitions.py):

- ESTOPPED and ERROR command one position only: the one commanded at the instant of the
  transition, frozen. Nothing computed before it (a chunk, a ramp, a run-out target) is sent
  after it. The frozen position changes only to follow the arm when the arm is displaced from it
  by more than ``max_relative_target`` (a sag while a servo unloaded itself, a push): the driver
  then holds where the arm really is and never pulls it back.
- Every command is limited relative to the last command (velocity) and relative to the measured
  position (``max_relative_target``), so a command never becomes a step from where the arm is.
- ``reset`` (the only way out of ESTOPPED and ERROR) and ``enable`` re-anchor the command to the
  measured position.
- A tracking error (measured vs commanded) above ``tracking_error_max`` on an arm joint is a
  fault that names the joint. Grippers are exempt from it and from the relative limit: a grasp
  leaves them short of their target by design.

Teleoperation (``input = "teleop"``): the driver takes a leader arm's targets
(``on_teleop_target``, wire units, at the leader's rate) instead of chunks, through the same
arming ramp and the same safety filter, with the same guarantees:

- the first target after a hold (activation, a reset, ``start``, a silent leader) arms: the ramp
  runs from the last command onto the leader's moving pose, so the follower never jumps to it;
- every target is clamped to the envelope and every command passes ``SafetyLayer.filter``
  (velocity, relative-to-measured, limits, workspace);
- ESTOPPED and ERROR refuse targets and hold the frozen command, as for chunks;
- a leader silent for longer than ``teleop_timeout_s`` (wall time: a human moves it) makes the
  driver hold where it is and say why (``watchdog_holds`` counts it); its next target re-arms.

In teleop mode chunks are refused, and in policy mode teleop targets are: one input at a time.

The safe state everywhere is holding with torque on; cutting torque is a separate, explicit call
(``disable_torque``) because YAM and SO-101 arms have no brakes. Torque at the lifecycle
transitions is the same for every backend: configure connects, reads and turns torque on holding
the present position (commands are sent only once active); activate enables actuation;
deactivate and cleanup leave torque on holding (cleanup then releases the transport: a Feetech
servo keeps holding its last goal, a Damiao motor until its own command timeout); only
``disable_torque`` turns it off.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from .arming import ArmingRamp
from .backend import ArmBackend, BackendError, JointReading
from .executor import Chunk, ChunkExecutor, ChunkRefused
from .safety import SafetyCounters, SafetyLayer


class DriverState(IntEnum):
    UNCONFIGURED = 0
    HOLDING = 1
    ARMING = 2
    EXECUTING = 3
    ESTOPPED = 4
    ERROR = 5


@dataclass
class DriverConfig:
    servo_rate_hz: float = 100.0
    blending: str = "crossfade"
    crossfade_s: float = 0.2
    ensemble_coeff: float = 0.5
    execute_steps: int = 0
    chunk_timeout_s: float = 1.0  # stale-chunk watchdog on the node clock; 0: off
    heartbeat_timeout_s: float = 0.0  # operator deadman on wall time; 0: off
    dry_run: bool = False  # shadow mode: compute and publish, never actuate
    require_start: bool | None = None  # None: required unless the backend is simulated
    arming_speed_scale: float = 0.5  # arming ramp speed as a fraction of each joint's velocity limit
    max_future_s: float = 2.0
    clock_stall_s: float = 0.5  # wall seconds without node-clock progress before reporting a stall
    tracking_error_max: float = 0.0  # rad, arm joints: measured vs commanded beyond this is a fault; 0: off
    max_relative_target: float = 0.0  # rad, arm joints: a command's largest distance from the measured position; 0: off
    input: str = "policy"  # "policy" (action chunks) or "teleop" (a leader arm's targets)
    teleop_timeout_s: float = 0.2  # wall seconds without a leader target before holding; 0: off
    # a node clock reading this far behind the newest one seen is a late reader (the servo thread
    # and a chunk callback race for the lock), not a clock that jumped back
    clock_race_tolerance_s: float = 0.1


@dataclass
class ChunkInput:
    """An ActionChunk in plain Python: row-major ``positions`` (horizon x len(joint_names))."""

    joint_names: list[str]
    stamp: float
    dt: float
    horizon: int
    positions: list[float] | np.ndarray
    sequence: int = 0


@dataclass
class TickResult:
    measured: JointReading | None = None
    command: np.ndarray | None = None  # what was (or in shadow mode would have been) sent
    sent: np.ndarray | None = None  # what the backend reports it sent; None when not actuating
    event: str = ""


@dataclass
class ServiceResult:
    success: bool
    message: str


@dataclass
class _Status:
    last_event: str = ""
    events: list[str] = field(default_factory=list)


class DriverCore:
    def __init__(
        self,
        arm_name: str,
        joint_names: list[str],
        robot_joint_names: list[str],
        backend: ArmBackend,
        safety: SafetyLayer,
        config: DriverConfig,
        velocity_limits: np.ndarray,
        gripper: str | None = None,
    ) -> None:
        self.arm_name = arm_name
        self.joint_names = list(joint_names)
        self.robot_joint_names = set(robot_joint_names) | set(joint_names)
        self.backend = backend
        self.safety = safety
        self.config = config
        self.counters: SafetyCounters = safety.counters
        self.executor = ChunkExecutor(len(joint_names), config.blending, config.crossfade_s,
                                      config.ensemble_coeff, config.execute_steps, config.max_future_s)
        self.ramp = ArmingRamp(np.asarray(velocity_limits, dtype=np.float64) * config.arming_speed_scale)
        self.require_start = (not backend.simulated) if config.require_start is None else bool(config.require_start)
        self.servo_dt = 1.0 / config.servo_rate_hz
        self.lock = threading.RLock()
        self.state = DriverState.UNCONFIGURED
        self.active = False
        self.actuation_enabled = False
        self.torque_on = False
        self.estop_latched = False
        self.operator_started = False
        self.last_command: np.ndarray | None = None
        self.hold_target: np.ndarray | None = None  # None: hold last_command
        # ESTOPPED / ERROR: the one position commanded, frozen at the transition
        self.frozen: np.ndarray | None = None
        # arm joints (not the gripper): tracking error and re-anchoring apply to them
        self._arm_joint_mask = np.array([j != gripper for j in self.joint_names], dtype=bool)
        self._newest_now: float | None = None
        self.last_measured: JointReading | None = None
        self.last_event = ""
        self.error = ""
        self._last_chunk_time: float | None = None
        self._last_sequence = 0
        self._last_stamp = -np.inf
        self._last_heartbeat: float | None = None
        self._heartbeat_lost = False
        self._last_now: float | None = None
        self._now_advanced_wall: float | None = None
        self._stalled = False
        self.active_sequence = 0
        self.steps_remaining = 0
        self.estop_count = 0
        self.events: list[str] = []  # every event, for logs (the node logs and clears)
        if config.input not in ("policy", "teleop"):
            raise ValueError(f"driver input {config.input!r}: must be policy or teleop")
        self.teleop_target: np.ndarray | None = None  # the newest leader target (this arm's joints, envelope-clamped)
        self._teleop_wall: float | None = None  # time.monotonic() of the newest accepted leader target
        self._teleop_refusal = ""  # the last refusal reported (one event per reason, not one per target)
        self.teleop_targets_received = 0

    # -- events -----------------------------------------------------------------------------
    def _event(self, text: str) -> str:
        self.last_event = text
        self.events.append(text)
        return text

    def take_events(self) -> list[str]:
        with self.lock:
            out, self.events = self.events, []
            return out

    # -- lifecycle --------------------------------------------------------------------------
    def configure(self) -> JointReading:
        """Connect, read the state, torque on holding it. Raises BackendError.

        Torque comes on here for every backend (as LeRobot's follower ``connect`` and i2rt's
        bring-up do): the state after configure is HOLDING, and an arm without brakes must not
        drop between configure and activate."""
        with self.lock:
            self.backend.connect()
            reading = self.backend.read_state()
            self._check_reading(reading)
            self.backend.enable()
            self.torque_on = True
            reading = self.backend.read_state()
            self._check_reading(reading)
            self.last_measured = reading
            self.last_command = np.asarray(reading.positions, dtype=np.float64).copy()
            self.hold_target = None
            self.frozen = None
            self.state = DriverState.HOLDING
            self.error = ""
            return reading

    def activate(self, now: float, wall: float) -> None:
        """Torque on holding the current position; actuation enabled unless dry-run."""
        with self.lock:
            self.backend.enable()
            self.torque_on = True
            reading = self.backend.read_state()
            self._check_reading(reading)
            self.last_measured = reading
            self.last_command = np.asarray(reading.positions, dtype=np.float64).copy()
            self.hold_target = None
            self.executor.clear()
            self.ramp.reset()
            self.active = True
            self.actuation_enabled = not self.config.dry_run
            self.operator_started = not self.require_start
            self._last_heartbeat = wall
            self._heartbeat_lost = False
            self._last_chunk_time = None
            if self.state not in (DriverState.ESTOPPED, DriverState.ERROR):
                self.state = DriverState.HOLDING
            else:  # still latched: hold here, where the arm is now
                self.frozen = self.last_command.copy()
            self._event("activated: holding" + (" (shadow mode: nothing is actuated)" if self.config.dry_run else "")
                        + (" (call start to move)" if self.require_start and not self.config.dry_run else ""))

    def deactivate(self) -> None:
        """Stop executing and hold with torque on."""
        with self.lock:
            self._hold("deactivated: holding with torque on")
            self._send_hold_once()
            self.active = False
            self.actuation_enabled = False

    def shutdown(self) -> None:
        with self.lock:
            if self.active:
                self._hold("shutting down: holding")
                self._send_hold_once()
            self.active = False
            self.actuation_enabled = False
            self.backend.close()
            self.state = DriverState.UNCONFIGURED

    # -- inputs -----------------------------------------------------------------------------
    def on_chunk(self, chunk: ChunkInput, now: float) -> ServiceResult:
        with self.lock:
            now = self._monotone(now)
            c = self.counters
            c.chunks_received += 1
            ok, why = self._accept_chunk(chunk, now)
            if not ok:
                c.chunks_refused += 1
                return ServiceResult(False, self._event(f"chunk {chunk.sequence} refused: {why}"))
            return ServiceResult(True, why)

    def _accept_chunk(self, chunk: ChunkInput, now: float) -> tuple[bool, str]:
        c = self.counters
        if not self.active:
            return False, "driver is not active"
        if self.config.input == "teleop":
            return False, "driver input is teleop (a leader arm): chunks are not taken"
        if self.estop_latched:
            return False, "e-stop latched (call reset)"
        if self.state == DriverState.ERROR:
            return False, f"driver in error: {self.error} (call reset)"
        names = list(chunk.joint_names)
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            return False, f"duplicate joint names: {', '.join(dup)}"
        unknown = [n for n in names if n not in self.robot_joint_names]
        if unknown:
            return False, f"joints this robot does not have: {', '.join(unknown)}"
        missing = [j for j in self.joint_names if j not in names]
        if missing:
            return False, f"joints of arm '{self.arm_name}' missing from the chunk: {', '.join(missing)}"
        n = len(names)
        flat = np.asarray(chunk.positions, dtype=np.float64).ravel()
        if chunk.horizon < 1 or flat.size != chunk.horizon * n:
            return False, f"{flat.size} positions for horizon {chunk.horizon} x {n} joints"
        table = flat.reshape(chunk.horizon, n)
        if not np.all(np.isfinite(table)):
            c.refusals_nonfinite += 1
            rows, cols = np.nonzero(~np.isfinite(table))
            return False, f"NaN/inf targets (step {int(rows[0])}, joint {names[int(cols[0])]})"
        if chunk.sequence and self._stale(chunk):
            return False, (f"duplicate or out of order (sequence {chunk.sequence} stamped {chunk.stamp:.3f} s, "
                           f"after sequence {self._last_sequence} stamped {self._last_stamp:.3f} s)")
        if self.actuation_enabled and not self.operator_started:
            return False, "waiting for the operator's start"
        if self.config.heartbeat_timeout_s > 0 and self._heartbeat_lost:
            return False, "operator heartbeat lost"
        cols = [names.index(j) for j in self.joint_names]
        mine, _ = self.safety.clamp_to_envelope(table[:, cols])
        arming = self.state not in (DriverState.EXECUTING, DriverState.ARMING) or not self.executor.running
        try:
            res = self.executor.submit(Chunk(chunk.stamp, chunk.dt, mine, chunk.sequence), now,
                                       None if arming else self.last_command)
        except ChunkRefused as exc:
            return False, str(exc)
        c.steps_dropped_late += res.steps_dropped_late
        if not res.accepted:
            return False, res.reason
        if chunk.stamp > self._last_stamp:  # a newer observation: its producer's numbering is the reference
            self._last_sequence, self._last_stamp = int(chunk.sequence), chunk.stamp
        else:
            self._last_sequence = max(self._last_sequence, int(chunk.sequence))
        self._last_chunk_time = now
        self.hold_target = None  # a run-out target of an older chunk never outlives a new one
        if arming:
            path = self.executor.target(now).target
            assert path is not None
            duration = self.ramp.start(now, self.last_command, path)
            self.state = DriverState.ARMING
            return True, f"chunk {chunk.sequence}: arming over {duration:.2f} s ({res.steps_dropped_late} late steps dropped)"
        return True, f"chunk {chunk.sequence}: blended ({res.steps_dropped_late} late steps dropped)"

    def on_heartbeat(self, wall: float) -> None:
        with self.lock:
            self._last_heartbeat = wall
            if self._heartbeat_lost:
                self._heartbeat_lost = False
                self._event("operator heartbeat back: waiting for the next chunk")

    def on_teleop_target(self, joint_names: list[str], positions, now: float, wall: float) -> ServiceResult:
        """A leader arm's target (wire units). Arms from a hold, else becomes the followed target."""
        with self.lock:
            now = self._monotone(now)
            self.teleop_targets_received += 1
            ok, why = self._accept_teleop(list(joint_names), positions, now, wall)
            if not ok:
                if why != self._teleop_refusal:
                    self._teleop_refusal = why
                    self._event(f"teleop target refused: {why}")
                return ServiceResult(False, why)
            self._teleop_refusal = ""
            return ServiceResult(True, why)

    def _accept_teleop(self, names: list[str], positions, now: float, wall: float) -> tuple[bool, str]:
        if self.config.input != "teleop":
            return False, "driver input is policy (chunks): set input:=teleop to follow a leader"
        if not self.active:
            return False, "driver is not active"
        if self.estop_latched:
            return False, "e-stop latched (call reset)"
        if self.state == DriverState.ERROR:
            return False, f"driver in error: {self.error} (call reset)"
        if len(set(names)) != len(names):
            return False, f"duplicate joint names: {', '.join(sorted({n for n in names if names.count(n) > 1}))}"
        missing = [j for j in self.joint_names if j not in names]
        if missing:
            return False, f"joints of arm '{self.arm_name}' missing from the leader's target: {', '.join(missing)}"
        values = np.asarray(positions, dtype=np.float64).ravel()
        if values.size != len(names):
            return False, f"{values.size} positions for {len(names)} joint names"
        mine = values[[names.index(j) for j in self.joint_names]]
        if not np.all(np.isfinite(mine)):
            self.counters.refusals_nonfinite += 1
            bad = [self.joint_names[i] for i in np.flatnonzero(~np.isfinite(mine))]
            return False, f"NaN/inf target for {', '.join(bad)}"
        if self.actuation_enabled and not self.operator_started:
            return False, "waiting for the operator's start"
        if self.config.heartbeat_timeout_s > 0 and self._heartbeat_lost:
            return False, "operator heartbeat lost"
        clamped, _ = self.safety.clamp_to_envelope(mine[None, :])
        self.teleop_target = np.asarray(clamped, dtype=np.float64)[0].copy()
        self._teleop_wall = wall
        if self.state in (DriverState.ARMING, DriverState.EXECUTING):
            return True, "following"
        # from a hold: ramp from the last command onto the leader's pose, never a jump
        self.hold_target = None
        duration = self.ramp.start(now, self.last_command, self.teleop_target)
        self.state = DriverState.ARMING
        return True, self._event(f"teleop: arming onto the leader over {duration:.2f} s")

    def on_estop(self, now: float) -> None:
        """Latch the e-stop: hold from the next tick on, refuse chunks until reset."""
        with self.lock:
            self.estop_count += 1
            if not self.estop_latched:
                self.estop_latched = True
                self.operator_started = False
                self._freeze()
                self.state = DriverState.ESTOPPED
                self._event("E-STOP received: holding, latched until reset")

    # -- services ---------------------------------------------------------------------------
    def start(self) -> ServiceResult:
        with self.lock:
            if not self.active:
                return ServiceResult(False, "driver is not active (activate the lifecycle node first)")
            if self.estop_latched:
                return ServiceResult(False, "e-stop latched: call reset first")
            if self.state == DriverState.ERROR:
                return ServiceResult(False, f"driver in error: {self.error}: call reset first")
            self.operator_started = True
            return ServiceResult(True, self._event("operator start: the next chunk arms the arm"))

    def stop(self) -> ServiceResult:
        with self.lock:
            self.operator_started = False
            self._hold("operator stop: holding (call start to move again)")
            return ServiceResult(True, self.last_event)

    def enable(self) -> ServiceResult:
        """Actuation on (leave shadow mode); torque on if it was off. The arm holds where it is."""
        with self.lock:
            if not self.active:
                return ServiceResult(False, "driver is not active")
            if self.estop_latched:
                return ServiceResult(False, "e-stop latched: call reset first")
            try:
                if not self.torque_on:
                    self.backend.enable()
                    self.torque_on = True
                reading = self.backend.read_state()
            except BackendError as exc:
                self._fault(str(exc))
                return ServiceResult(False, self.last_event)
            self.last_command = np.asarray(reading.positions, dtype=np.float64).copy()
            self.hold_target = None
            if self.frozen is not None:
                self.frozen = self.last_command.copy()
            self.actuation_enabled = True
            self.operator_started = not self.require_start
            self._hold("actuation enabled: holding" + (" (call start to move)" if self.require_start else ""))
            return ServiceResult(True, self.last_event)

    def disable(self) -> ServiceResult:
        """Actuation off (shadow mode); torque stays on, holding."""
        with self.lock:
            self._send_hold_once()
            self.actuation_enabled = False
            self._hold("actuation disabled: shadow mode, torque stays on holding")
            return ServiceResult(True, self.last_event)

    def disable_torque(self) -> ServiceResult:
        with self.lock:
            self.actuation_enabled = False
            self._hold("TORQUE OFF: arms without brakes (YAM, SO-101) drop under gravity")
            try:
                self.backend.disable()
            except BackendError as exc:
                self._fault(str(exc))
                return ServiceResult(False, self.last_event)
            self.torque_on = False
            return ServiceResult(True, self.last_event)

    def _healthy_reading(self):
        reading = self.backend.read_state()
        self._check_reading(reading)
        health = self.backend.health()
        if not health.ok:
            raise BackendError(health.message)
        return reading

    def reset(self) -> ServiceResult:
        """The operator's reset: clears a latched e-stop and errors, holds where the arm is."""
        with self.lock:
            return self._reset(clear_estop=True)

    def clear_faults(self) -> ServiceResult:
        """Reset for automation (the simulator's episode reset): like ``reset`` but never clears an
        e-stop. While one is latched it is refused and nothing changes: only a person's ``reset``
        may re-arm an e-stopped arm, whatever runs episodes back to back."""
        with self.lock:
            if self.estop_latched:
                return ServiceResult(False, self._event("clear_faults refused: e-stop latched, still holding "
                                                        "(only ~/reset clears an e-stop)"))
            return self._reset(clear_estop=False)

    def _reset(self, clear_estop: bool) -> ServiceResult:
        """``reset`` and ``clear_faults``; the caller holds ``self.lock``."""
        reconnected = False
        try:
            reading = self._healthy_reading()
        except BackendError as first:
            # A transport that went away (cable pulled, CAN bus down, i2rt's loop stopped after a
            # fault) comes back only by reopening it: reconnect once, holding where the arm is.
            try:
                self.backend.close()
                self.backend.connect()
                if self.actuation_enabled:
                    self.backend.enable()
                reading = self._healthy_reading()
                reconnected = True
                self.last_command = None
            except BackendError as exc:
                self._fault(str(exc))
                return ServiceResult(False, f"{'reset' if clear_estop else 'clear_faults'} failed: {exc} "
                                     f"(before reconnecting: {first})")
        if clear_estop:
            self.estop_latched = False
        self.error = ""
        self.operator_started = not self.require_start
        self.executor.clear()
        self.ramp.reset()
        # leave the fault where the arm really is, never where it was told to be before
        self.last_command = np.asarray(reading.positions, dtype=np.float64).copy()
        self.last_measured = reading
        self.hold_target = None
        self.frozen = None
        self.state = DriverState.HOLDING
        return ServiceResult(True, self._event(("reset: e-stop and errors cleared, " if clear_estop
                                                else "clear_faults: errors cleared, ")
                                               + ("backend reconnected, " if reconnected else "") + "holding"
                                               + (" (call start to move)" if self.require_start else "")))

    # -- the servo tick ---------------------------------------------------------------------
    def tick(self, now: float, wall: float) -> TickResult:
        with self.lock:
            now = self._monotone(now)
            if self.state == DriverState.UNCONFIGURED:
                return TickResult()
            try:
                reading = self.backend.read_state()
                self._check_reading(reading)
                health = self.backend.health()
                if not health.ok:
                    raise BackendError(health.message or "backend unhealthy")
                self.last_measured = reading
            except BackendError as exc:
                if self.state != DriverState.ERROR:
                    self._fault(str(exc))
                cmd = self._send_hold_once() if self.active else None
                return TickResult(self.last_measured, cmd, None, self.last_event)
            if not self.active:
                return TickResult(reading)
            measured = np.asarray(reading.positions, dtype=np.float64)
            self._watch_clock(now, wall)
            self._watch_heartbeat(wall)
            self._watch_chunks(now)
            self._watch_teleop(wall)
            self._watch_tracking(measured)
            if self.state in (DriverState.ESTOPPED, DriverState.ERROR):
                cmd = self._held_command(measured)
            else:
                desired = self._desired(now)
                res = self.safety.filter(desired, self.last_command, self.servo_dt, measured)
                if res.refused:
                    self._event(res.refused)
                cmd = res.command
            sent = None
            if self.actuation_enabled:
                try:
                    sent = np.asarray(self.backend.send_target(cmd), dtype=np.float64)
                except BackendError as exc:
                    self._fault(str(exc))
                    return TickResult(reading, cmd, None, self.last_event)
                self.last_command = sent.copy()
            else:
                self.last_command = cmd.copy()
            return TickResult(reading, cmd, sent, "")

    def _desired(self, now: float) -> np.ndarray:
        if self.state in (DriverState.ESTOPPED, DriverState.ERROR):
            return self.frozen if self.frozen is not None else self.last_command
        if self.state not in (DriverState.ARMING, DriverState.EXECUTING):
            return self.last_command if self.hold_target is None else self.hold_target
        if self.config.input == "teleop":
            return self._teleop_desired(now)
        r = self.executor.target(now)
        self.active_sequence = r.active_sequence
        self.steps_remaining = r.steps_remaining
        if r.clock_jumped_back:
            self._hold("the clock jumped backwards: chunks dropped, holding")
            return self.last_command
        if r.target is None or r.exhausted:
            # hold the chunk's final target (reached at the velocity limit), never zeros
            self._hold("chunk ran out: holding the last commanded position", r.target)
            return self.last_command if r.target is None else r.target
        if self.state == DriverState.ARMING:
            cmd, done = self.ramp.command(now, r.target)
            if done:
                self.state = DriverState.EXECUTING
                self._event(f"armed: executing chunk {r.active_sequence}")
            return cmd
        return r.target

    def _teleop_desired(self, now: float) -> np.ndarray:
        target = self.teleop_target
        if target is None:
            self._hold("teleop: no leader target: holding")
            return self.last_command
        if self.state == DriverState.ARMING:
            cmd, done = self.ramp.command(now, target)
            if done:
                self.state = DriverState.EXECUTING
                self._event("teleop: armed, following the leader")
            return cmd
        return target

    def _watch_teleop(self, wall: float) -> None:
        t = self.config.teleop_timeout_s
        if (t > 0 and self.config.input == "teleop" and self.state in (DriverState.ARMING, DriverState.EXECUTING)
                and self._teleop_wall is not None and wall - self._teleop_wall > t):
            self.counters.watchdog_holds += 1
            self._hold(f"teleop: no leader target for {wall - self._teleop_wall:.2f} s (teleop watchdog {t} s): "
                       "holding (the leader's next target re-arms)")

    def _watch_chunks(self, now: float) -> None:
        t = self.config.chunk_timeout_s
        if (t > 0 and self.state in (DriverState.ARMING, DriverState.EXECUTING)
                and self._last_chunk_time is not None and now - self._last_chunk_time > t):
            self.counters.watchdog_holds += 1
            self._hold(f"no chunk for {now - self._last_chunk_time:.2f} s (watchdog {t} s): holding")

    def _watch_heartbeat(self, wall: float) -> None:
        t = self.config.heartbeat_timeout_s
        if t <= 0 or self._heartbeat_lost or self._last_heartbeat is None:
            return
        if wall - self._last_heartbeat > t:
            self._heartbeat_lost = True
            self.counters.heartbeat_losses += 1
            moving = self.state in (DriverState.ARMING, DriverState.EXECUTING)
            if self.require_start:
                self.operator_started = False
            if moving or self.state == DriverState.HOLDING:
                self._hold(f"operator heartbeat lost for {wall - self._last_heartbeat:.2f} s (deadman {t} s): holding"
                           + (" (call start after it is back)" if self.require_start else ""))

    def _watch_clock(self, now: float, wall: float) -> None:
        if self._last_now is None or now > self._last_now:
            self._last_now = now
            self._now_advanced_wall = wall
            if self._stalled:
                self._stalled = False
                self._event("clock running again")
            return
        if (not self._stalled and self._now_advanced_wall is not None
                and wall - self._now_advanced_wall > self.config.clock_stall_s):
            self._stalled = True
            self._event(f"the node clock has not advanced for {wall - self._now_advanced_wall:.2f} s: holding (simulation paused?)")

    def _watch_tracking(self, measured: np.ndarray) -> None:
        """Measured vs the last command on the arm joints: beyond the bound is a fault naming the joint."""
        bound = self.config.tracking_error_max
        if (bound <= 0 or self.last_command is None or not self.actuation_enabled or not self.torque_on
                or self.state not in (DriverState.HOLDING, DriverState.ARMING, DriverState.EXECUTING)):
            return
        err = np.abs(self.last_command - measured) * self._arm_joint_mask
        if float(err.max(initial=0.0)) > bound:
            i = int(np.argmax(err))
            self.counters.tracking_faults += 1
            self._fault(f"tracking error on joint '{self.joint_names[i]}': commanded {self.last_command[i]:.3f}, "
                        f"measured {measured[i]:.3f} ({err[i]:.3f} rad, bound {bound} rad)")

    def _held_command(self, measured: np.ndarray) -> np.ndarray:
        """ESTOPPED / ERROR: the frozen position, moved only onto the arm where the arm was displaced."""
        if self.frozen is None:
            self.frozen = self.last_command.copy()
        bound = self.config.max_relative_target or self.config.tracking_error_max
        if bound > 0:
            displaced = (np.abs(self.frozen - measured) > bound) & self._arm_joint_mask
            if np.any(displaced):
                names = [self.joint_names[i] for i in np.flatnonzero(displaced)]
                self.frozen = np.where(displaced, measured, self.frozen)
                self._event(f"arm '{self.arm_name}' is away from its held position ({', '.join(names)}): "
                            "holding where it is now, never pulling it back")
        return self.frozen.copy()

    def _freeze(self) -> None:
        """Enter ESTOPPED / ERROR: hold exactly what was commanded this instant, drop everything else."""
        self.executor.clear()
        self.ramp.reset()
        self.hold_target = None
        self.active_sequence = 0
        self.steps_remaining = 0
        if self.frozen is None and self.last_command is not None:
            self.frozen = self.last_command.copy()

    def _stale(self, chunk: ChunkInput) -> bool:
        """Ordered by observation first, then by sequence among chunks of one observation.

        A chunk from an older observation than the newest accepted one is stale whatever its
        sequence; chunks of the same observation (a slow camera, fresh joint states) must count
        up. A restarted policy numbers its chunks from 1 again: its newer observations are taken.
        """
        if chunk.stamp != self._last_stamp:
            return chunk.stamp < self._last_stamp
        return chunk.sequence <= self._last_sequence

    def _forget_chunk_order(self) -> None:
        self._last_sequence, self._last_stamp = 0, -np.inf

    def _monotone(self, now: float) -> float:
        """``now`` never behind the newest reading seen by less than the race tolerance (see config)."""
        newest = self._newest_now
        if newest is not None and newest - self.config.clock_race_tolerance_s <= now < newest:
            return newest
        if newest is not None and now < newest:
            self._forget_chunk_order()  # stamps of the old clock say nothing about the new one's
        self._newest_now = now  # newer, or a real jump back: the new clock is the reference
        return now

    # -- helpers ----------------------------------------------------------------------------
    def _hold(self, why: str, target: np.ndarray | None = None) -> None:
        """Stop executing; hold ``target`` (default: the last command sent, i.e. stop right here)."""
        self.hold_target = None if target is None else np.asarray(target, dtype=np.float64).copy()
        self.executor.clear()
        self.ramp.reset()
        self.active_sequence = 0
        self.steps_remaining = 0
        if self.state in (DriverState.ARMING, DriverState.EXECUTING, DriverState.HOLDING):
            self.state = DriverState.HOLDING
        self._event(why)

    def _send_hold_once(self) -> np.ndarray | None:
        held = self.frozen if self.state in (DriverState.ESTOPPED, DriverState.ERROR) and self.frozen is not None else self.last_command
        if held is None:
            return None
        if self.actuation_enabled:
            try:
                self.backend.send_target(held)
            except BackendError:
                pass
        return held

    def _fault(self, message: str) -> None:
        self.error = message
        self._freeze()
        self.operator_started = False
        self.state = DriverState.ERROR
        self._event(f"backend fault on arm '{self.arm_name}': {message}: holding")

    def _check_reading(self, reading: JointReading) -> None:
        pos = np.asarray(reading.positions, dtype=np.float64)
        if pos.shape != (len(self.joint_names),):
            raise BackendError(f"arm '{self.arm_name}': backend returned {pos.shape} positions for {len(self.joint_names)} joints")
        if not np.all(np.isfinite(pos)):
            bad = [self.joint_names[i] for i in np.flatnonzero(~np.isfinite(pos))]
            raise BackendError(f"arm '{self.arm_name}': non-finite position reading for {', '.join(bad)}")

    def status(self) -> dict:
        with self.lock:
            return {
                "arm": self.arm_name,
                "state": int(self.state),
                "actuation_enabled": self.actuation_enabled,
                "dry_run": not self.actuation_enabled,
                "estop_latched": self.estop_latched,
                "operator_started": self.operator_started,
                "active_sequence": self.active_sequence,
                "steps_remaining": self.steps_remaining,
                "last_event": self.last_event,
                "input": self.config.input,
                **self.counters.as_dict(),
            }
