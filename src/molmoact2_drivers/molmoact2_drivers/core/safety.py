"""The safety layer: every command that reaches a backend passes through ``SafetyLayer.filter``.

Checks, in order, each counted in ``SafetyCounters`` (the DriverStatus counters):

1. NaN / inf: the command is refused; the previous command is held (``refusals_nonfinite``).
2. Joint position limits (minus an optional margin): clamped (``clamps_position``).
3. Per-joint velocity limits in rad/s, enforced at the servo rate: the step from the previous
   command is clamped to ``v_max * dt`` (``clamps_velocity``). The YAM deployment's 0.03 rad per
   30 Hz tick is 0.9 rad/s.
4. Relative to the measured position (LeRobot's ``max_relative_target``): no arm joint is
   commanded further than ``max_relative_target`` from where the arm really is, so a command that
   drifted from the arm (a sag while a servo unloaded, a push, a stall) can never become a step
   (``clamps_relative``). Grippers are exempt: a grasp legitimately leaves them short of their
   target.
5. Cartesian workspace, optional: points of the arm from forward kinematics must stay inside a
   box and above a table height; and for a bimanual robot, at least ``min_arm_distance_m`` from
   the other arm's points, which must be fresh: a peer whose commanded positions are missing or
   older than ``peer_max_age_s`` makes every motion refused (``refusals_peer_stale``). A command
   that leaves the workspace is refused and the previous one held (``refusals_workspace``).
   Holding still is never refused: an arm already outside may stay.

The envelope from the checkpoint's norm stats (q01/q99 widened by a margin, in wire units) clamps
the targets of every chunk as it arrives (``clamp_to_envelope``; ``clamps_envelope`` counts the
chunks it changed), so the arming ramp and the executor only ever see paths inside it and an arm
that rests outside it is never jerked in while holding.

Checks on whole chunks (joint names, NaN/inf, sequence), tracking error, the watchdog, heartbeat
and e-stop live in ``driver_core``; they count into the same counters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np


@dataclass
class SafetyCounters:
    """Every refusal and clamp since configure (field names match molmoact2_msgs/DriverStatus)."""

    chunks_received: int = 0
    chunks_refused: int = 0
    steps_dropped_late: int = 0
    clamps_position: int = 0
    clamps_velocity: int = 0
    clamps_envelope: int = 0
    refusals_nonfinite: int = 0
    refusals_workspace: int = 0
    watchdog_holds: int = 0
    heartbeat_losses: int = 0
    clamps_relative: int = 0
    tracking_faults: int = 0
    refusals_peer_stale: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Workspace:
    """A Cartesian region for the arm's points, in the robot's world frame (metres).

    ``points_fn(q)`` returns (N, 3) points of the arm (link origins and the tool tip) for joint
    positions ``q``; ``peer_points_fn()`` returns ``(points, why)``: the other arm's current
    points, or None and why they cannot be trusted (never received, older than the bound).
    """

    points_fn: Callable[[np.ndarray], np.ndarray]
    box_min: np.ndarray | None = None
    box_max: np.ndarray | None = None
    table_z: float | None = None
    peer_points_fn: Callable[[], tuple[np.ndarray | None, str]] | None = None
    min_arm_distance_m: float = 0.0

    def peer_problem(self) -> str:
        """Why the minimum-distance check cannot run ('' when it can, or when it is off)."""
        if self.peer_points_fn is None or self.min_arm_distance_m <= 0:
            return ""
        peer, why = self.peer_points_fn()
        return "" if peer is not None else (why or "the other arm's commanded positions are unknown")

    def violation(self, q: np.ndarray) -> str:
        """'' when ``q`` is inside; otherwise what it violates."""
        pts = np.asarray(self.points_fn(q), dtype=np.float64)
        if self.box_min is not None and np.any(pts < self.box_min - 1e-9):
            i = int(np.argmax(np.any(pts < self.box_min - 1e-9, axis=1)))
            return f"point {i} at {np.round(pts[i], 3).tolist()} is outside the workspace box (min {self.box_min.tolist()})"
        if self.box_max is not None and np.any(pts > self.box_max + 1e-9):
            i = int(np.argmax(np.any(pts > self.box_max + 1e-9, axis=1)))
            return f"point {i} at {np.round(pts[i], 3).tolist()} is outside the workspace box (max {self.box_max.tolist()})"
        if self.table_z is not None and np.any(pts[:, 2] < self.table_z):
            i = int(np.argmin(pts[:, 2]))
            return f"point {i} at z = {pts[i, 2]:.3f} m is below the table (z = {self.table_z} m)"
        if self.peer_points_fn is not None and self.min_arm_distance_m > 0:
            peer, _ = self.peer_points_fn()
            if peer is not None and len(peer):
                d = np.linalg.norm(pts[:, None, :] - np.asarray(peer)[None, :, :], axis=2)
                if float(d.min()) < self.min_arm_distance_m:
                    return f"arms {float(d.min()):.3f} m apart (minimum {self.min_arm_distance_m} m)"
        return ""


@dataclass
class FilterResult:
    command: np.ndarray
    refused: str = ""  # why the command was refused (the previous one is held), '' if not
    clamped: tuple[str, ...] = ()


class SafetyLayer:
    """Position, envelope and velocity limits, NaN/inf and workspace checks for one arm."""

    def __init__(
        self,
        joint_names: list[str],
        lower: np.ndarray,
        upper: np.ndarray,
        max_velocity: np.ndarray,
        servo_dt: float,
        limit_margin: float = 0.0,
        envelope: tuple[np.ndarray, np.ndarray] | None = None,
        workspace: Workspace | None = None,
        counters: SafetyCounters | None = None,
        margin_exempt: list[str] | None = None,
        max_relative_target: float = 0.0,
        relative_exempt: list[str] | None = None,
    ) -> None:
        n = len(joint_names)
        self.joint_names = list(joint_names)
        lower = np.asarray(lower, dtype=np.float64)
        upper = np.asarray(upper, dtype=np.float64)
        max_velocity = np.asarray(max_velocity, dtype=np.float64)
        for name, arr in (("lower limits", lower), ("upper limits", upper), ("velocity limits", max_velocity)):
            if arr.shape != (n,):
                raise ValueError(f"{name}: {arr.shape} values for {n} joints")
        if not servo_dt > 0:
            raise ValueError(f"servo_dt must be > 0, got {servo_dt}")
        if np.any(max_velocity <= 0):
            raise ValueError("velocity limits must be > 0")
        margin = np.full(n, float(limit_margin))
        for j in margin_exempt or []:  # grippers: the margin is in radians, their unit is an opening
            if j in self.joint_names:
                margin[self.joint_names.index(j)] = 0.0
        self.lower = lower + margin
        self.upper = upper - margin
        bad = [self.joint_names[i] for i in np.flatnonzero(self.lower >= self.upper)]
        if bad:
            raise ValueError(f"joint limit margin {limit_margin} leaves no range for: {', '.join(bad)}")
        self.max_velocity = max_velocity
        self.servo_dt = float(servo_dt)
        self.envelope = None
        if envelope is not None:
            lo, hi = (np.asarray(x, dtype=np.float64) for x in envelope)
            if lo.shape != (n,) or hi.shape != (n,) or np.any(lo > hi) or not np.all(np.isfinite(lo) & np.isfinite(hi)):
                raise ValueError(f"envelope must be two finite arrays of {n} values with low <= high")
            self.envelope = (lo, hi)
        self.workspace = workspace
        self.counters = counters if counters is not None else SafetyCounters()
        if not (np.isfinite(max_relative_target) and max_relative_target >= 0):
            raise ValueError(f"max_relative_target must be >= 0 (0: off), got {max_relative_target}")
        # per joint: the largest distance from the measured position a command may have (inf: off)
        self.max_relative = np.full(n, float(max_relative_target) if max_relative_target > 0 else np.inf)
        for j in relative_exempt or []:
            if j in self.joint_names:
                self.max_relative[self.joint_names.index(j)] = np.inf

    def clamp_to_envelope(self, targets: np.ndarray) -> tuple[np.ndarray, bool]:
        """A chunk's (steps, joints) targets clipped into the envelope; whether any was changed."""
        targets = np.asarray(targets, dtype=np.float64)
        if self.envelope is None:
            return targets, False
        clipped = np.clip(targets, *self.envelope)
        changed = bool(np.any(clipped != targets))
        if changed:
            self.counters.clamps_envelope += 1
        return clipped, changed

    def filter(self, command: np.ndarray, previous: np.ndarray, dt: float | None = None,
               measured: np.ndarray | None = None) -> FilterResult:
        """The command that may be sent, given the previous one sent (which is held on refusal) and
        the measured position (for the relative limit; None skips it)."""
        previous = np.asarray(previous, dtype=np.float64)
        cmd = np.asarray(command, dtype=np.float64)
        c = self.counters
        if cmd.shape != previous.shape or not np.all(np.isfinite(cmd)):
            c.refusals_nonfinite += 1
            bad = [self.joint_names[i] for i in np.flatnonzero(~np.isfinite(cmd))] if cmd.shape == previous.shape else []
            return FilterResult(previous.copy(), f"non-finite target for {', '.join(bad) or 'a malformed command'}: holding")
        clamped: list[str] = []
        limited = np.clip(cmd, self.lower, self.upper)
        if np.any(limited != cmd):
            c.clamps_position += 1
            clamped.append("position")
        step = self.max_velocity * (self.servo_dt if dt is None else dt)
        moved = np.clip(limited, previous - step, previous + step)
        if np.any(np.abs(moved - limited) > 1e-12):
            c.clamps_velocity += 1
            clamped.append("velocity")
        if measured is not None and np.any(np.isfinite(self.max_relative)):
            here = np.asarray(measured, dtype=np.float64)
            near = np.clip(moved, here - self.max_relative, here + self.max_relative)
            if np.any(np.abs(near - moved) > 1e-12):
                c.clamps_relative += 1
                clamped.append("relative")
            moved = near
        if self.workspace is not None and np.any(moved != previous):
            stale = self.workspace.peer_problem()
            if stale:
                c.refusals_peer_stale += 1
                return FilterResult(previous.copy(), f"minimum arm distance cannot be checked: {stale}: holding", tuple(clamped))
            why = self.workspace.violation(moved)
            if why:
                c.refusals_workspace += 1
                return FilterResult(previous.copy(), f"workspace: {why}: holding", tuple(clamped))
        return FilterResult(moved, "", tuple(clamped))


def envelope_from_norm_stats(q01: np.ndarray, q99: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The (low, high) envelope from q01/q99 plus an absolute margin, in the units of q01/q99."""
    q01 = np.asarray(q01, dtype=np.float64)
    q99 = np.asarray(q99, dtype=np.float64)
    return np.minimum(q01, q99) - margin, np.maximum(q01, q99) + margin
