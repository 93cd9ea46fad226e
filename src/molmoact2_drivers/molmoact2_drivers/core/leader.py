"""Leader arms for teleoperation, ROS-free: read a passive arm the operator moves, in wire units.

A leader is read, never commanded. Its reading is the paired follower's target in the
follower's wire units (radians; gripper 0 = closed .. 1 = open), as LeRobot's teleoperation
passes an SO leader's action to the SO follower unchanged; the follower's driver
(``input = "teleop"``) runs it through its arming ramp and safety filter.

Sources:

- ``FeetechLeader``: an SO-100/101 leader arm (STS3215 servos, torque off) read with the Feetech
  backend's bus code (``backends.feetech``: the vendor SDK, sync reads with retries, the same
  calibration conversions). It reads LeRobot's leader calibration file; torque is turned off at
  connect and never turned on. LeRobot 0.6 writes it to
  ``~/.cache/huggingface/lerobot/calibration/teleoperators/so_leader/<id>.json`` (its SO leader
  class is named ``so_leader``); older LeRobot wrote ``.../teleoperators/so101_leader/<id>.json``
  (``so100_leader`` for SO-100): the default looks in both.
- ``YamLeader``: a YAM arm in i2rt's gravity-compensation idle (it floats and the operator moves
  it), through the i2rt YAM backend. i2rt supports a teaching handle as the leader's end
  effector (``gripper_type: yam_teaching_handle``: a passive encoder board on the same CAN bus,
  read by i2rt's chain as its "same bus device"); with it the gripper target is
  ``1 - trigger position``, clipped to 0..1 (the mapping i2rt's own minimum_gello leader uses for
  the follower's normalised gripper command, 1 = open); without one (``no_gripper``) the gripper
  target is a fixed opening.

``LeaderCore`` polls a source at its rate and reports, once per change, a leader that went
away (cable pulled, bus down) and one that came back: the node publishes no target while the
leader is lost (the follower's teleop watchdog makes it hold) and an event the episode manager
marks the episode with.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backend import BackendError

LEADER_CALIBRATION_DIR = "~/.cache/huggingface/lerobot/calibration/teleoperators"


def default_leader_calibration(model: str, leader_id: str) -> Path:
    """LeRobot's leader calibration file for ``leader_id``: ``so_leader/`` (LeRobot 0.6) if it
    exists, else ``<model>_leader/`` (older LeRobot); the former when neither exists."""
    base = Path(os.path.expanduser(LEADER_CALIBRATION_DIR))
    current, older = base / "so_leader" / f"{leader_id}.json", base / f"{model}_leader" / f"{leader_id}.json"
    if not current.is_file() and older.is_file():
        return older
    return current


class LeaderSource(ABC):
    """A leader arm: connect (torque off / floating), read positions in wire units, close."""

    def __init__(self, name: str, joint_names: list[str]) -> None:
        self.name = name
        self.joint_names = list(joint_names)

    @abstractmethod
    def connect(self) -> None:
        """Open the bus and leave the arm free to be moved by hand. Raises BackendError."""

    @abstractmethod
    def read(self) -> np.ndarray:
        """The leader's positions in wire units, ``joint_names`` order. Raises BackendError."""

    @abstractmethod
    def close(self) -> None:
        """Release the bus. Idempotent; never raises."""


class FeetechLeader(LeaderSource):
    """An SO-100/101 leader arm: the Feetech backend's bus code, torque off, never enabled."""

    def __init__(self, name: str, joint_names: list[str], *, port: str, calibration: str | os.PathLike,
                 gripper: str | None = "gripper", model: str = "so101", calibration_names: list[str] | None = None,
                 baudrate: int = 1_000_000, read_retries: int = 2, packet_timeout_ms: float = 20.0) -> None:
        super().__init__(name, joint_names)
        from .backends.feetech import CalibrationError, FeetechBackend, load_calibration

        self.calibration_path = str(calibration)
        try:
            table = load_calibration(calibration)
        except CalibrationError as exc:
            raise CalibrationError(f"leader '{name}': {str(exc).split(': run ')[0]} (calibrate the leader with "
                                   f"lerobot-calibrate --teleop.type={model}_leader --teleop.id=<id>, then pass its id "
                                   "or the file: leader_id:= / leader_calibration:=)") from None
        # configure=False: LeRobot's follower PID/acceleration set-up is not a leader's business;
        # the calibration file is written to the servos when they differ (as lerobot-calibrate does)
        self.bus = FeetechBackend(name, joint_names, port=port, calibration=table,
                                  calibration_names=calibration_names, gripper=gripper, model=model, baudrate=baudrate,
                                  read_retries=read_retries, packet_timeout_ms=packet_timeout_ms,
                                  write_calibration=True, configure=False)
        self.bus.reconnect_interval_s = 0.2

    def connect(self) -> None:
        self.bus.connect()
        self.bus.disable()  # a leader's servos are moved by hand: torque off (LeRobot's leader configure)

    def read(self) -> np.ndarray:
        was_lost = self.bus._fault_kind == "io"
        positions = np.asarray(self.bus.read_state().positions, dtype=np.float64)
        if was_lost:  # the backend reopened the port on this read: make sure torque is still off
            self.bus.disable()
        return positions

    @property
    def torque_on(self) -> bool:
        return bool(self.bus._torque)

    def close(self) -> None:
        self.bus.close()


class YamLeader(LeaderSource):
    """A YAM arm in i2rt's gravity-compensation idle; with a teaching handle, its trigger is the gripper."""

    def __init__(self, name: str, joint_names: list[str], *, channel: str, arm_type: str = "yam",
                 gripper_type: str = "yam_teaching_handle", fixed_gripper: float = 1.0, bringup_timeout_s: float = 15.0, feedback_timeout_s: float = 0.1,
                 require_motor_timeout: bool = True) -> None:
        super().__init__(name, joint_names)
        if gripper_type not in ("yam_teaching_handle", "no_gripper"):
            raise BackendError(f"YAM leader '{name}': gripper_type must be yam_teaching_handle or no_gripper "
                               f"(a leader's end effector is passive), got '{gripper_type}'")
        if len(joint_names) != 7:
            raise BackendError(f"YAM leader '{name}': needs the follower's 7 joint names (6 joints + gripper), got {len(joint_names)}")
        from .backends.i2rt_yam import YamBackend

        self.gripper_type = gripper_type
        self.fixed_gripper = float(fixed_gripper)
        self.arm = YamBackend(name, joint_names[:6], channel=channel, arm_type=arm_type, gripper_type=gripper_type,
                              bringup_timeout_s=bringup_timeout_s, feedback_timeout_s=feedback_timeout_s,
                              require_motor_timeout=require_motor_timeout)

    def connect(self) -> None:
        self.arm.connect()
        self.arm.disable()  # gravity-compensation idle: the arm floats under the operator's hand

    def read(self) -> np.ndarray:
        joints = np.asarray(self.arm.read_state().positions, dtype=np.float64)
        health = self.arm.health()
        if not health.ok:
            raise BackendError(health.message)
        grip = self.fixed_gripper
        if self.gripper_type == "yam_teaching_handle":
            infos = self.arm.robot.motor_chain.get_same_bus_device_states()
            if not infos:
                raise BackendError(f"YAM leader '{self.name}': no reading from the teaching handle's encoder")
            grip = float(np.clip(1.0 - float(infos[0].position), 0.0, 1.0))
        return np.concatenate([joints, [grip]])

    def close(self) -> None:
        self.arm.close()


@dataclass
class LeaderSample:
    positions: np.ndarray | None  # None while the leader is lost
    monotonic_stamp: float
    events: list[str] = field(default_factory=list)


class LeaderCore:
    """Polls a source; ``connected`` goes False (with one event) on a failed read, True on the next good one."""

    def __init__(self, source: LeaderSource) -> None:
        self.source = source
        self.connected = False
        self.error = ""
        self.reads = 0
        self.losses = 0

    def start(self) -> str:
        self.source.connect()
        self.connected = True
        return f"leader '{self.source.name}' connected"

    def poll(self) -> LeaderSample:
        events: list[str] = []
        try:
            positions = self.source.read()
            if positions.shape != (len(self.source.joint_names),) or not np.all(np.isfinite(positions)):
                raise BackendError(f"leader '{self.source.name}': bad reading {np.round(positions, 3).tolist()}")
        except BackendError as exc:
            if self.connected:
                self.connected = False
                self.losses += 1
                self.error = str(exc)
                events.append(f"leader lost: {exc}")
            return LeaderSample(None, time.monotonic(), events)
        if not self.connected:
            self.connected = True
            events.append(f"leader back: '{self.source.name}' reads again (after: {self.error})")
            self.error = ""
        self.reads += 1
        return LeaderSample(positions, time.monotonic(), events)

    def close(self) -> None:
        self.source.close()


def create_leader(kind: str, name: str, joint_names: list[str], options: dict[str, Any]) -> LeaderSource:
    """``kind``: feetech (``port``, ``calibration`` or ``id``, ``model``, ...) or yam (``channel``, ``gripper_type``, ...)."""
    opts = dict(options)
    if kind == "feetech":
        known = {"port", "calibration", "id", "model", "calibration_names", "baudrate", "read_retries", "packet_timeout_ms", "gripper"}
        unknown = sorted(set(opts) - known)
        if unknown:
            raise BackendError(f"leader '{name}': unknown feetech leader option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if not opts.get("port"):
            raise BackendError(f"leader '{name}': the feetech leader needs a port (e.g. /dev/ttyACM1)")
        model = str(opts.pop("model", "so101"))
        leader_id = str(opts.pop("id", "") or "leader")
        calibration = opts.pop("calibration", "") or default_leader_calibration(model, leader_id)
        return FeetechLeader(name, joint_names, calibration=calibration, model=model, **opts)
    if kind == "yam":
        known = {"channel", "arm_type", "gripper_type", "fixed_gripper", "bringup_timeout_s",
                 "feedback_timeout_s", "require_motor_timeout"}
        unknown = sorted(set(opts) - known)
        if unknown:
            raise BackendError(f"leader '{name}': unknown yam leader option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if not opts.get("channel"):
            raise BackendError(f"leader '{name}': the yam leader needs a CAN channel (e.g. can_leader_left)")
        return YamLeader(name, joint_names, **opts)
    raise BackendError(f"leader '{name}': unknown leader type '{kind}' (feetech, yam)")
