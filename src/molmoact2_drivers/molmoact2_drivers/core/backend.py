"""The one interface every arm backend implements (LeRobot's Robot interface is the model).

A backend speaks wire units (radians; gripper 0 = closed .. 1 = open) in the order of
``joint_names``. It knows nothing of chunks, blending or safety: the executor and the safety
layer above it decide what to send; the backend reports what it observes and what it actually
sent. Every failure is a ``BackendError`` with a message that names the arm and, where known,
the motor; after one, the driver holds (or, if the backend cannot command at all, leaves the
hardware in its own safe state) and reports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


class BackendError(RuntimeError):
    """A backend failure the driver must turn into a safe state and a clear error."""


@dataclass
class JointReading:
    """What the backend observed, in wire units, in ``joint_names`` order."""

    positions: np.ndarray
    velocities: np.ndarray | None = None
    efforts: np.ndarray | None = None
    # time.monotonic() when the reading was taken from the hardware (feedback freshness)
    monotonic_stamp: float = 0.0
    # per-motor detail for diagnostics: temperatures, status codes, ...
    extra: dict = field(default_factory=dict)


@dataclass
class BackendHealth:
    ok: bool
    message: str = ""


class ArmBackend(ABC):
    """Connect, read state, send targets, enable/disable torque, close."""

    #: True for simulators and the kinematic backend: arming may proceed without an operator start.
    simulated: bool = False

    def __init__(self, arm_name: str, joint_names: list[str]) -> None:
        self.arm_name = arm_name
        self.joint_names = list(joint_names)

    @abstractmethod
    def connect(self) -> None:
        """Open the transport and read the initial state. Bounded in time; raises BackendError."""

    @abstractmethod
    def read_state(self) -> JointReading:
        """The newest observed joint state. Raises BackendError when it cannot be trusted."""

    @abstractmethod
    def send_target(self, positions: np.ndarray) -> np.ndarray:
        """Command joint positions; return what was actually sent (after the backend's own clipping)."""

    @abstractmethod
    def enable(self) -> None:
        """Torque on, holding the current position."""

    @abstractmethod
    def disable(self) -> None:
        """Torque off. Arms without brakes (YAM, SO-101) drop: callers warn before this."""

    @abstractmethod
    def close(self) -> None:
        """Release the transport. Idempotent; never raises."""

    def health(self) -> BackendHealth:
        """Cheap check the driver polls every tick (feedback freshness, control thread alive, ...)."""
        return BackendHealth(True)
