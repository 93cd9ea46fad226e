"""A scripted expert for simulated tasks (no ROS): inverse kinematics to the goal, min-jerk motion.

IK is damped least squares on the forward-kinematics chain the safety layer uses
(``core.kinematics.chain_for_arm``: the MuJoCo model's link transforms, placed at the arm's
``base_pose``), position only, with a pull towards a rest pose in the Jacobian's null space and the
model's joint limits enforced; the Jacobian is taken by central differences (5-6 joints: cheap).

A plan (``ExpertPlan``) runs every arm through waypoints in joint space (embodiment joint order,
wire units), each segment a minimum-jerk profile (zero velocity and acceleration at the ends)
whose duration follows the largest joint move at ``max_joint_speed``. ``plan_reach`` goes above
the goal by ``approach_height_m`` first, then down onto it (the SO-101 touches the cube from
above), optionally through a seeded random via pose first (``detour``: demonstrations whose
every state does not already give away the goal, so that a policy trained on them has to look
for it); grippers hold ``gripper`` (0 closed .. 1 open) throughout. ``chunk(t, horizon, dt)``
samples the plan as an ActionChunk's row-major positions would carry it.

``servo_chunk`` is the other expert: each chunk planned afresh from the current command towards
``reach_pose`` (IK from a fixed seed), at a top speed then exponentially. What it commands is a
function of where the arm is and where the goal is, with no clock and no stop before the goal, so
a policy that sees the joint positions and the images (not the plan's time) can learn it exactly;
episodes that start from seeded poses around home (the task's ``start_jitter_rad``) cover the
states off the straight path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kinematics import KinematicChain, chain_for_arm


class IKError(RuntimeError):
    pass


def solve_ik(chain: KinematicChain, target: np.ndarray, q0: np.ndarray, lower: np.ndarray, upper: np.ndarray,
             rest: np.ndarray | None = None, damping: float = 0.02, rest_gain: float = 0.05, tol: float = 1e-3,
             iterations: int = 300) -> tuple[np.ndarray, float]:
    """Joint positions (the chain's joints) putting the tool point at ``target``; returns (q, error m)."""
    target = np.asarray(target, dtype=np.float64)
    q = np.clip(np.asarray(q0, dtype=np.float64).copy(), lower, upper)
    rest = q.copy() if rest is None else np.asarray(rest, dtype=np.float64)
    n = q.size
    eps = 1e-5
    err = np.inf
    for _ in range(iterations):
        p = chain.tool(q)
        e = target - p
        err = float(np.linalg.norm(e))
        if err < tol:
            break
        J = np.empty((3, n))
        for i in range(n):
            dq = np.zeros(n)
            dq[i] = eps
            J[:, i] = (chain.tool(q + dq) - chain.tool(q - dq)) / (2 * eps)
        JJt = J @ J.T + damping**2 * np.eye(3)
        Jpinv = J.T @ np.linalg.solve(JJt, np.eye(3))
        step = Jpinv @ e + (np.eye(n) - Jpinv @ J) @ (rest_gain * (rest - q))
        norm = np.linalg.norm(step)
        if norm > 0.2:  # keep each iteration in the linear region
            step *= 0.2 / norm
        q = np.clip(q + step, lower, upper)
    return q, err


def min_jerk(s: np.ndarray | float) -> np.ndarray | float:
    s = np.clip(s, 0.0, 1.0)
    return 10 * s**3 - 15 * s**4 + 6 * s**5


def servo_chunk(q_from: np.ndarray, q_goal: np.ndarray, horizon: int, dt: float, max_speed: float,
                time_constant_s: float) -> np.ndarray:
    """(horizon, n) targets due at k dt from ``q_from`` (row 0) towards ``q_goal``, on the straight
    line in joint space: the joint with the most to go moves at ``max_speed`` until it is
    ``max_speed x time_constant_s`` from its goal, then closes the rest exponentially. A function
    of ``q_from`` and the goal alone (no clock, no stop on the way): a policy that sees only where
    the arm is can learn it."""
    q_from = np.asarray(q_from, dtype=np.float64)
    d = np.asarray(q_goal, dtype=np.float64) - q_from
    r0 = float(np.max(np.abs(d))) if d.size else 0.0
    if r0 < 1e-9:
        return np.tile(q_from + d, (horizon, 1))
    t = np.arange(horizon) * dt
    knee = max_speed * time_constant_s
    if r0 > knee:
        t1 = (r0 - knee) / max_speed
        r = np.where(t < t1, r0 - max_speed * t, knee * np.exp(-(t - t1) / time_constant_s))
    else:
        r = r0 * np.exp(-t / time_constant_s)
    return q_from + np.outer(1.0 - r / r0, d)


@dataclass
class ExpertPlan:
    """Waypoints ``q[k]`` (full joint vectors) reached at ``t[k]`` (seconds, any one clock)."""

    t: np.ndarray
    q: np.ndarray

    def sample(self, now: float) -> np.ndarray:
        t, q = self.t, self.q
        if now <= t[0]:
            return q[0].copy()
        if now >= t[-1]:
            return q[-1].copy()
        k = int(np.searchsorted(t, now, side="right")) - 1
        s = (now - t[k]) / (t[k + 1] - t[k])
        return q[k] + min_jerk(s) * (q[k + 1] - q[k])

    def chunk(self, now: float, horizon: int, dt: float) -> np.ndarray:
        """(horizon, n) targets due at now + k dt."""
        return np.array([self.sample(now + k * dt) for k in range(horizon)])

    @property
    def end(self) -> float:
        return float(self.t[-1])


class ScriptedExpert:
    """IK and min-jerk plans for the arms ``arm_names`` of ``embodiment`` (joint vectors over
    exactly those arms' joints, embodiment order)."""

    def __init__(self, embodiment, arm_names: list[str] | None = None, max_joint_speed: float = 0.8,
                 approach_height_m: float = 0.06, gripper: float = 0.0, min_segment_s: float = 0.6,
                 ik_tolerance_m: float = 0.01) -> None:
        from .sim.models import model_for_arm

        self.embodiment = embodiment
        self.arms = [embodiment.arm(n) for n in arm_names] if arm_names else list(embodiment.arms)
        self.joints = [j for a in self.arms for j in a.joints]
        self.max_joint_speed = float(max_joint_speed)
        self.approach_height_m = float(approach_height_m)
        self.gripper = float(gripper)
        self.min_segment_s = float(min_segment_s)
        self.ik_tolerance_m = float(ik_tolerance_m)
        self.chains: dict[str, KinematicChain] = {}
        self.limits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.columns: dict[str, list[int]] = {}  # arm -> its chain joints' indices in self.joints
        self.gripper_column: dict[str, int | None] = {}
        start = 0
        for arm in self.arms:
            chain = chain_for_arm(embodiment, arm)
            self.chains[arm.name] = chain
            self.columns[arm.name] = [start + c for c in chain.joint_columns]
            self.gripper_column[arm.name] = start + arm.joints.index(arm.gripper) if arm.gripper else None
            start += len(arm.joints)
            lo, hi = self._chain_limits(model_for_arm(embodiment, arm), arm, chain)
            self.limits[arm.name] = (lo, hi)

    @staticmethod
    def _chain_limits(spec, arm, chain) -> tuple[np.ndarray, np.ndarray]:
        import mujoco

        m = mujoco.MjModel.from_xml_path(str(spec.path("xml")))
        rng = np.array([m.jnt_range[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in spec.arm_joints])
        lo, hi = rng[:, 0].copy(), rng[:, 1].copy()
        # inside the embodiment's own limits too, with a small margin
        for i, c in enumerate(chain.joint_columns):
            lim = arm.position_limits.get(arm.joints[c])
            if lim is not None:
                lo[i], hi[i] = max(lo[i], float(lim[0])), min(hi[i], float(lim[1]))
        margin = 0.02
        return lo + margin, hi - margin

    def ik(self, arm: str, target: np.ndarray, q_seed: np.ndarray) -> np.ndarray:
        """The arm's chain joints reaching ``target`` (world); IKError when no solution is close."""
        chain = self.chains[arm]
        lo, hi = self.limits[arm]
        q, err = solve_ik(chain, target, q_seed, lo, hi)
        if err > self.ik_tolerance_m:
            # a second try from the middle of the joint ranges
            q2, err2 = solve_ik(chain, target, 0.5 * (lo + hi), lo, hi, rest=q_seed)
            if err2 < err:
                q, err = q2, err2
        if err > self.ik_tolerance_m:
            raise IKError(f"arm '{arm}': no joint solution puts the tool within {self.ik_tolerance_m * 100:.1f} cm "
                          f"of {np.round(target, 3).tolist()} (best {err * 100:.1f} cm)")
        return q

    def tool_points(self, q: np.ndarray) -> dict[str, np.ndarray]:
        q = np.asarray(q, dtype=np.float64)
        return {a: self.chains[a].tool(q[self.columns[a]]) for a in self.chains}

    def plan_through(self, q_now: np.ndarray, t_now: float, waypoints: list[np.ndarray]) -> ExpertPlan:
        times, qs = [float(t_now)], [np.asarray(q_now, dtype=np.float64).copy()]
        for w in waypoints:
            move = float(np.max(np.abs(w - qs[-1]))) if w.size else 0.0
            # a min-jerk profile peaks at 1.875 x its mean speed
            times.append(times[-1] + max(self.min_segment_s, 1.875 * move / self.max_joint_speed))
            qs.append(w)
        return ExpertPlan(np.asarray(times), np.asarray(qs))

    def detour(self, q_now: np.ndarray, amplitude_rad: float, seed: int) -> np.ndarray:
        """A via pose: every chain joint of ``q_now`` moved by a uniform draw in +-amplitude_rad
        (seeded), inside the joint limits; the gripper as it is."""
        rng = np.random.default_rng(int(seed))
        q = np.asarray(q_now, dtype=np.float64).copy()
        for arm, col in self.columns.items():
            lo, hi = self.limits[arm]
            q[col] = np.clip(q[col] + rng.uniform(-amplitude_rad, amplitude_rad, len(col)), lo, hi)
        return q

    def reach_pose(self, q_now: np.ndarray, goals: dict[str, np.ndarray]) -> np.ndarray:
        """The joint vector with each goal's arm onto its goal, IK seeded from the arm's rest pose
        (zero, inside the limits) rather than from ``q_now``: the same goal gives the same pose
        wherever the arm starts; grippers at ``gripper``, other joints as in ``q_now``."""
        onto = np.asarray(q_now, dtype=np.float64).copy()
        for arm, col in self.columns.items():
            if arm not in goals:
                continue
            lo, hi = self.limits[arm]
            onto[col] = self.ik(arm, np.asarray(goals[arm], dtype=np.float64), np.clip(np.zeros(len(col)), lo, hi))
            g = self.gripper_column[arm]
            if g is not None:
                onto[g] = self.gripper
        return onto

    def plan_reach(self, q_now: np.ndarray, t_now: float, goals: dict[str, np.ndarray],
                   approach: bool = True, via: np.ndarray | None = None) -> ExpertPlan:
        """From ``q_now`` (through ``via`` when given) over each goal (``approach_height_m`` above)
        and onto it."""
        q_now = np.asarray(q_now, dtype=np.float64)
        reach_from = q_now if via is None else np.asarray(via, dtype=np.float64)  # where the reach begins
        above, onto = reach_from.copy(), reach_from.copy()
        for arm, col in self.columns.items():
            if arm not in goals:
                continue
            goal = np.asarray(goals[arm], dtype=np.float64)
            seed = reach_from[col]
            if approach and self.approach_height_m > 0:
                qa = self.ik(arm, goal + np.array([0.0, 0.0, self.approach_height_m]), seed)
                above[col] = qa
                seed = qa
            onto[col] = self.ik(arm, goal, seed)
            g = self.gripper_column[arm]
            if g is not None:
                above[g] = onto[g] = self.gripper
        waypoints = [above, onto] if approach and self.approach_height_m > 0 else [onto]
        if via is not None:
            waypoints.insert(0, reach_from)
        return self.plan_through(q_now, t_now, waypoints)
