"""A JointTrajectoryController as seen from outside, for simulators and tests (no ROS imports).

It reproduces what ros2_controllers' ``joint_trajectory_controller`` (Jazzy) does with a
``trajectory_msgs/JointTrajectory`` arriving on ``~/joint_trajectory``:

- validation, with JTC's error messages: joint names must be the controller's (all of them unless
  ``allow_partial_joints_goal``), points non-empty, ``time_from_start`` strictly increasing, one
  position per joint, velocities (if any) one per joint, and the last point's velocities zero
  unless ``allow_nonzero_velocity_at_trajectory_end``; a stamped trajectory that ends in the past is
  rejected. A rejected message leaves the current trajectory running.
- replacement: a valid message replaces the active trajectory. It starts at ``header.stamp``, or
  on arrival when the stamp is zero ("start now"); the state at arrival is the point before the
  first waypoint, so the first segment runs from where the joints are to the first point by its
  ``time_from_start``. Joints a partial goal omits hold where they are.
- interpolation (``splines``): linear between points that carry positions only, cubic Hermite
  where both ends carry velocities; after the last point its position is held.

Times are seconds on any one clock (the caller's ``now``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FLOAT_EPS = float(np.finfo(np.float32).eps)  # JTC compares velocities with float epsilon


@dataclass
class TrajectoryPoint:
    time_from_start: float
    positions: list[float]
    velocities: list[float] = field(default_factory=list)


@dataclass
class Trajectory:
    joint_names: list[str]
    points: list[TrajectoryPoint]
    stamp: float = 0.0  # 0: start on arrival


class SimJointTrajectoryController:
    """``joints``: the controller's joints (its ``joints`` parameter), in its order."""

    def __init__(self, joints: list[str], initial: np.ndarray | None = None, allow_partial_joints_goal: bool = False,
                 allow_nonzero_velocity_at_trajectory_end: bool = False) -> None:
        self.joints = list(joints)
        self.allow_partial = bool(allow_partial_joints_goal)
        self.allow_nonzero_end = bool(allow_nonzero_velocity_at_trajectory_end)
        q0 = np.zeros(len(self.joints)) if initial is None else np.asarray(initial, dtype=np.float64).copy()
        self._hold = q0
        # the active trajectory in controller joint order: knot times (absolute), positions, velocities
        self._t: np.ndarray | None = None
        self._q: np.ndarray | None = None
        self._v: np.ndarray | None = None  # None: positions only (linear)
        self.accepted = 0
        self.rejected = 0
        self.last_error = ""

    # -- the ~/joint_trajectory callback ----------------------------------------------------
    def validate(self, traj: Trajectory, now: float) -> str:
        """'' if JTC would accept ``traj`` at ``now``, else the error JTC logs."""
        n = len(self.joints)
        if not self.allow_partial and len(traj.joint_names) != n:
            return "Joints on incoming trajectory don't match the controller joints."
        if not traj.joint_names:
            return "Empty joint names on incoming trajectory."
        if not traj.points:
            return "Empty trajectory received."
        for name in traj.joint_names:
            if name not in self.joints:
                return f"Incoming joint {name} doesn't match the controller's joints."
        if not self.allow_nonzero_end:
            for name, v in zip(traj.joint_names, traj.points[-1].velocities):
                if abs(v) > FLOAT_EPS:
                    return f"Velocity of last trajectory point of joint {name} is not zero: {v:.15f}"
        if traj.stamp != 0.0 and traj.stamp + traj.points[-1].time_from_start < now:
            return (f"Received trajectory with non-zero start time ({traj.stamp:f}) that ends in the past "
                    f"({traj.stamp + traj.points[-1].time_from_start:f})")
        k = len(traj.joint_names)
        prev = 0.0
        for i, p in enumerate(traj.points):
            if i > 0 and p.time_from_start <= prev:
                return (f"Time between points {i - 1} and {i} is not strictly increasing, it is {prev:f} and "
                        f"{p.time_from_start:f} respectively")
            prev = p.time_from_start
            if len(p.positions) != k:
                return f"Mismatch between joint_names size ({k}) and positions ({len(p.positions)}) at point #{i}."
            if p.velocities and len(p.velocities) != k:
                return f"Mismatch between joint_names size ({k}) and velocities ({len(p.velocities)}) at point #{i}."
            if not np.all(np.isfinite(p.positions)) or not np.all(np.isfinite(p.velocities or [0.0])):
                return f"Non-finite value at point #{i}."
        return ""

    def receive(self, traj: Trajectory, now: float) -> str:
        """Take a trajectory message at ``now``; returns '' if accepted, else JTC's error."""
        err = self.validate(traj, now)
        if err:
            self.rejected += 1
            self.last_error = err
            return err
        q_now, v_now = self.sample(now)
        index = [traj.joint_names.index(j) if j in traj.joint_names else -1 for j in self.joints]
        start = traj.stamp if traj.stamp != 0.0 else now
        with_vel = all(p.velocities for p in traj.points)
        times = [now] + [start + p.time_from_start for p in traj.points]
        qs = [q_now]
        vs = [v_now]
        for p in traj.points:
            # omitted joints (partial goal) hold at the current position
            qs.append(np.array([p.positions[i] if i >= 0 else q_now[j] for j, i in enumerate(index)]))
            if with_vel:
                vs.append(np.array([p.velocities[i] if i >= 0 else 0.0 for i in index]))
        t = np.asarray(times)
        if t[1] <= t[0]:  # first point already due: no segment from the current state
            t, qs, vs = t[1:], qs[1:], vs[1:]
        self._t, self._q = t, np.asarray(qs)
        self._v = np.asarray(vs) if with_vel else None
        self.accepted += 1
        return ""

    # -- the 1 kHz update ---------------------------------------------------------------------
    def sample(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """The desired positions and velocities at ``now`` (controller joint order)."""
        if self._t is None:
            return self._hold.copy(), np.zeros(len(self.joints))
        t, q = self._t, self._q
        if now <= t[0]:
            return q[0].copy(), (self._v[0].copy() if self._v is not None else np.zeros(len(self.joints)))
        if now >= t[-1]:
            self._hold = q[-1].copy()
            return q[-1].copy(), np.zeros(len(self.joints))
        k = int(np.searchsorted(t, now, side="right")) - 1
        h = t[k + 1] - t[k]
        s = (now - t[k]) / h
        if self._v is None:
            return q[k] + s * (q[k + 1] - q[k]), (q[k + 1] - q[k]) / h
        # cubic Hermite between (q_k, v_k) and (q_k+1, v_k+1)
        p0, p1, m0, m1 = q[k], q[k + 1], self._v[k] * h, self._v[k + 1] * h
        h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
        d00, d10, d01, d11 = 6 * s**2 - 6 * s, 3 * s**2 - 4 * s + 1, -6 * s**2 + 6 * s, 3 * s**2 - 2 * s
        return h00 * p0 + h10 * m0 + h01 * p1 + h11 * m1, (d00 * p0 + d10 * m0 + d01 * p1 + d11 * m1) / h

    @property
    def active(self) -> bool:
        return self._t is not None
