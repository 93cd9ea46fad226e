"""A trivial kinematic arm for fast tests and dry runs: the measured position follows the target.

``tracking`` in (0, 1] is the fraction of the remaining distance closed per ``send_target`` (1:
the arm is exactly where it was last told). Every sent target is recorded with its
``time.monotonic()`` so tests and the benchmark can measure, on the backend side, when motion
stopped. Fault injection: ``fail_reason`` makes reads (and health) fail, ``send_fail_reason``
makes sends fail while reads still work (a write that did not reach the motors).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from ..backend import ArmBackend, BackendError, BackendHealth, JointReading


class KinematicBackend(ArmBackend):
    simulated = True

    def __init__(self, arm_name: str, joint_names: list[str], initial: np.ndarray | None = None,
                 tracking: float = 1.0, record: bool = True) -> None:
        super().__init__(arm_name, joint_names)
        if not 0.0 < tracking <= 1.0:
            raise BackendError(f"kinematic backend '{arm_name}': tracking must be in (0, 1], got {tracking}")
        n = len(joint_names)
        self._initial = np.zeros(n) if initial is None else np.asarray(initial, dtype=np.float64).copy()
        if self._initial.shape != (n,):
            raise BackendError(f"kinematic backend '{arm_name}': initial position has {self._initial.shape} values for {n} joints")
        self.tracking = float(tracking)
        self.record = record
        self._lock = threading.Lock()
        self.position = self._initial.copy()
        self.connected = False
        self.torque_enabled = False
        self.sent: list[tuple[float, np.ndarray]] = []
        self.fail_reason: str | None = None
        self.send_fail_reason: str | None = None

    def connect(self) -> None:
        self.connected = True

    def read_state(self) -> JointReading:
        if not self.connected:
            raise BackendError(f"kinematic backend '{self.arm_name}': not connected")
        if self.fail_reason:
            raise BackendError(f"kinematic backend '{self.arm_name}': {self.fail_reason}")
        with self._lock:
            return JointReading(self.position.copy(), np.zeros_like(self.position), None, time.monotonic())

    def send_target(self, positions: np.ndarray) -> np.ndarray:
        if not self.connected:
            raise BackendError(f"kinematic backend '{self.arm_name}': not connected")
        if self.send_fail_reason:
            raise BackendError(f"kinematic backend '{self.arm_name}': {self.send_fail_reason}")
        target = np.asarray(positions, dtype=np.float64).copy()
        with self._lock:
            if self.torque_enabled:
                self.position = self.position + self.tracking * (target - self.position)
            if self.record:
                self.sent.append((time.monotonic(), target.copy()))
        return target

    def enable(self) -> None:
        self.torque_enabled = True

    def disable(self) -> None:
        self.torque_enabled = False

    def close(self) -> None:
        self.connected = False
        self.torque_enabled = False

    def health(self) -> BackendHealth:
        if self.fail_reason:
            return BackendHealth(False, self.fail_reason)
        return BackendHealth(self.connected, "" if self.connected else "not connected")

    def sent_since(self, t: float) -> list[tuple[float, np.ndarray]]:
        with self._lock:
            return [(s, p) for s, p in self.sent if s >= t]


def create(arm_config: Any, options: dict, **context: Any) -> KinematicBackend:
    initial = options.get("initial_position")
    if initial is None:
        # the middle of each joint's range (gripper half open): a pose inside every limit
        initial = [0.5 * (lo + hi) for lo, hi in (arm_config.position_limits[j] for j in arm_config.joints)]
        initial = [0.0 if lo <= 0.0 <= hi else m for m, (lo, hi) in zip(initial, (arm_config.position_limits[j] for j in arm_config.joints))]
    return KinematicBackend(arm_config.name, arm_config.joints, np.asarray(initial, dtype=np.float64),
                            float(options.get("tracking", 1.0)), bool(options.get("record", True)))
