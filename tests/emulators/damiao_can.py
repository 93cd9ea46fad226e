"""Damiao DM4340 / DM4310 motors (a YAM arm: ids 1-3 DM4340, 4-6 DM4310, gripper 7 DM4310) on
python-can's ``virtual`` bus, speaking the frames and registers i2rt uses.

Frames (standard 11-bit ids, 8 data bytes):

- special frames on the motor id: ``FF x7 FC`` enable (answered with a feedback frame),
  ``FF x7 FD`` disable (answered), ``FF x7 FE`` save zero (answered), ``FF x7 FB`` clear error
  (not answered);
- MIT command on the motor id: p16 | v12 | kp12 | kd12 | t12, big-endian bitfields scaled
  linearly over [-PMAX, PMAX], [-VMAX, VMAX], [0, 500], [0, 5], [-TMAX, TMAX];
- feedback on id + 0x10 (MST_ID): ``data[0] = status << 4 | id``, p16, v12, t12, T_mos, T_rotor;
  status 1 ok, 0 disabled, 8 over-voltage, 9 under-voltage, A over-current, B MOS over-temp,
  C rotor over-temp, D communication loss, E overload;
- registers on 0x7FF: ``[id, 0, cmd, addr, v0..v3]`` (cmd 0x33 read, 0x55 write, 0xAA save),
  values little-endian float32 or uint32; the reply ``[id, 0, cmd, addr, value]`` comes on MST_ID
  (a save is answered with a short ``[id, 0, 0xAA, 1]``).

Behaviour: Gr / PMAX / VMAX / TMAX / CTRL_MODE / hw and sw versions as i2rt's start-up checks read
them; the TIMEOUT register (counts of 50 us; 8000 = 400 ms) is the motor's command watchdog: an
enabled motor that receives no command for that long reports status D and damps (kp = 0, only
damping). The plant per motor is a rigid inertia with viscous friction driven by
``kp (p - q) + kd (v - qd) (+ tau)``; on the arm joints the feed-forward torque is taken as
cancelling gravity (i2rt feeds gravity compensation from its MuJoCo model), the gripper moves
under torque between hard stops (so i2rt's gripper calibration finds its limits).

Faults: ``set_rotor_temperature(id, C)`` (above OT_Value, status C: the motor stops its output
and the error stays latched until it cools and is cleared), ``inject_error(id, code)``,
``go_silent()`` (the bus goes quiet: nothing is answered and no command reaches the motors, whose
watchdogs then damp them), ``resume()``.

Every frame the motors receive is logged with its ``time.monotonic()`` arrival, so latency is
measured on the motors' side of the bus.
"""

from __future__ import annotations

import collections
import math
import struct
import threading
import time
from dataclasses import dataclass, field

import can

FEEDBACK_OFFSET = 0x10
REGISTER_ID = 0x7FF
CMD_READ, CMD_WRITE, CMD_SAVE = 0x33, 0x55, 0xAA
ENABLE, DISABLE, SAVE_ZERO, CLEAR_ERROR = 0xFC, 0xFD, 0xFE, 0xFB
ST_DISABLED, ST_OK, ST_OVERVOLT, ST_UNDERVOLT, ST_OVERCURRENT = 0x0, 0x1, 0x8, 0x9, 0xA
ST_MOS_OVERTEMP, ST_ROTOR_OVERTEMP, ST_COMM_LOSS, ST_OVERLOAD = 0xB, 0xC, 0xD, 0xE
TIMEOUT_UNIT_S = 50e-6

MOTOR_TYPES = {
    # P, V, T max; Gr; inertia (kg m^2 at the output), viscous friction
    "DM4340": dict(pmax=12.5, vmax=10.0, tmax=28.0, gr=40.0, inertia=0.05, friction=0.3),
    "DM4310": dict(pmax=12.5, vmax=30.0, tmax=10.0, gr=10.0, inertia=0.01, friction=0.05),
}
KP_MAX, KD_MAX = 500.0, 5.0
FLOAT_REGS = {0, 1, 2, 3, 4, 5, 6, 11, 12} | set(range(17, 35)) | set(range(50, 56)) | {80, 81}
YAM_MOTORS = [(1, "DM4340"), (2, "DM4340"), (3, "DM4340"), (4, "DM4310"), (5, "DM4310"), (6, "DM4310"), (7, "DM4310")]


def uint_to_float(x: int, lo: float, hi: float, bits: int) -> float:
    return x * (hi - lo) / ((1 << bits) - 1) + lo


def float_to_uint(x: float, lo: float, hi: float, bits: int) -> int:
    x = min(max(x, lo), hi)
    return int((x - lo) * ((1 << bits) - 1) / (hi - lo))


def decode_mit(data: bytes, c: dict) -> tuple[float, float, float, float, float]:
    p = (data[0] << 8) | data[1]
    v = (data[2] << 4) | (data[3] >> 4)
    kp = ((data[3] & 0xF) << 8) | data[4]
    kd = (data[5] << 4) | (data[6] >> 4)
    t = ((data[6] & 0xF) << 8) | data[7]
    return (uint_to_float(p, -c["pmax"], c["pmax"], 16), uint_to_float(v, -c["vmax"], c["vmax"], 12),
            uint_to_float(kp, 0.0, KP_MAX, 12), uint_to_float(kd, 0.0, KD_MAX, 12),
            uint_to_float(t, -c["tmax"], c["tmax"], 12))


@dataclass
class ReceivedFrame:
    t: float
    arbitration_id: int
    data: bytes


@dataclass
class EmulatedMotor:
    motor_id: int
    motor_type: str
    q: float = 0.0
    qd: float = 0.0
    tau: float = 0.0
    enabled: bool = False
    error: int = 0  # latched fault status (0 = none)
    timed_out: bool = False
    t_mos: float = 32.0
    t_rotor: float = 30.0
    stops: tuple[float, float] | None = None  # hard stops (gripper)
    feedforward_cancels_gravity: bool = True
    cmd: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
    last_cmd_t: float = field(default_factory=time.monotonic)
    _t: float = field(default_factory=time.monotonic)
    zero_offset: float = 0.0
    regs: dict = field(default_factory=dict)
    commands_received: int = 0

    def __post_init__(self) -> None:
        c = MOTOR_TYPES[self.motor_type]
        self.c = c
        self.regs = {0: 12.0, 1: 0.1, 2: 120.0, 3: 0.9, 4: 10.0, 5: -10.0, 6: 30.0, 7: self.motor_id + FEEDBACK_OFFSET,
                     8: self.motor_id, 9: 8000, 10: 1, 11: 0.0, 12: 0.0, 13: 0x10, 14: 0x0623, 15: 1000 + self.motor_id,
                     16: 14, 20: c["gr"], 21: c["pmax"], 22: c["vmax"], 23: c["tmax"], 29: 30.0, 35: 4, 36: 1}

    @property
    def status(self) -> int:
        if self.error:
            return self.error
        if self.timed_out:
            return ST_COMM_LOSS
        return ST_OK if self.enabled else ST_DISABLED

    @property
    def watchdog_s(self) -> float:
        return int(self.regs.get(9, 0)) * TIMEOUT_UNIT_S

    @property
    def mode(self) -> str:
        """What the motor is doing: 'off', 'fault', 'damping' (watchdog) or 'mit'."""
        if self.error:
            return "fault"
        if self.timed_out:
            return "damping"
        return "mit" if self.enabled else "off"

    def advance(self, now: float) -> None:
        dt = min(0.05, max(0.0, now - self._t))
        self._t = now
        wd = self.watchdog_s
        if self.enabled and not self.error and not self.timed_out and wd > 0 and now - self.last_cmd_t > wd:
            self.timed_out = True
        if self.t_rotor > self.regs[2] and not self.error:
            self.error = ST_ROTOR_OVERTEMP
        steps = max(1, int(math.ceil(dt / 0.001)))
        h = dt / steps
        c = self.c
        for _ in range(steps if dt > 0 else 0):
            if self.error or not self.enabled:
                tau = 0.0
            elif self.timed_out:
                tau = -1.0 * self.qd  # the firmware's damping on loss of commands
            else:
                p, v, kp, kd, t_ff = self.cmd
                tau = kp * (p - self.q) + kd * (v - self.qd)
                if self.stops is not None or not self.feedforward_cancels_gravity:
                    tau += t_ff
            tau = min(max(tau, -c["tmax"]), c["tmax"])
            self.tau = tau
            acc = (tau - c["friction"] * self.qd) / c["inertia"]
            self.qd += acc * h
            self.qd = min(max(self.qd, -c["vmax"]), c["vmax"])
            self.q += self.qd * h
            if self.stops is not None:
                lo, hi = self.stops
                if self.q < lo:
                    self.q, self.qd = lo, 0.0
                elif self.q > hi:
                    self.q, self.qd = hi, 0.0
        if dt > 0 and (self.error or not self.enabled):
            self.tau = 0.0

    def feedback(self) -> bytes:
        c = self.c
        p = float_to_uint(self.q - self.zero_offset, -c["pmax"], c["pmax"], 16)
        v = float_to_uint(self.qd, -c["vmax"], c["vmax"], 12)
        t = float_to_uint(self.tau, -c["tmax"], c["tmax"], 12)
        return bytes([(self.status << 4) | (self.motor_id & 0xF), (p >> 8) & 0xFF, p & 0xFF, (v >> 4) & 0xFF,
                      ((v & 0xF) << 4) | ((t >> 8) & 0xF), t & 0xFF, int(self.t_mos) & 0xFF, int(self.t_rotor) & 0xFF])

    def reg_bytes(self, addr: int) -> bytes:
        value = self.regs.get(addr, 0)
        if addr in FLOAT_REGS:
            return struct.pack("<f", float(value))
        return struct.pack("<I", int(value) & 0xFFFFFFFF)

    def set_reg(self, addr: int, raw: bytes) -> None:
        self.regs[addr] = struct.unpack("<f", raw)[0] if addr in FLOAT_REGS else struct.unpack("<I", raw)[0]


class DamiaoBusEmulator:
    """The motors of one arm on one CAN channel (a python-can virtual bus in this process)."""

    def __init__(self, channel: str, motors=YAM_MOTORS, gripper_id: int | None = 7,
                 gripper_stops: tuple[float, float] = (0.0, 6.57), log_size: int = 50000) -> None:
        if "can" not in channel:
            raise ValueError(f"channel '{channel}' must contain 'can' (i2rt branches on it)")
        self.channel = channel
        self.motors: dict[int, EmulatedMotor] = {}
        for mid, mtype in motors:
            m = EmulatedMotor(mid, mtype)
            if mid == gripper_id:
                m.stops = gripper_stops
            self.motors[mid] = m
        self.lock = threading.RLock()
        self.received: collections.deque[ReceivedFrame] = collections.deque(maxlen=log_size)
        self.sent = 0
        self.silent = False
        self._stop = threading.Event()
        self._bus: can.BusABC | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "DamiaoBusEmulator":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._bus = can.Bus(interface="virtual", channel=self.channel, receive_own_messages=False)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"damiao-emulator-{self.channel}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._bus is not None:
            self._bus.shutdown()
            self._bus = None

    # --- faults --------------------------------------------------------------------------------
    def set_rotor_temperature(self, motor_id: int, celsius: float) -> None:
        with self.lock:
            self.motors[motor_id].t_rotor = float(celsius)
            self.motors[motor_id].advance(time.monotonic())

    def inject_error(self, motor_id: int, code: int) -> None:
        with self.lock:
            self.motors[motor_id].error = code

    def go_silent(self) -> None:
        """The bus goes quiet: no answers, and no command reaches the motors any more."""
        with self.lock:
            self.silent = True

    def resume(self) -> None:
        with self.lock:
            self.silent = False

    # --- observation ---------------------------------------------------------------------------
    def motor(self, motor_id: int) -> EmulatedMotor:
        with self.lock:
            m = self.motors[motor_id]
            m.advance(time.monotonic())
            return m

    def frames_since(self, t: float) -> list[ReceivedFrame]:
        with self.lock:
            return [f for f in self.received if f.t >= t]

    def mit_commands_since(self, t: float, motor_id: int) -> list[tuple[float, tuple]]:
        c = self.motors[motor_id].c
        out = []
        for f in self.frames_since(t):
            if f.arbitration_id == motor_id and len(f.data) == 8 and f.data[:7] != b"\xff" * 7:
                out.append((f.t, decode_mit(f.data, c)))
        return out

    # --- the bus -------------------------------------------------------------------------------
    def _run(self) -> None:
        bus = self._bus
        next_tick = time.monotonic()
        while not self._stop.is_set():
            try:
                msg = bus.recv(timeout=0.002)
            except can.CanError:
                break
            now = time.monotonic()
            with self.lock:
                if msg is not None and not self.silent:
                    self.received.append(ReceivedFrame(now, msg.arbitration_id, bytes(msg.data)))
                    reply = self._handle(msg, now)
                    if reply is not None:
                        try:
                            bus.send(reply)
                            self.sent += 1
                        except can.CanError:
                            pass
                if now >= next_tick:  # watchdogs and temperatures keep running without traffic
                    for m in self.motors.values():
                        m.advance(now)
                    next_tick = now + 0.005

    def _reply(self, m: EmulatedMotor, data: bytes) -> can.Message:
        return can.Message(arbitration_id=int(m.regs[7]), data=data, is_extended_id=False)

    def _handle(self, msg: can.Message, now: float) -> can.Message | None:
        data = bytes(msg.data)
        if msg.arbitration_id == REGISTER_ID:
            if len(data) < 4:
                return None
            m = self.motors.get(data[0])
            if m is None:
                return None
            cmd, addr = data[2], data[3]
            if cmd == CMD_READ:
                return self._reply(m, bytes([m.motor_id, 0, CMD_READ, addr]) + m.reg_bytes(addr))
            if cmd == CMD_WRITE and len(data) == 8:
                m.set_reg(addr, data[4:8])
                return self._reply(m, bytes([m.motor_id, 0, CMD_WRITE, addr]) + m.reg_bytes(addr))
            if cmd == CMD_SAVE:
                return self._reply(m, bytes([m.motor_id, 0, CMD_SAVE, 1]))
            return None
        m = self.motors.get(msg.arbitration_id)
        if m is None or len(data) != 8:
            return None
        m.advance(now)
        if data[:7] == b"\xff" * 7:
            code = data[7]
            if code == ENABLE:
                if not m.error:
                    m.enabled, m.timed_out = True, False
                    m.cmd = (m.q - m.zero_offset, 0.0, 0.0, 0.0, 0.0)
                    m.last_cmd_t = now
                return self._reply(m, m.feedback())
            if code == DISABLE:
                m.enabled, m.timed_out = False, False
                return self._reply(m, m.feedback())
            if code == SAVE_ZERO:
                m.zero_offset = m.q
                return self._reply(m, m.feedback())
            if code == CLEAR_ERROR:
                if m.error and m.t_rotor <= m.regs[2] and m.t_mos <= m.regs[2]:
                    m.error = 0
                    m.enabled = False
                if m.timed_out:
                    m.timed_out, m.enabled = False, False
                return None
            return None
        # an MIT command
        m.commands_received += 1
        if int(m.regs[10]) == 1 and m.enabled and not m.error and not m.timed_out:
            p, v, kp, kd, t = decode_mit(data, m.c)
            m.cmd = (p + m.zero_offset, v, kp, kd, t)
            m.last_cmd_t = now
        return self._reply(m, m.feedback())
