"""YAM arms through i2rt (PyPI ``dreamscale-i2rt``): Damiao motors over socketcan, one channel per arm.

i2rt does the motor work: start-up register checks, enabling, MIT control at its own loop rate
with gravity compensation from its MuJoCo model, the gripper's force limiter. It also fails
quietly in ways this backend turns into clear errors and a safe state:

- a motor error (e.g. rotor over-temperature, status 0xC) or a motor that stops answering kills
  i2rt's control thread, while ``get_joint_pos()`` keeps returning the last values and
  ``command_joint_pos()`` is still accepted. The backend watches the thread's liveness (and
  catches its exception, which names the motor) and the freshness of the feedback (the chain's
  state object is replaced on every bus cycle): either failing latches an error naming the arm,
  the motor and the joint, stops i2rt's loop, and from then on nothing is commanded; the motors'
  own command watchdog (the TIMEOUT register) then puts them into damping;
- a fault present at enable time makes i2rt's bring-up retry forever: the backend reads every
  motor's status first (a zero-gain MIT frame, which a disabled motor answers without moving)
  and refuses a motor in fault by name; bring-up as a whole runs under ``bringup_timeout_s`` and
  is aborted (its CAN sockets shut) when it overruns;
- i2rt's threads are not daemons and its ``close()`` does not join the control thread: the
  backend stops the loop, joins both threads and closes the bus, also at interpreter exit.

The motors' command timeout (register 9, TIMEOUT, counts of 50 us: i2rt's ``set_timeout.py``
writes 8000 = 400 ms) is read at start-up, reported (``motor_timeout_s``), and the feedback
watchdog must be well inside it; a motor with the timeout off (0) is refused unless
``require_motor_timeout: false``, because a stalled host would then leave it holding torque.

Wire units: radians for the six joints (i2rt's joint space), the gripper 0 = closed .. 1 = open
(i2rt's normalised gripper command, mapped onto ``gripper_limits`` = [closed, open] motor angles).
``disable()`` puts the arm into i2rt's gravity-compensation idle (it floats; YAM has no brakes);
``close()`` stops commanding, after which the motors damp on their own watchdog.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import time
from typing import Any

import numpy as np

from ..backend import ArmBackend, BackendError, BackendHealth, JointReading

log = logging.getLogger(__name__)

TIMEOUT_REGISTER = 9
TIMEOUT_UNIT_S = 50e-6
STATUS_NAMES = {0x0: "disabled", 0x1: "normal", 0x8: "over voltage", 0x9: "under voltage", 0xA: "over current",
                0xB: "mosfet over temperature", 0xC: "motor over temperature", 0xD: "loss communication", 0xE: "overload"}
FAULT_STATUSES = {0x8, 0x9, 0xA, 0xB, 0xC, 0xD, 0xE}

# --- exceptions raised inside i2rt's threads (they never reach the caller) ---------------------
_hook_lock = threading.Lock()
_watched: dict[int, "YamBackend"] = {}
_prev_excepthook = None


def _excepthook(args) -> None:
    backend = _watched.get(args.thread.ident) if args.thread is not None else None
    if backend is not None and args.exc_value is not None:
        backend._thread_failed(args.thread, args.exc_value)
        return
    if _prev_excepthook is not None:
        _prev_excepthook(args)


def _install_excepthook() -> None:
    global _prev_excepthook
    with _hook_lock:
        if threading.excepthook is not _excepthook:
            _prev_excepthook = threading.excepthook
            threading.excepthook = _excepthook


def _register_exit(fn) -> None:
    """Run ``fn`` before the interpreter joins non-daemon threads (i2rt's would otherwise hang exit)."""
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(fn)
            return
        except RuntimeError:  # already shutting down
            pass
    import atexit

    atexit.register(fn)


class YamBackend(ArmBackend):
    """One YAM arm (6 joints + gripper) on one CAN channel."""

    def __init__(self, arm_name: str, joint_names: list[str], *, channel: str, arm_type: str = "yam",
                 gripper_type: str = "linear_4310", gripper: str | None = None, gripper_limits: list[float] | None = None,
                 bringup_timeout_s: float = 15.0, feedback_timeout_s: float = 0.1, require_motor_timeout: bool = True,
                 check_status_at_start: bool = True, kp: list[float] | None = None, kd: list[float] | None = None) -> None:
        super().__init__(arm_name, joint_names)
        if "can" not in channel:
            raise BackendError(f"YAM arm '{arm_name}': channel '{channel}' must be a socketcan interface whose name contains 'can' (can_left, can_right)")
        if not 0.0 < feedback_timeout_s < 1.0:
            raise BackendError(f"YAM arm '{arm_name}': feedback_timeout_s must be in (0, 1) s, got {feedback_timeout_s}")
        if bringup_timeout_s <= 0:
            raise BackendError(f"YAM arm '{arm_name}': bringup_timeout_s must be > 0, got {bringup_timeout_s}")
        self.channel = channel
        self.arm_type = arm_type
        self.gripper_type = gripper_type
        self.gripper = gripper
        self.has_gripper = gripper_type not in ("no_gripper", "yam_teaching_handle")
        n_motors = 7 if self.has_gripper else 6
        if len(joint_names) != n_motors:
            raise BackendError(f"YAM arm '{arm_name}': {len(joint_names)} joints configured, the arm has {n_motors} motors ({gripper_type})")
        if gripper_limits is not None and len(gripper_limits) != 2:
            raise BackendError(f"YAM arm '{arm_name}': gripper_limits must be [closed, open] motor angles (rad)")
        self.gripper_limits = None if gripper_limits is None else [float(x) for x in gripper_limits]
        self.motor_ids = list(range(1, n_motors + 1))
        self.bringup_timeout_s = float(bringup_timeout_s)
        self.feedback_timeout_s = float(feedback_timeout_s)
        self.require_motor_timeout = bool(require_motor_timeout)
        self.check_status_at_start = bool(check_status_at_start)
        self.kp = kp
        self.kd = kd
        self.motor_timeout_s: dict[int, float] = {}
        self.robot = None
        self._lock = threading.RLock()
        self._fault: str | None = None
        self._control_thread: threading.Thread | None = None
        self._server_thread: threading.Thread | None = None
        self._last_state_obj = None
        self._last_fresh = 0.0
        self._enabled = False
        self._exit_registered = False
        self.counters = {"commands": 0, "reads": 0, "bringups": 0}

    # --- naming ------------------------------------------------------------------------------
    def _motor(self, motor_id: int) -> str:
        idx = motor_id - 1
        joint = self.joint_names[idx] if 0 <= idx < len(self.joint_names) else "?"
        return f"motor {motor_id} ({joint})"

    def _where(self) -> str:
        return f"YAM arm '{self.arm_name}' on {self.channel}"

    def _describe_exception(self, exc: BaseException) -> str:
        text = str(exc)
        m = re.search(r"motor(?: id:)? (\d+)", text)
        if m:
            return f"{self._motor(int(m.group(1)))}: {text}"
        return text

    # --- start-up ------------------------------------------------------------------------------
    def _preflight(self) -> None:
        """Read every motor's TIMEOUT register and status before i2rt enables anything."""
        from i2rt.motor_config_tool.dm_motor_registers import read_register
        from i2rt.motor_config_tool.utils import RawCanInterface

        try:
            iface = RawCanInterface(channel=self.channel, bustype="socketcan", name=f"{self.arm_name}-preflight")
        except Exception as exc:
            raise BackendError(f"{self._where()}: cannot open CAN channel {self.channel}: {exc} "
                               f"(bring it up: ip link set {self.channel} type can bitrate 1000000 && ip link set {self.channel} up)") from None
        try:
            for mid in self.motor_ids:
                try:
                    counts = int(read_register(iface, mid, TIMEOUT_REGISTER))
                except Exception as exc:
                    raise BackendError(f"{self._where()}: {self._motor(mid)} does not answer register reads ({exc}); check its power and CAN wiring") from None
                self.motor_timeout_s[mid] = counts * TIMEOUT_UNIT_S
                if self.check_status_at_start:
                    status = self._probe_status(iface, mid)
                    if status in FAULT_STATUSES:
                        # a latched error whose cause is gone (it cooled; the host stopped talking) clears
                        self._clear_error(iface, mid)
                        status = self._probe_status(iface, mid)
                    if status in FAULT_STATUSES:
                        raise BackendError(f"{self._where()}: {self._motor(mid)} reports '{STATUS_NAMES.get(status, hex(status))}' "
                                           "before enable (i2rt would retry enabling it forever); clear the cause (cool down, supply), power-cycle, then reset")
        finally:
            try:
                iface.close()
            except Exception:
                pass
        off = [mid for mid, t in self.motor_timeout_s.items() if t <= 0.0]
        if off and self.require_motor_timeout:
            raise BackendError(f"{self._where()}: {', '.join(self._motor(m) for m in off)} has its command timeout off (TIMEOUT = 0): "
                               "a stalled host would leave it holding torque. Write one (i2rt motor_config_tool/set_timeout.py --timeout, 8000 = 400 ms) "
                               "or set backend.require_motor_timeout: false")
        short = [(m, t) for m, t in self.motor_timeout_s.items() if 0.0 < t <= 2.0 * self.feedback_timeout_s]
        if short:
            m, t = short[0]
            raise BackendError(f"{self._where()}: {self._motor(m)} command timeout {t * 1e3:.0f} ms is not well above the feedback watchdog "
                               f"({self.feedback_timeout_s * 1e3:.0f} ms); raise the motor timeout or lower backend.feedback_timeout_s")

    @staticmethod
    def _clear_error(iface, mid: int) -> None:
        import can

        for _ in range(3):
            iface.bus.send(can.Message(arbitration_id=mid, data=bytes([0xFF] * 7 + [0xFB]), is_extended_id=False))
        time.sleep(0.005)

    def _probe_status(self, iface, mid: int) -> int | None:
        """A zero-gain MIT frame (no position, velocity, stiffness, damping or torque) answered with the status."""
        import can

        zero = bytes([0x80, 0x00, 0x80, 0x00, 0x00, 0x00, 0x08, 0x00])  # p=0, v=0, kp=0, kd=0, t=0
        for _ in range(3):
            iface.try_receive_message(mid, timeout=0.002)
            iface.bus.send(can.Message(arbitration_id=mid, data=zero, is_extended_id=False))
            deadline = time.monotonic() + 0.02
            while time.monotonic() < deadline:
                msg = iface.bus.recv(timeout=0.005)
                if msg is not None and msg.arbitration_id == mid + 0x10 and len(msg.data) == 8:
                    return (msg.data[0] >> 4) & 0xF
        return None

    def _bring_up(self, result: dict) -> None:
        try:
            from i2rt.robots.get_robot import get_yam_robot
            from i2rt.robots.utils import ArmType, GripperType

            kwargs: dict[str, Any] = dict(arm_type=ArmType.from_string_name(self.arm_type),
                                          gripper_type=GripperType.from_string_name(self.gripper_type),
                                          zero_gravity_mode=False)
            if self.gripper_limits is not None:
                kwargs["gripper_limits_override"] = np.array(self.gripper_limits)
            before = set(threading.enumerate())
            robot = get_yam_robot(self.channel, **kwargs)
            result["robot"] = robot
            result["threads"] = [t for t in threading.enumerate() if t not in before]
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            result["error"] = exc

    def _abort_bringup(self) -> None:
        """Shut i2rt's CAN sockets on our channel so a bring-up stuck in its enable loop raises and ends."""
        from i2rt.motor_drivers.can_interface import CanInterface
        from i2rt.motor_drivers.dm_driver import DMChainCanInterface

        for obj in gc.get_objects():
            try:
                if isinstance(obj, DMChainCanInterface) and obj.channel == self.channel:
                    obj.running = False
                elif isinstance(obj, CanInterface) and getattr(obj, "channel", None) == self.channel:
                    obj.bus.shutdown()
            except Exception:
                pass

    def connect(self) -> None:
        with self._lock:
            self.close()
            self._fault = None
            _install_excepthook()
            self._preflight()
            result: dict = {}
            worker = threading.Thread(target=self._bring_up, args=(result,), name=f"yam-bringup-{self.arm_name}", daemon=True)
            worker.start()
            worker.join(self.bringup_timeout_s)
            if worker.is_alive():
                self._abort_bringup()
                worker.join(2.0)
                robot = result.get("robot")
                if robot is not None:
                    self.robot = robot
                    self.close()
                raise BackendError(f"{self._where()}: bring-up did not finish within {self.bringup_timeout_s:.1f} s (a motor kept failing to enable); "
                                   "aborted, nothing is commanded. Check the motors' status LEDs and power")
            if "error" in result:
                raise BackendError(f"{self._where()}: bring-up failed: {self._describe_exception(result['error'])}") from None
            self.robot = result["robot"]
            self.counters["bringups"] += 1
            for t in result.get("threads", []):
                if "_set_torques_and_update_state" in t.name:
                    self._control_thread = t
            self._server_thread = getattr(self.robot, "_server_thread", None)
            for t in (self._control_thread, self._server_thread):
                if t is not None and t.ident is not None:
                    _watched[t.ident] = self
            if self._control_thread is None:
                self.close()
                raise BackendError(f"{self._where()}: i2rt's control thread was not found after bring-up")
            if self.kp is not None or self.kd is not None:
                info = self.robot.get_robot_info()
                kp = np.asarray(self.kp if self.kp is not None else info["kp"], dtype=float)
                kd = np.asarray(self.kd if self.kd is not None else info["kd"], dtype=float)
                self.robot.update_kp_kd(kp, kd)
            self._last_state_obj = self.robot.motor_chain.state
            self._last_fresh = time.monotonic()
            self._enabled = True  # zero_gravity_mode=False: i2rt holds the start-up pose
            if not self._exit_registered:
                _register_exit(self.close)
                self._exit_registered = True
            log.info("%s up; motor command timeouts %s", self._where(),
                     {m: f"{t * 1e3:.0f} ms" for m, t in self.motor_timeout_s.items()})

    # --- watchdogs -----------------------------------------------------------------------------
    def _thread_failed(self, thread: threading.Thread, exc: BaseException) -> None:
        if thread is self._control_thread:
            self._latch(f"{self._where()}: i2rt's control loop stopped: {self._describe_exception(exc)}")
        elif self._fault is None:
            self._latch(f"{self._where()}: i2rt's robot server stopped: {self._describe_exception(exc)}")

    def _latch(self, message: str) -> None:
        if self._fault is None:
            self._fault = (message + "; nothing is commanded any more, the motors damp on their command timeout. "
                           "Fix the cause, then reset the driver")
            log.error(self._fault)
        chain = getattr(self.robot, "motor_chain", None)
        if chain is not None:
            chain.running = False  # stop commanding: the motors' own watchdog takes over

    def _check(self) -> None:
        if self._fault:
            return
        if self.robot is None:
            return
        chain = self.robot.motor_chain
        now = time.monotonic()
        state = chain.state
        if state is not self._last_state_obj:
            self._last_state_obj = state
            self._last_fresh = now
            bad = [s for s in state if getattr(s, "error_code", "0x1") != "0x1"]
            if bad:
                s = bad[0]
                self._latch(f"{self._where()}: {self._motor(int(s.id))} reports {s.error_message}")
                return
        if self._control_thread is not None and not self._control_thread.is_alive():
            self._latch(f"{self._where()}: i2rt's control loop stopped")
            return
        if not chain.running:
            self._latch(f"{self._where()}: i2rt's motor chain stopped running")
            return
        age = now - self._last_fresh
        if age > self.feedback_timeout_s:
            self._latch(f"{self._where()}: no motor feedback for {age * 1e3:.0f} ms (watchdog {self.feedback_timeout_s * 1e3:.0f} ms): the CAN bus went silent")

    def health(self) -> BackendHealth:
        with self._lock:
            if self.robot is None and not self._fault:
                return BackendHealth(False, f"{self._where()}: not connected")
            self._check()
            if self._fault:
                return BackendHealth(False, self._fault)
            return BackendHealth(True)

    def _require(self) -> None:
        self._check()
        if self._fault:
            raise BackendError(self._fault)
        if self.robot is None:
            raise BackendError(f"{self._where()}: not connected")

    # --- ArmBackend ------------------------------------------------------------------------------
    def read_state(self) -> JointReading:
        with self._lock:
            self._require()
            obs = self.robot.get_observations()
            infos = self.robot.motor_chain.read_states()
            stamp = self._last_fresh
            if self.has_gripper:
                pos = np.concatenate([obs["joint_pos"], obs["gripper_pos"]])
                vel = np.concatenate([obs["joint_vel"], obs["gripper_vel"]])
                eff = np.concatenate([obs["joint_eff"], obs["gripper_eff"]])
            else:
                pos, vel, eff = obs["joint_pos"], obs["joint_vel"], obs["joint_eff"]
            self.counters["reads"] += 1
            return JointReading(np.array(pos, dtype=float), np.array(vel, dtype=float), np.array(eff, dtype=float), stamp,
                                {"temperature_rotor_c": [i.temp_rotor for i in infos], "temperature_mos_c": [i.temp_mos for i in infos],
                                 "status": [i.error_code for i in infos], "motor_timeout_s": dict(self.motor_timeout_s)})

    def send_target(self, positions: np.ndarray) -> np.ndarray:
        target = np.asarray(positions, dtype=np.float64)
        if target.shape != (len(self.joint_names),):
            raise BackendError(f"{self._where()}: target has shape {target.shape}, expected ({len(self.joint_names)},)")
        if not np.all(np.isfinite(target)):
            bad = [self.joint_names[i] for i in np.flatnonzero(~np.isfinite(target))]
            raise BackendError(f"{self._where()}: non-finite target for {', '.join(bad)}")
        with self._lock:
            self._require()
            sent = target.copy()
            limits = self.robot.get_robot_info().get("joint_limits")
            n_arm = 6
            if limits is not None:
                sent[:n_arm] = np.clip(sent[:n_arm], limits[:n_arm, 0], limits[:n_arm, 1])
            if self.has_gripper:
                sent[n_arm] = float(np.clip(sent[n_arm], 0.0, 1.0))
            self.robot.command_joint_pos(sent.copy())
            self._enabled = True
            self.counters["commands"] += 1
            return sent

    def enable(self) -> None:
        """Hold the present position with the position gains."""
        with self._lock:
            self._require()
            self.robot.command_joint_pos(np.array(self.robot.get_joint_pos(), dtype=float))
            self._enabled = True

    def disable(self) -> None:
        """i2rt's gravity-compensation idle: no position is held, the arm floats (YAM has no brakes)."""
        with self._lock:
            self._require()
            self.robot.enter_gravity_comp_idle()
            self._enabled = False

    def close(self) -> None:
        """Stop commanding, join i2rt's threads, close the bus. The motors damp on their own timeout."""
        with self._lock:
            robot, self.robot = self.robot, None
            if robot is None:
                return
            try:
                stop = getattr(robot, "_stop_event", None)
                if stop is not None:
                    stop.set()
                server = getattr(robot, "_server_thread", None)
                if server is not None and server is not threading.current_thread():
                    server.join(timeout=2.0)
                robot.motor_chain.running = False
                if self._control_thread is not None and self._control_thread is not threading.current_thread():
                    self._control_thread.join(timeout=2.0)
                robot.close()
            except Exception as exc:  # never raises
                log.warning("%s: while closing: %s", self._where(), exc)
            finally:
                for t in (self._control_thread, self._server_thread):
                    if t is not None and t.ident in _watched:
                        _watched.pop(t.ident, None)
                self._control_thread = self._server_thread = None
                self._enabled = False


def create(arm_config: Any, options: dict, **context: Any) -> YamBackend:
    """``arms[].backend``: ``type: i2rt``, ``channel`` (can_left / can_right), ``arm_type`` (yam, yam_pro, ...),
    ``gripper_type`` (linear_4310, ...), optional ``gripper_limits`` [closed, open] (rad; skips calibration),
    ``bringup_timeout_s``, ``feedback_timeout_s``, ``require_motor_timeout``, ``check_status_at_start``, ``kp``, ``kd``."""
    known = {"type", "channel", "arm_type", "gripper_type", "gripper_limits", "bringup_timeout_s", "feedback_timeout_s",
             "require_motor_timeout", "check_status_at_start", "kp", "kd"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise BackendError(f"arm '{arm_config.name}': unknown i2rt backend field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    channel = options.get("channel")
    if not channel:
        raise BackendError(f"arm '{arm_config.name}': i2rt backend needs backend.channel (e.g. can_left)")
    kwargs = {k: options[k] for k in ("arm_type", "gripper_type", "gripper_limits", "bringup_timeout_s", "feedback_timeout_s",
                                      "require_motor_timeout", "check_status_at_start", "kp", "kd") if k in options}
    return YamBackend(arm_config.name, list(arm_config.joints), channel=str(channel), gripper=arm_config.gripper, **kwargs)
