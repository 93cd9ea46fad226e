"""Wire units and the one conversion between them and a checkpoint's model units.

On the wire (JointState, ActionChunk, Observation) arm joints are radians and grippers are a
normalised opening, 0 = closed .. 1 = open. A checkpoint may use degrees, flipped signs, offsets
(MolmoAct2-SO100_101: old-calibration signs [1,-1,1,1,1,1] and offsets [0,90,90,0,0,0] deg) or
its own gripper range (SO-100/101: 0..100; DROID: 0 = open .. 1 = closed). ``JointUnitMap`` is
the only place these are converted; it is built from the embodiment config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

GRIPPER_CLOSED = 0.0
GRIPPER_OPEN = 1.0


@dataclass(frozen=True)
class AngleUnit:
    """model = sign * to_unit(wire_rad) + offset, offset in model units."""

    unit: str = "rad"  # "rad" or "deg"
    sign: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.unit not in ("rad", "deg"):
            raise ValueError(f"angle unit must be 'rad' or 'deg', got {self.unit!r}")
        if self.sign not in (1.0, -1.0):
            raise ValueError(f"joint sign must be 1 or -1, got {self.sign!r}")

    @property
    def scale(self) -> float:
        return 180.0 / math.pi if self.unit == "deg" else 1.0


@dataclass(frozen=True)
class GripperUnit:
    """Linear map from the wire's 0 (closed) .. 1 (open) to the model's closed .. open values."""

    model_closed: float = 0.0
    model_open: float = 1.0

    def __post_init__(self) -> None:
        if self.model_closed == self.model_open:
            raise ValueError("gripper model_closed and model_open must differ")


class JointUnitMap:
    """Converts joint vectors, in a fixed joint order, between wire and model units."""

    def __init__(self, joint_names: list[str], units: list[AngleUnit | GripperUnit]) -> None:
        if len(joint_names) != len(units):
            raise ValueError(f"{len(joint_names)} joints but {len(units)} unit entries")
        self.joint_names = list(joint_names)
        self.units = list(units)
        # wire -> model is model = a * wire + b, element-wise
        a, b = [], []
        for u in units:
            if isinstance(u, AngleUnit):
                a.append(u.sign * u.scale)
                b.append(u.offset)
            else:
                a.append(u.model_open - u.model_closed)
                b.append(u.model_closed)
        self._a = np.asarray(a, dtype=np.float64)
        self._b = np.asarray(b, dtype=np.float64)

    def to_model(self, wire: np.ndarray) -> np.ndarray:
        """Wire units -> model units; works on (..., joints)."""
        return np.asarray(wire, dtype=np.float64) * self._a + self._b

    def to_wire(self, model: np.ndarray) -> np.ndarray:
        """Model units -> wire units; works on (..., joints)."""
        return (np.asarray(model, dtype=np.float64) - self._b) / self._a

    def is_identity(self) -> bool:
        return bool(np.all(self._a == 1.0) and np.all(self._b == 0.0))
