"""Arming: the first chunk after activation (or after a hold) is never jumped to.

The arm ramps from where it is to the chunk's path: ``command(t) = q0 + s(t) * (path(t) - q0)``
with ``s`` a smoothstep from 0 to 1 over a duration chosen so that the ramp itself moves no
joint faster than ``max_speed`` (rad/s). The path keeps moving while the ramp runs, so the arm
joins it instead of chasing a point it already left. A real (non-sim) arm starts only after an
explicit operator ``start`` (the driver core checks ``operator_started``).
"""

from __future__ import annotations

import numpy as np

# peak slope of the smoothstep 3s^2 - 2s^3 is 1.5 (at s = 0.5)
_SMOOTHSTEP_PEAK = 1.5


def smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


class ArmingRamp:
    def __init__(self, max_speed: np.ndarray, min_duration: float = 0.1) -> None:
        self.max_speed = np.asarray(max_speed, dtype=np.float64)
        if np.any(self.max_speed <= 0):
            raise ValueError("arming speeds must be > 0")
        self.min_duration = float(min_duration)
        self.t0: float | None = None
        self.q0: np.ndarray | None = None
        self.duration = 0.0

    @property
    def active(self) -> bool:
        return self.t0 is not None

    def start(self, t0: float, q0: np.ndarray, path_at_t0: np.ndarray) -> float:
        """Begin a ramp from ``q0`` at ``t0``; returns its duration in seconds."""
        self.t0 = float(t0)
        self.q0 = np.asarray(q0, dtype=np.float64).copy()
        dist = np.abs(np.asarray(path_at_t0, dtype=np.float64) - self.q0)
        self.duration = max(self.min_duration, float(np.max(_SMOOTHSTEP_PEAK * dist / self.max_speed)))
        return self.duration

    def command(self, t: float, path_at_t: np.ndarray) -> tuple[np.ndarray, bool]:
        """The ramped command at ``t`` and whether the ramp has finished (the arm is on the path)."""
        if self.t0 is None or self.q0 is None:
            return np.asarray(path_at_t, dtype=np.float64), True
        s = smoothstep((t - self.t0) / self.duration)
        cmd = self.q0 + s * (np.asarray(path_at_t, dtype=np.float64) - self.q0)
        done = s >= 1.0
        if done:
            self.reset()
        return cmd, done

    def reset(self) -> None:
        self.t0 = None
        self.q0 = None
        self.duration = 0.0
