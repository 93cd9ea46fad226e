"""SO-100 / SO-101 follower arms: Feetech STS3215 servos through the vendor SDK (``scservo_sdk``).

The backend speaks the project's wire units (radians; gripper 0 = closed .. 1 = open) and reads
and writes the calibration files LeRobot users already have (``lerobot-calibrate`` writes
``~/.cache/huggingface/lerobot/calibration/robots/so10x_follower/<id>.json``: per motor ``id``,
``drive_mode``, ``homing_offset``, ``range_min``, ``range_max``). Conversions follow LeRobot's
``use_degrees`` reading of that file exactly, so a position here is LeRobot's degrees in radians:

- arm joints: ``rad = (raw - mid) * 2*pi / 4095`` with ``mid = (range_min + range_max) / 2``
  (LeRobot ignores ``drive_mode`` in degrees mode, and so does this backend);
- gripper: ``(raw - range_min) / (range_max - range_min)``, inverted when ``drive_mode`` = 1
  (LeRobot's 0..100 divided by 100).

The MolmoAct2-SO100_101 checkpoint's own units (old-calibration signs and offsets, degrees) are
the policy side's business (``model.units`` in the embodiment config).

Only ``scservo_sdk`` (PyPI ``feetech-servo-sdk``) and pyserial are needed: no torch, no lerobot.
Every bus exchange is the SDK's own packet code (ping, read, write, sync read, sync write);
the backend adds retries, status-byte checks (the SDK's GroupSyncRead drops the error byte, so
the sync read is driven packet by packet to keep it) and the safe-state rules:

- a corrupted or missing status packet is retried (``read_retries``) and then reported, naming
  the servo and the SDK's result;
- a servo that reports overheat (or any alarm bit) latches an error that names the joint: the
  backend stops commanding (the overheated servo unloads itself; the others hold their last
  goal), until ``connect()`` is called again (the driver's reset);
- a serial port that disappears (cable pulled) latches an error naming the port; the servos hold
  their last goal; ``connect()`` reopens the same port path.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import ArmBackend, BackendError, BackendHealth, JointReading

log = logging.getLogger(__name__)

# --- protocol facts (STS3215, protocol 0) ------------------------------------------------------
MODEL_NUMBER_STS3215 = 777
RESOLUTION = 4096
MAX_RES = RESOLUTION - 1
ADDR = {
    "Model_Number": (3, 2), "ID": (5, 1), "Return_Delay_Time": (7, 1),
    "Min_Position_Limit": (9, 2), "Max_Position_Limit": (11, 2), "Max_Temperature_Limit": (13, 1),
    "Max_Torque_Limit": (16, 2), "Phase": (18, 1), "P_Coefficient": (21, 1), "D_Coefficient": (22, 1),
    "I_Coefficient": (23, 1), "Protection_Current": (28, 2), "Homing_Offset": (31, 2),
    "Operating_Mode": (33, 1), "Overload_Torque": (36, 1), "Torque_Enable": (40, 1),
    "Acceleration": (41, 1), "Goal_Position": (42, 2), "Lock": (55, 1), "Present_Position": (56, 2),
    "Present_Velocity": (58, 2), "Present_Load": (60, 2), "Present_Voltage": (62, 1),
    "Present_Temperature": (63, 1), "Maximum_Acceleration": (85, 1),
}
SIGN_BIT = {"Homing_Offset": 11, "Goal_Position": 15, "Present_Position": 15, "Present_Velocity": 15, "Present_Load": 10}
# one sync read covers position, velocity, load, voltage and temperature (addresses 56..63)
STATE_ADDR, STATE_LEN = 56, 8
ALARM_BITS = {0x01: "input voltage", 0x02: "angle sensor", 0x04: "overheat", 0x08: "over-current", 0x20: "overload"}

LEROBOT_MOTOR_NAMES = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
MODELS = ("so100", "so101")
DEFAULT_CALIBRATION = "~/.cache/huggingface/lerobot/calibration/robots/{model}_follower/follower.json"


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    magnitude = abs(int(value))
    if magnitude > (1 << sign_bit) - 1:
        raise ValueError(f"magnitude {magnitude} does not fit below sign bit {sign_bit}")
    return ((1 << sign_bit) if value < 0 else 0) | magnitude


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if (raw >> sign_bit) & 1 else magnitude


def alarm_text(error: int) -> str:
    names = [name for bit, name in ALARM_BITS.items() if error & bit]
    return ", ".join(names) if names else f"status 0x{error:02x}"


# --- calibration files (LeRobot's JSON) --------------------------------------------------------
@dataclass
class MotorCalibration:
    """One motor's entry in a LeRobot calibration file (same fields, same meaning)."""

    id: int
    drive_mode: int
    homing_offset: int
    range_min: int
    range_max: int


class CalibrationError(BackendError):
    """A calibration file the backend refuses; the message names the file and the field."""


def load_calibration(path: str | os.PathLike) -> dict[str, MotorCalibration]:
    """Read a LeRobot calibration JSON (``{motor: {id, drive_mode, homing_offset, range_min, range_max}}``)."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        raise CalibrationError(f"calibration file {p} not found: run LeRobot's calibration (lerobot-calibrate) for this arm, or set arms[].backend.calibration")
    try:
        raw = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"calibration file {p} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise CalibrationError(f"calibration file {p}: expected an object of motors")
    if "homing_offset" in raw and isinstance(raw.get("homing_offset"), list):
        raise CalibrationError(
            f"calibration file {p} is in LeRobot's pre-2025 format (arrays of homing_offset/drive_mode/start_pos/end_pos); "
            "re-run lerobot-calibrate with a current LeRobot to write the per-motor format")
    out: dict[str, MotorCalibration] = {}
    seen_ids: dict[int, str] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise CalibrationError(f"calibration file {p}: motor '{name}' must be an object")
        missing = [k for k in ("id", "drive_mode", "homing_offset", "range_min", "range_max") if k not in entry]
        if missing:
            raise CalibrationError(f"calibration file {p}: motor '{name}' lacks {', '.join(missing)}")
        try:
            cal = MotorCalibration(int(entry["id"]), int(entry["drive_mode"]), int(entry["homing_offset"]),
                                   int(entry["range_min"]), int(entry["range_max"]))
        except (TypeError, ValueError):
            raise CalibrationError(f"calibration file {p}: motor '{name}' has a non-integer field") from None
        validate_motor_calibration(name, cal, str(p))
        if cal.id in seen_ids:
            raise CalibrationError(f"calibration file {p}: motors '{seen_ids[cal.id]}' and '{name}' share id {cal.id}")
        seen_ids[cal.id] = name
        out[name] = cal
    return out


def validate_motor_calibration(name: str, cal: MotorCalibration, where: str) -> None:
    if not 0 <= cal.id <= 252:
        raise CalibrationError(f"{where}: motor '{name}' id {cal.id} is outside 0..252")
    if cal.drive_mode not in (0, 1):
        raise CalibrationError(f"{where}: motor '{name}' drive_mode must be 0 or 1, got {cal.drive_mode}")
    if abs(cal.homing_offset) > (1 << 11) - 1:
        raise CalibrationError(f"{where}: motor '{name}' homing_offset {cal.homing_offset} is outside +-2047")
    if not 0 <= cal.range_min < cal.range_max <= MAX_RES:
        raise CalibrationError(f"{where}: motor '{name}' needs 0 <= range_min < range_max <= {MAX_RES}, got {cal.range_min}..{cal.range_max}")


def save_calibration(path: str | os.PathLike, calibration: dict[str, MotorCalibration]) -> Path:
    """Write a calibration in LeRobot's format (what ``lerobot-calibrate`` writes; LeRobot reads it back)."""
    p = Path(os.path.expanduser(str(path)))
    for name, cal in calibration.items():
        validate_motor_calibration(name, cal, str(p))
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps({name: asdict(cal) for name, cal in calibration.items()}, indent=4) + "\n")
    os.replace(tmp, p)
    return p


def raw_to_wire(raw: int, cal: MotorCalibration, is_gripper: bool) -> float:
    if is_gripper:
        bounded = min(cal.range_max, max(cal.range_min, raw))
        frac = (bounded - cal.range_min) / (cal.range_max - cal.range_min)
        return 1.0 - frac if cal.drive_mode else frac
    mid = (cal.range_min + cal.range_max) / 2.0
    return (raw - mid) * 2.0 * math.pi / MAX_RES


def wire_to_raw(value: float, cal: MotorCalibration, is_gripper: bool) -> int:
    """Raw goal for a wire value, clipped to the calibrated range (what the servo can reach)."""
    if is_gripper:
        frac = min(1.0, max(0.0, float(value)))
        frac = 1.0 - frac if cal.drive_mode else frac
        raw = cal.range_min + frac * (cal.range_max - cal.range_min)
    else:
        mid = (cal.range_min + cal.range_max) / 2.0
        raw = float(value) * MAX_RES / (2.0 * math.pi) + mid
    return int(min(cal.range_max, max(cal.range_min, round(raw))))


# --- the backend -------------------------------------------------------------------------------
class FeetechBackend(ArmBackend):
    """One SO-100/101 follower arm on one serial port."""

    def __init__(self, arm_name: str, joint_names: list[str], *, port: str, calibration: dict[str, MotorCalibration],
                 calibration_names: list[str] | None = None, gripper: str | None = None, model: str = "so101",
                 baudrate: int = 1_000_000, read_retries: int = 3, packet_timeout_ms: float = 20.0,
                 write_calibration: bool = True, configure: bool = True, p_coefficient: int = 16,
                 i_coefficient: int = 0, d_coefficient: int = 32, max_temperature_c: int | None = None) -> None:
        super().__init__(arm_name, joint_names)
        if model not in MODELS:
            raise BackendError(f"feetech backend '{arm_name}': model must be one of {', '.join(MODELS)}, got '{model}'")
        if read_retries < 0:
            raise BackendError(f"feetech backend '{arm_name}': read_retries must be >= 0, got {read_retries}")
        self.model = model
        self.port = str(port)
        self.baudrate = int(baudrate)
        self.read_retries = int(read_retries)
        self.packet_timeout_ms = float(packet_timeout_ms)
        self.write_calibration_to_motors = bool(write_calibration)
        self.configure_motors = bool(configure)
        self.pid = (int(p_coefficient), int(i_coefficient), int(d_coefficient))
        self.max_temperature_c = max_temperature_c
        names = list(calibration_names) if calibration_names else self._default_names(joint_names)
        if len(names) != len(joint_names):
            raise BackendError(f"feetech backend '{arm_name}': {len(names)} calibration names for {len(joint_names)} joints")
        missing = [n for n in names if n not in calibration]
        if missing:
            raise CalibrationError(f"feetech backend '{arm_name}': calibration has no entry for {', '.join(missing)} (has: {', '.join(calibration)})")
        self.calibration_names = names
        self.calibration = {n: calibration[n] for n in names}
        self.ids = [self.calibration[n].id for n in names]
        self.gripper = gripper
        self.is_gripper = [j == gripper for j in joint_names]
        self._lock = threading.RLock()
        self._port_handler = None
        self._packet_handler = None
        self._fault: str | None = None
        self._fault_kind: str | None = None  # "io" (port lost: reopened on read) or "alarm" (a servo's alarm bits)
        self.reconnect_interval_s = 0.5
        self._last_reconnect_try = 0.0
        self._connected = False
        self._ever_connected = False
        self._torque = False
        self.counters = {"reads": 0, "read_retries": 0, "read_failures": 0, "writes": 0, "reconnects": 0}
        self.last_reading: JointReading | None = None

    @staticmethod
    def _default_names(joint_names: list[str]) -> list[str]:
        if len(joint_names) == len(LEROBOT_MOTOR_NAMES):
            return list(LEROBOT_MOTOR_NAMES)
        raise BackendError(f"feetech backend: {len(joint_names)} joints, set backend.calibration_names (LeRobot motor names per joint)")

    def _where(self, idx: int | None = None) -> str:
        if idx is None:
            return f"arm '{self.arm_name}' on {self.port}"
        return f"arm '{self.arm_name}' servo {self.ids[idx]} ({self.joint_names[idx]})"

    # --- transport -------------------------------------------------------------------------
    def _open(self) -> None:
        import scservo_sdk as scs

        ph = scs.PortHandler(self.port)
        timeout_ms = self.packet_timeout_ms

        def set_packet_timeout(packet_length, _ph=ph):  # the SDK's default is far too long at 1 Mbaud
            _ph.packet_start_time = _ph.getCurrentTime()
            _ph.packet_timeout = _ph.tx_time_per_byte * packet_length + timeout_ms

        ph.setPacketTimeout = set_packet_timeout
        try:
            ph.baudrate = self.baudrate
            ok = ph.openPort()
        except Exception as exc:  # serial.SerialException, OSError
            raise BackendError(f"{self._where()}: cannot open serial port {self.port}: {exc}") from None
        if not ok:
            raise BackendError(f"{self._where()}: cannot open serial port {self.port} at {self.baudrate} baud")
        self._port_handler = ph
        self._packet_handler = scs.PacketHandler(0)

    def _drop_port(self) -> None:
        ph, self._port_handler = self._port_handler, None
        if ph is not None and ph.ser is not None:
            try:
                ph.ser.close()
            except Exception:
                pass
        self._connected = False

    def _io_error(self, exc: BaseException) -> BackendError:
        msg = f"{self._where()}: serial port {self.port} failed ({exc.__class__.__name__}: {exc}); the servos hold their last goal. Check the USB cable: the port is reopened when it is back"
        self._fault, self._fault_kind = msg, "io"
        self._drop_port()
        return BackendError(msg)

    def _flush_input(self) -> None:
        try:
            self._port_handler.ser.reset_input_buffer()
        except Exception:
            pass
        self._port_handler.is_using = False

    def _read(self, idx: int, name: str) -> int:
        """One register of one servo, retried; raises BackendError naming the servo."""
        addr, size = ADDR[name]
        pk, ph = self._packet_handler, self._port_handler
        result = error = 0
        for attempt in range(1 + self.read_retries):
            try:
                data, result, error = pk.readTxRx(ph, self.ids[idx], addr, size)
            except Exception as exc:
                if _is_io_error(exc):
                    raise self._io_error(exc) from None
                raise
            if result == 0:
                value = data[0] if size == 1 else data[0] | (data[1] << 8)
                if name in SIGN_BIT:
                    value = decode_sign_magnitude(value, SIGN_BIT[name])
                return value
            self.counters["read_retries"] += attempt < self.read_retries
            self._flush_input()
        self.counters["read_failures"] += 1
        raise BackendError(f"{self._where(idx)}: reading {name} failed after {1 + self.read_retries} tries: {pk.getTxRxResult(result)}")

    def _write(self, idx: int, name: str, value: int) -> None:
        addr, size = ADDR[name]
        if name in SIGN_BIT:
            value = encode_sign_magnitude(value, SIGN_BIT[name])
        data = [value & 0xFF] if size == 1 else [value & 0xFF, (value >> 8) & 0xFF]
        pk, ph = self._packet_handler, self._port_handler
        result = 0
        for attempt in range(1 + self.read_retries):
            try:
                result, error = pk.writeTxRx(ph, self.ids[idx], addr, size, data)
            except Exception as exc:
                if _is_io_error(exc):
                    raise self._io_error(exc) from None
                raise
            if result == 0:
                self.counters["writes"] += 1
                return
            self._flush_input()
        raise BackendError(f"{self._where(idx)}: writing {name}={value} failed after {1 + self.read_retries} tries: {pk.getTxRxResult(result)}")

    def _sync_read_state(self) -> tuple[list[bytes], list[int]]:
        """Sync read of addresses 56..63 on every servo, keeping each status packet's error byte."""
        pk, ph = self._packet_handler, self._port_handler
        last = ""
        for attempt in range(1 + self.read_retries):
            try:
                result = pk.syncReadTx(ph, STATE_ADDR, STATE_LEN, list(self.ids), len(self.ids))
                datas, errors, failed = [], [], None
                if result == 0:
                    for idx, sid in enumerate(self.ids):
                        data, result, error = pk.readRx(ph, sid, STATE_LEN)
                        if result != 0 or len(data) != STATE_LEN:
                            failed = idx
                            break
                        datas.append(bytes(data))
                        errors.append(error)
            except Exception as exc:
                if _is_io_error(exc):
                    raise self._io_error(exc) from None
                raise
            ph.is_using = False
            if result == 0 and failed is None:
                return datas, errors
            where = self._where(failed) if failed is not None else self._where()
            last = f"{where}: {pk.getTxRxResult(result)}"
            if attempt < self.read_retries:
                self.counters["read_retries"] += 1
            self._flush_input()
        self.counters["read_failures"] += 1
        raise BackendError(f"sync read of the state failed after {1 + self.read_retries} tries; last: {last}")

    def _sync_write_goals(self, raws: list[int]) -> None:
        pk, ph = self._packet_handler, self._port_handler
        params: list[int] = []
        for sid, raw in zip(self.ids, raws):
            v = encode_sign_magnitude(raw, 15)
            params += [sid, v & 0xFF, (v >> 8) & 0xFF]
        try:
            result = pk.syncWriteTxOnly(ph, ADDR["Goal_Position"][0], 2, params, len(params))
        except Exception as exc:
            if _is_io_error(exc):
                raise self._io_error(exc) from None
            raise
        ph.is_using = False
        if result != 0:
            raise BackendError(f"{self._where()}: sync write of Goal_Position failed: {pk.getTxRxResult(result)}")
        self.counters["writes"] += 1

    # --- ArmBackend ------------------------------------------------------------------------
    def connect(self) -> None:
        with self._lock:
            reconnect = self._ever_connected
            self._drop_port()
            self._fault = self._fault_kind = None
            self._open()
            try:
                for idx, sid in enumerate(self.ids):
                    model = self._read(idx, "Model_Number")
                    if model != MODEL_NUMBER_STS3215:
                        raise BackendError(f"{self._where(idx)}: model number {model} is not an STS3215 ({MODEL_NUMBER_STS3215}); check the servo ids")
                self._check_calibration()
                if self.configure_motors:
                    self._configure()
                self._torque = all(self._read(i, "Torque_Enable") == 1 for i in range(len(self.ids)))
                self._connected = True
                self._read_state_locked()
            except BackendError:
                self._drop_port()
                raise
            if reconnect:
                self.counters["reconnects"] += 1
            self._ever_connected = True
            log.info("feetech arm '%s' connected on %s (servos %s)", self.arm_name, self.port, self.ids)

    def _check_calibration(self) -> None:
        mismatched = []
        for idx, name in enumerate(self.calibration_names):
            cal = self.calibration[name]
            actual = (self._read(idx, "Homing_Offset"), self._read(idx, "Min_Position_Limit"), self._read(idx, "Max_Position_Limit"))
            if actual != (cal.homing_offset, cal.range_min, cal.range_max):
                mismatched.append((idx, name, actual))
        if not mismatched:
            return
        if not self.write_calibration_to_motors:
            idx, name, actual = mismatched[0]
            raise CalibrationError(
                f"{self._where(idx)}: the servo holds homing_offset/range_min/range_max {actual}, the calibration file says "
                f"{(self.calibration[name].homing_offset, self.calibration[name].range_min, self.calibration[name].range_max)}; "
                "set backend.write_calibration: true to write the file to the servos (as LeRobot does) or recalibrate")
        for idx, name, _ in mismatched:
            cal = self.calibration[name]
            log.warning("%s: writing calibration (homing offset %d, range %d..%d) to the servo", self._where(idx), cal.homing_offset, cal.range_min, cal.range_max)
            self._write(idx, "Torque_Enable", 0)
            self._write(idx, "Lock", 0)
            self._write(idx, "Homing_Offset", cal.homing_offset)
            self._write(idx, "Min_Position_Limit", cal.range_min)
            self._write(idx, "Max_Position_Limit", cal.range_max)

    def _configure(self) -> None:
        """LeRobot's SO follower set-up, writing only registers that differ (EEPROM ones with torque off)."""
        p, i, d = self.pid
        for idx in range(len(self.ids)):
            wanted = {"Return_Delay_Time": 0, "Maximum_Acceleration": 254, "Operating_Mode": 0,
                      "P_Coefficient": p, "I_Coefficient": i, "D_Coefficient": d}
            if self.is_gripper[idx]:
                wanted.update({"Max_Torque_Limit": 500, "Protection_Current": 250, "Overload_Torque": 25})
            if self.max_temperature_c is not None:
                wanted["Max_Temperature_Limit"] = int(self.max_temperature_c)
            differing = {k: v for k, v in wanted.items() if self._read(idx, k) != v}
            phase = self._read(idx, "Phase")
            if phase & 0x10:
                differing["Phase"] = phase & ~0x10
            if differing:
                self._write(idx, "Torque_Enable", 0)
                self._write(idx, "Lock", 0)
                for k, v in differing.items():
                    self._write(idx, k, v)
            if self._read(idx, "Acceleration") != 254:
                self._write(idx, "Acceleration", 254)

    def _require(self) -> None:
        if self._fault:
            raise BackendError(self._fault)
        if not self._connected or self._port_handler is None:
            raise BackendError(f"{self._where()}: not connected")

    def _read_state_locked(self) -> JointReading:
        if self._fault_kind == "io":
            self._try_reconnect()
        if not self._connected or self._port_handler is None:
            raise BackendError(self._fault or f"{self._where()}: not connected")
        datas, errors = self._sync_read_state()
        stamp = time.monotonic()
        self.counters["reads"] += 1
        n = len(self.ids)
        pos, vel, eff = np.empty(n), np.empty(n), np.empty(n)
        temps, volts, errs = [], [], []
        for idx, (data, error) in enumerate(zip(datas, errors)):
            cal = self.calibration[self.calibration_names[idx]]
            raw_pos = decode_sign_magnitude(data[0] | (data[1] << 8), 15)
            raw_vel = decode_sign_magnitude(data[2] | (data[3] << 8), 15)
            raw_load = decode_sign_magnitude(data[4] | (data[5] << 8), 10)
            pos[idx] = raw_to_wire(raw_pos, cal, self.is_gripper[idx])
            if self.is_gripper[idx]:
                span = cal.range_max - cal.range_min
                vel[idx] = (-raw_vel if cal.drive_mode else raw_vel) / span
            else:
                vel[idx] = raw_vel * 2.0 * math.pi / MAX_RES
            eff[idx] = raw_load / 1000.0  # fraction of max torque
            volts.append(data[6] / 10.0)
            temps.append(int(data[7]))
            errs.append(int(error))
        reading = JointReading(pos, vel, eff, stamp, {"temperature_c": temps, "voltage_v": volts, "status": errs,
                                                       "servo_ids": list(self.ids)})
        self.last_reading = reading
        bad = [i for i, e in enumerate(errs) if e]
        if bad:
            i = bad[0]
            msg = (f"{self._where(i)} reports {alarm_text(errs[i])} (temperature {temps[i]} C, {volts[i]:.1f} V); "
                   "the arm stops commanding: the servo protects itself (torque off) and the others hold their last goal. "
                   "Let it cool or fix the supply, then reset the driver")
            self._fault, self._fault_kind = msg, "alarm"
            raise BackendError(msg)
        if self._fault_kind == "alarm":  # no alarm any more: servos that protected themselves hold again
            self._fault = self._fault_kind = None
            if self._torque:
                for idx in range(len(self.ids)):
                    if self._read(idx, "Torque_Enable") == 0:
                        self._write(idx, "Goal_Position", decode_sign_magnitude(datas[idx][0] | (datas[idx][1] << 8), 15))
                        self._write(idx, "Torque_Enable", 1)
                        self._write(idx, "Lock", 1)
            log.warning("%s: servo alarms cleared; holding", self._where())
        return reading

    def _try_reconnect(self) -> None:
        """After a lost port: reopen the same path (rate-limited); the servos held their last goal meanwhile."""
        now = time.monotonic()
        if now - self._last_reconnect_try < self.reconnect_interval_s:
            raise BackendError(self._fault)
        self._last_reconnect_try = now
        fault = self._fault
        try:
            self.connect()
        except BackendError as exc:
            self._fault, self._fault_kind = fault, "io"
            raise BackendError(f"{fault} (reconnect failed: {exc})") from None
        log.warning("%s: reconnected", self._where())

    def read_state(self) -> JointReading:
        with self._lock:
            return self._read_state_locked()

    def send_target(self, positions: np.ndarray) -> np.ndarray:
        target = np.asarray(positions, dtype=np.float64)
        if target.shape != (len(self.ids),):
            raise BackendError(f"{self._where()}: target has shape {target.shape}, expected ({len(self.ids)},)")
        if not np.all(np.isfinite(target)):
            bad = [self.joint_names[i] for i in np.flatnonzero(~np.isfinite(target))]
            raise BackendError(f"{self._where()}: non-finite target for {', '.join(bad)}")
        with self._lock:
            self._require()
            raws, sent = [], np.empty_like(target)
            for idx, name in enumerate(self.calibration_names):
                cal = self.calibration[name]
                raw = wire_to_raw(target[idx], cal, self.is_gripper[idx])
                raws.append(raw)
                sent[idx] = raw_to_wire(raw, cal, self.is_gripper[idx])
            self._sync_write_goals(raws)
            return sent

    def enable(self) -> None:
        """Torque on holding the present position (goal = present first, so nothing jumps)."""
        with self._lock:
            reading = self._read_state_locked()
            self.send_target(reading.positions)
            for idx in range(len(self.ids)):
                self._write(idx, "Torque_Enable", 1)
                self._write(idx, "Lock", 1)
            self._torque = True

    def disable(self) -> None:
        with self._lock:
            self._require()
            for idx in range(len(self.ids)):
                self._write(idx, "Torque_Enable", 0)
                self._write(idx, "Lock", 0)
            self._torque = False

    def close(self) -> None:
        """Release the port. Torque is left as it is: enabled servos keep holding their last goal."""
        with self._lock:
            self._drop_port()

    def health(self) -> BackendHealth:
        if self._fault:
            return BackendHealth(False, self._fault)
        if not self._connected:
            return BackendHealth(False, f"{self._where()}: not connected")
        return BackendHealth(True)

    # --- calibration on the motors ---------------------------------------------------------
    def read_motor_calibration(self) -> dict[str, MotorCalibration]:
        """What the servos hold (homing offset, angle limits), in LeRobot's calibration format."""
        with self._lock:
            self._require()
            out = {}
            for idx, name in enumerate(self.calibration_names):
                out[name] = MotorCalibration(self.ids[idx], self.calibration[name].drive_mode, self._read(idx, "Homing_Offset"),
                                             self._read(idx, "Min_Position_Limit"), self._read(idx, "Max_Position_Limit"))
            return out


def _is_io_error(exc: BaseException) -> bool:
    try:
        import serial

        if isinstance(exc, serial.SerialException):
            return True
    except ImportError:  # pragma: no cover
        pass
    import termios  # the SDK's flush() -> tcdrain() fails with termios.error on a vanished tty

    return isinstance(exc, (OSError, termios.error))


def create(arm_config: Any, options: dict, **context: Any) -> FeetechBackend:
    """``arms[].backend``: ``type: feetech``, ``port``, ``model`` (so100|so101), ``calibration`` (LeRobot JSON),
    optional ``calibration_names``, ``baudrate``, ``read_retries``, ``packet_timeout_ms``, ``write_calibration``,
    ``configure``, ``p_coefficient``/``i_coefficient``/``d_coefficient``, ``max_temperature_c``."""
    model = str(options.get("model", "so101"))
    port = options.get("port")
    if not port:
        raise BackendError(f"arm '{arm_config.name}': feetech backend needs backend.port (e.g. /dev/ttyACM0)")
    cal_path = options.get("calibration") or DEFAULT_CALIBRATION.format(model=model)
    calibration = load_calibration(cal_path)
    known = {"type", "port", "model", "calibration", "calibration_names", "baudrate", "read_retries", "packet_timeout_ms",
             "write_calibration", "configure", "p_coefficient", "i_coefficient", "d_coefficient", "max_temperature_c"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise BackendError(f"arm '{arm_config.name}': unknown feetech backend field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    kwargs = {k: options[k] for k in ("baudrate", "read_retries", "packet_timeout_ms", "write_calibration", "configure",
                                      "p_coefficient", "i_coefficient", "d_coefficient", "max_temperature_c") if k in options}
    return FeetechBackend(arm_config.name, list(arm_config.joints), port=str(port), calibration=calibration,
                          calibration_names=options.get("calibration_names"), gripper=arm_config.gripper, model=model, **kwargs)
