"""A bus of Feetech STS3215 servos behind a pseudo-terminal, speaking the real serial protocol.

What crosses the pty is exactly what crosses an SO-100/101's USB-serial adapter:

- instruction packets ``FF FF ID LEN INST PARAMS CHK`` (LEN = nparams + 2,
  CHK = ~(ID + LEN + INST + params) & 0xFF), broadcast id 0xFE;
- PING 0x01, READ 0x02, WRITE 0x03, REG_WRITE 0x04, ACTION 0x05, SYNC_READ 0x82 (every listed
  servo answers in list order), SYNC_WRITE 0x83 (no answer);
- status packets ``FF FF ID LEN ERR DATA CHK`` whose error byte carries the servo's alarms
  (bit 0 voltage, 1 angle sensor, 2 overheat, 3 over-current, 5 overload);
- the STS control table (little-endian, sign-magnitude with bit 15 for positions/velocities and
  bit 11 for the homing offset; EEPROM writes only land while Lock = 0), where
  Present_Position = Actual - Homing_Offset (mod 4096), goals clamp to the angle limits, the
  servo moves toward its goal at a finite speed only while torque is on, and an over-temperature
  servo unloads (torque off) and reports the overheat bit until it cools.

Instruction packets with a bad checksum are ignored (no answer), as a servo does.

Faults a test can inject: ``pull_cable()`` (the emulator closes its end of the pty: the driver's
next read or write fails), ``replug()`` (a fresh pty behind the same stable path), 
``corrupt_status(n)`` (the next n status packets leave with a wrong checksum),
``set_temperature(id, celsius)``, ``set_voltage(id, decivolts)``, ``remove_servo(id)``; and an
operator's hand: ``move_by_hand(id, present_position)`` (a leader arm's servo, torque off).

Every instruction packet received is logged with its ``time.monotonic()`` arrival time, so tests
and benchmarks measure latency on the emulator's side of the bus.

Run standalone (for benchmarks, in its own process): ``python tests/emulators/feetech_sts3215.py
--link /tmp/ttySO --ids 1 2 3 4 5 6``.
"""

from __future__ import annotations

import argparse
import collections
import os
import pty
import select
import signal
import tempfile
import threading
import time
import tty
from dataclasses import dataclass, field

BROADCAST_ID = 0xFE
INST_PING, INST_READ, INST_WRITE, INST_REG_WRITE, INST_ACTION = 0x01, 0x02, 0x03, 0x04, 0x05
INST_SYNC_READ, INST_SYNC_WRITE = 0x82, 0x83

ERR_VOLTAGE, ERR_ANGLE, ERR_OVERHEAT, ERR_OVERCURRENT, ERR_OVERLOAD = 0x01, 0x02, 0x04, 0x08, 0x20

MODEL_NUMBER_STS3215 = 777
RESOLUTION = 4096

# (address, size) of the registers the emulator gives behaviour to
A_FW_MAJOR, A_FW_MINOR, A_MODEL = 0, 1, 3
A_ID, A_BAUD, A_RETURN_DELAY, A_STATUS_LEVEL = 5, 6, 7, 8
A_MIN_POS, A_MAX_POS, A_MAX_TEMP, A_MAX_VOLT, A_MIN_VOLT, A_MAX_TORQUE = 9, 11, 13, 14, 15, 16
A_PHASE, A_P, A_D, A_I = 18, 21, 22, 23
A_PROTECTION_CURRENT, A_HOMING_OFFSET, A_OPERATING_MODE, A_OVERLOAD_TORQUE = 28, 31, 33, 36
A_TORQUE_ENABLE, A_ACCEL, A_GOAL_POS, A_GOAL_TIME, A_GOAL_VEL, A_TORQUE_LIMIT = 40, 41, 42, 44, 46, 48
A_LOCK, A_PRESENT_POS, A_PRESENT_VEL, A_PRESENT_LOAD, A_VOLTAGE, A_TEMPERATURE = 55, 56, 58, 60, 62, 63
A_STATUS, A_MOVING, A_PRESENT_CURRENT, A_MAX_ACCEL = 65, 66, 69, 85
EEPROM_END = 40  # addresses below this are EEPROM: writable only while Lock = 0


def checksum(body: bytes | bytearray) -> int:
    """``~(sum of ID..last param) & 0xFF`` over everything after the two header bytes."""
    return (~sum(body)) & 0xFF


def packet(servo_id: int, first: int, params: bytes | bytearray = b"") -> bytes:
    """An instruction (first = instruction) or status (first = error byte) packet."""
    body = bytes([servo_id, len(params) + 2, first]) + bytes(params)
    return b"\xff\xff" + body + bytes([checksum(body)])


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    magnitude = min(abs(int(value)), (1 << sign_bit) - 1)
    return ((1 << sign_bit) if value < 0 else 0) | magnitude


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if (raw >> sign_bit) & 1 else magnitude


@dataclass
class ReceivedPacket:
    t: float  # time.monotonic() when the whole packet had arrived
    servo_id: int
    instruction: int
    params: bytes


@dataclass
class EmulatedServo:
    """One STS3215: a 256-byte control table plus a position that moves toward the goal."""

    servo_id: int
    actual: float = 2048.0  # encoder steps, 0..4095 (before the homing offset)
    speed_steps_s: float = 3400.0  # ~0.11 s / 60 deg no-load at 12 V
    table: bytearray = field(default_factory=lambda: bytearray(256))
    velocity: float = 0.0
    _t: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        t = self.table
        t[A_FW_MAJOR], t[A_FW_MINOR] = 3, 10
        t[A_MODEL:A_MODEL + 2] = MODEL_NUMBER_STS3215.to_bytes(2, "little")
        t[A_ID] = self.servo_id
        t[A_BAUD] = 0  # 1 Mbaud
        t[A_RETURN_DELAY] = 250  # factory 500 us; LeRobot sets 0
        t[A_STATUS_LEVEL] = 1
        t[A_MIN_POS:A_MIN_POS + 2] = (0).to_bytes(2, "little")
        t[A_MAX_POS:A_MAX_POS + 2] = (4095).to_bytes(2, "little")
        t[A_MAX_TEMP] = 70
        t[A_MAX_VOLT], t[A_MIN_VOLT] = 140, 40
        t[A_MAX_TORQUE:A_MAX_TORQUE + 2] = (1000).to_bytes(2, "little")
        t[A_PHASE] = 0x0C
        t[A_P], t[A_D], t[A_I] = 32, 32, 0
        t[A_PROTECTION_CURRENT:A_PROTECTION_CURRENT + 2] = (500).to_bytes(2, "little")
        t[A_OVERLOAD_TORQUE] = 80
        t[A_ACCEL] = 0
        t[A_TORQUE_LIMIT:A_TORQUE_LIMIT + 2] = (1000).to_bytes(2, "little")
        t[A_VOLTAGE] = 120  # 12.0 V
        t[A_TEMPERATURE] = 30
        t[A_MAX_ACCEL] = 0
        self._set_goal_from_present()

    # --- registers -------------------------------------------------------------------------
    def u16(self, addr: int) -> int:
        return int.from_bytes(self.table[addr:addr + 2], "little")

    def set_u16(self, addr: int, value: int) -> None:
        self.table[addr:addr + 2] = (value & 0xFFFF).to_bytes(2, "little")

    @property
    def homing_offset(self) -> int:
        return decode_sign_magnitude(self.u16(A_HOMING_OFFSET), 11)

    @property
    def torque_enabled(self) -> bool:
        return bool(self.table[A_TORQUE_ENABLE])

    @property
    def goal_present_frame(self) -> int:
        return decode_sign_magnitude(self.u16(A_GOAL_POS), 15)

    def present_position(self) -> int:
        return int(round(self.actual - self.homing_offset)) % RESOLUTION

    def error_byte(self) -> int:
        err = 0
        v = self.table[A_VOLTAGE]
        if v > self.table[A_MAX_VOLT] or v < self.table[A_MIN_VOLT]:
            err |= ERR_VOLTAGE
        if self.table[A_TEMPERATURE] > self.table[A_MAX_TEMP]:
            err |= ERR_OVERHEAT
        return err

    def _set_goal_from_present(self) -> None:
        self.set_u16(A_GOAL_POS, encode_sign_magnitude(self.present_position(), 15))

    # --- motion ----------------------------------------------------------------------------
    def advance(self, now: float) -> None:
        dt = max(0.0, now - self._t)
        self._t = now
        if self.error_byte() & ERR_OVERHEAT:
            # protection: the servo unloads (torque off) while it is too hot
            self.table[A_TORQUE_ENABLE] = 0
        if not self.torque_enabled or dt == 0.0:
            self.velocity = 0.0
            self._update_feedback_registers()
            return
        lo, hi = self.u16(A_MIN_POS), self.u16(A_MAX_POS)
        goal = self.goal_present_frame
        if lo < hi:
            goal = min(max(goal, lo), hi)
        target_actual = goal + self.homing_offset
        err = target_actual - self.actual
        step = self.speed_steps_s * dt
        if abs(err) <= step:
            moved = err
        else:
            moved = step if err > 0 else -step
        self.actual += moved
        self.velocity = moved / dt
        self._update_feedback_registers()

    def _update_feedback_registers(self) -> None:
        self.set_u16(A_PRESENT_POS, encode_sign_magnitude(self.present_position(), 15))
        self.set_u16(A_PRESENT_VEL, encode_sign_magnitude(int(round(self.velocity)), 15))
        load = 0 if not self.torque_enabled else min(1000, int(abs(self.velocity) / 10))
        self.set_u16(A_PRESENT_LOAD, encode_sign_magnitude(load, 10))
        moving = self.torque_enabled and abs(self.goal_present_frame + self.homing_offset - self.actual) > 1
        self.table[A_MOVING] = 1 if moving else 0
        self.table[A_STATUS] = self.error_byte()

    # --- instructions ----------------------------------------------------------------------
    def write(self, addr: int, data: bytes) -> None:
        end = addr + len(data)
        if end > 256:
            return
        if addr < EEPROM_END and self.table[A_LOCK]:
            # EEPROM is locked: the EEPROM part of the write does not land
            skip = EEPROM_END - addr
            if skip >= len(data):
                return
            addr, data = EEPROM_END, data[skip:]
        torque_before = self.torque_enabled
        self.table[addr:addr + len(data)] = data
        if A_ID in range(addr, addr + len(data)):
            self.servo_id = self.table[A_ID]
        if not torque_before and self.torque_enabled and self.error_byte() & ERR_OVERHEAT:
            self.table[A_TORQUE_ENABLE] = 0
        if torque_before != self.torque_enabled and not self.torque_enabled:
            self.velocity = 0.0

    def read(self, addr: int, length: int) -> bytes:
        return bytes(self.table[addr:addr + length])


class FeetechBusEmulator:
    """Servos sharing one half-duplex bus, behind a pty whose slave is reachable at ``port``.

    ``port`` is a stable symlink (``link``) to the current pty slave, so a driver that reconnects
    after ``replug()`` opens the same path. Use as a context manager or call ``start``/``stop``.
    """

    def __init__(self, ids=(1, 2, 3, 4, 5, 6), link: str | None = None, log_size: int = 20000) -> None:
        self.servos: dict[int, EmulatedServo] = {i: EmulatedServo(i) for i in ids}
        self._tmpdir = None
        if link is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="sts3215-")
            link = os.path.join(self._tmpdir.name, "ttySTS")
        self.port = link
        self.lock = threading.RLock()
        self.received: collections.deque[ReceivedPacket] = collections.deque(maxlen=log_size)
        self.status_sent = 0
        self.bad_checksums_received = 0
        self._corrupt_next = 0
        self._pending: dict[int, tuple[int, bytes]] = {}  # REG_WRITE, applied by ACTION
        self._master: int | None = None
        self._slave: int | None = None
        self._buf = bytearray()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()

    # --- life cycle --------------------------------------------------------------------------
    def __enter__(self) -> "FeetechBusEmulator":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._open_pty()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sts3215-emulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._close_pty()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.unlink(self.port)
        except OSError:
            pass
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def _open_pty(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)
        with self.lock:
            self._master, self._slave = master, slave
            self._buf.clear()
        tmp = self.port + ".new"
        try:
            os.unlink(tmp)
        except OSError:
            pass
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.port)

    def _close_pty(self) -> None:
        with self.lock:
            for fd in (self._master, self._slave):
                if fd is not None:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._master = self._slave = None

    # --- faults -------------------------------------------------------------------------------
    def pull_cable(self) -> None:
        """The emulator closes its end: the driver's next transfer on the port fails."""
        self._close_pty()
        os.write(self._wake_w, b"x")

    def replug(self) -> None:
        """A fresh pty behind the same ``port`` path (the cable plugged back in)."""
        self._close_pty()
        self._open_pty()
        os.write(self._wake_w, b"x")

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def corrupt_status(self, count: int = 1) -> None:
        """The next ``count`` status packets leave with a wrong checksum."""
        with self.lock:
            self._corrupt_next += count

    def set_temperature(self, servo_id: int, celsius: int) -> None:
        with self.lock:
            self.servos[servo_id].table[A_TEMPERATURE] = int(celsius)

    def set_voltage(self, servo_id: int, decivolts: int) -> None:
        with self.lock:
            self.servos[servo_id].table[A_VOLTAGE] = int(decivolts)

    def move_by_hand(self, servo_id: int, present_position: int) -> None:
        """An operator moves a servo (a leader arm's, torque off) so it reads ``present_position``."""
        with self.lock:
            s = self.servos[servo_id]
            s.actual = float((int(present_position) + s.homing_offset) % RESOLUTION)
            s._update_feedback_registers()

    def remove_servo(self, servo_id: int) -> EmulatedServo:
        with self.lock:
            return self.servos.pop(servo_id)

    # --- observation (tests) ------------------------------------------------------------------
    def servo(self, servo_id: int) -> EmulatedServo:
        with self.lock:
            s = self.servos[servo_id]
            s.advance(time.monotonic())
            return s

    def packets_since(self, t: float, instruction: int | None = None) -> list[ReceivedPacket]:
        with self.lock:
            return [p for p in self.received if p.t >= t and (instruction is None or p.instruction == instruction)]

    def goal_writes_since(self, t: float) -> list[tuple[float, dict[int, int]]]:
        """Goal_Position writes (sync or single) received since t: (arrival, {id: goal})."""
        out = []
        for p in self.packets_since(t):
            if p.instruction == INST_SYNC_WRITE and p.params[0] == A_GOAL_POS:
                n = p.params[1]
                body = p.params[2:]
                goals = {}
                for k in range(0, len(body), n + 1):
                    sid = body[k]
                    goals[sid] = decode_sign_magnitude(int.from_bytes(body[k + 1:k + 3], "little"), 15)
                out.append((p.t, goals))
            elif p.instruction == INST_WRITE and p.params[0] == A_GOAL_POS and len(p.params) >= 3:
                out.append((p.t, {p.servo_id: decode_sign_magnitude(int.from_bytes(p.params[1:3], "little"), 15)}))
        return out

    # --- the bus ------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            master = self._master
            fds = [self._wake_r] + ([master] if master is not None else [])
            try:
                ready, _, _ = select.select(fds, [], [], 0.5)
            except (OSError, ValueError):
                continue
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
            if master is None or master not in ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:
                # nobody has the slave open (driver closed or not yet opened): keep waiting
                time.sleep(0.002)
                continue
            if not chunk:
                continue
            now = time.monotonic()
            replies = bytearray()
            with self.lock:
                if master != self._master:
                    continue
                self._buf.extend(chunk)
                for servo_id, inst, params in self._parse():
                    self.received.append(ReceivedPacket(now, servo_id, inst, params))
                    replies.extend(self._execute(servo_id, inst, params, now))
                if replies:
                    try:
                        os.write(master, bytes(replies))
                    except OSError:
                        pass

    def _parse(self):
        buf = self._buf
        while True:
            start = buf.find(b"\xff\xff")
            if start < 0:
                if buf[-1:] != b"\xff":
                    buf.clear()
                return
            if start:
                del buf[:start]
            if len(buf) < 4:
                return
            # ids 0xFF are not valid: resynchronise on the next header byte
            if buf[2] == 0xFF:
                del buf[0]
                continue
            length = buf[3]
            total = length + 4
            if length < 2:
                del buf[:2]
                continue
            if len(buf) < total:
                return
            body = bytes(buf[2:total - 1])
            chk = buf[total - 1]
            del buf[:total]
            if checksum(body) != chk:
                self.bad_checksums_received += 1
                continue  # a servo ignores a packet whose checksum is wrong
            yield body[0], body[2], body[3:]

    def _status(self, servo: EmulatedServo, data: bytes = b"") -> bytes:
        pkt = bytearray(packet(servo.servo_id, servo.error_byte(), data))
        if self._corrupt_next > 0:
            self._corrupt_next -= 1
            pkt[-1] ^= 0x5A
        self.status_sent += 1
        return bytes(pkt)

    def _execute(self, servo_id: int, inst: int, params: bytes, now: float) -> bytes:
        for s in self.servos.values():
            s.advance(now)
        if inst == INST_SYNC_WRITE and servo_id == BROADCAST_ID and len(params) >= 2:
            addr, n = params[0], params[1]
            body = params[2:]
            for k in range(0, len(body) - n, n + 1):
                s = self.servos.get(body[k])
                if s is not None:
                    s.write(addr, body[k + 1:k + 1 + n])
            return b""
        if inst == INST_SYNC_READ and servo_id == BROADCAST_ID and len(params) >= 2:
            addr, n = params[0], params[1]
            out = bytearray()
            for sid in params[2:]:
                s = self.servos.get(sid)
                if s is not None:
                    out.extend(self._status(s, s.read(addr, n)))
            return bytes(out)
        if servo_id == BROADCAST_ID:
            if inst == INST_PING:
                return b"".join(self._status(s) for s in sorted(self.servos.values(), key=lambda s: s.servo_id))
            if inst == INST_ACTION:
                for sid, (addr, data) in list(self._pending.items()):
                    if sid in self.servos:
                        self.servos[sid].write(addr, data)
                self._pending.clear()
                return b""
            if inst == INST_WRITE and params:
                for s in self.servos.values():
                    s.write(params[0], params[1:])
            return b""
        s = self.servos.get(servo_id)
        if s is None:
            return b""  # nobody answers
        if inst == INST_PING:
            return self._status(s)
        if inst == INST_READ and len(params) >= 2:
            return self._status(s, s.read(params[0], params[1]))
        if inst == INST_WRITE and params:
            s.write(params[0], params[1:])
            s.advance(now)
            return self._status(s)
        if inst == INST_REG_WRITE and params:
            self._pending[servo_id] = (params[0], params[1:])
            return self._status(s)
        if inst == INST_ACTION:
            if servo_id in self._pending:
                addr, data = self._pending.pop(servo_id)
                s.write(addr, data)
            return b""
        return self._status(s)  # unknown instruction: answered, nothing done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--link", required=True, help="path of the stable symlink to the pty slave")
    ap.add_argument("--ids", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    args = ap.parse_args()
    emu = FeetechBusEmulator(ids=args.ids, link=args.link)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    emu.start()
    print(f"ready {emu.port}", flush=True)
    done.wait()
    emu.stop()


if __name__ == "__main__":
    main()
