"""Forward kinematics for the workspace check, derived from the embodiment's MuJoCo model.

The link transforms (each body's fixed offset from its parent, each hinge's anchor and axis) are
read once from the MuJoCo model the packages ship (``core.sim.models``); forward kinematics then
runs in plain numpy (a few microseconds per call, no MjData), so the safety layer can check every
servo-rate command. ``points(q)`` returns the origin of every body from the base to the tool and
the tool point itself, in the robot's world frame: the arm base placed by ``arms[].base_pose``
({xyz: [x, y, z], rpy: [r, p, y]}, metres and radians; default the origin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .sim.models import SimModelSpec, model_for_arm


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def rpy_to_matrix(rpy) -> np.ndarray:
    r, p, y = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.array([
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ])


def axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    x, y, z = axis
    c, s = np.cos(angle), np.sin(angle)
    C = 1 - c
    return np.array([
        [c + x * x * C, x * y * C - z * s, x * z * C + y * s],
        [y * x * C + z * s, c + y * y * C, y * z * C - x * s],
        [z * x * C - y * s, z * y * C + x * s, c + z * z * C],
    ])


@dataclass
class _Link:
    name: str
    pos: np.ndarray  # offset from the parent body, parent frame
    rot: np.ndarray  # 3x3, parent frame
    joint_index: int  # index into the chain's q, or -1 (fixed)
    joint_anchor: np.ndarray
    joint_axis: np.ndarray


class KinematicChain:
    """A serial chain from a base body to a tool point."""

    def __init__(self, links: list[_Link], tip_pos: np.ndarray, tip_rot: np.ndarray, n_joints: int,
                 base_pos: np.ndarray | None = None, base_rot: np.ndarray | None = None) -> None:
        self.links = links
        self.tip_pos = tip_pos
        self.tip_rot = tip_rot
        self.n_joints = n_joints
        self.base_pos = np.zeros(3) if base_pos is None else np.asarray(base_pos, dtype=np.float64)
        self.base_rot = np.eye(3) if base_rot is None else np.asarray(base_rot, dtype=np.float64)
        self.joint_columns: list[int] = list(range(n_joints))  # which of the arm's joints feed the chain

    def frames(self, q: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """World (position, rotation) of every link, then of the tool point."""
        q = np.asarray(q, dtype=np.float64)
        p, R = self.base_pos.copy(), self.base_rot.copy()
        out = []
        for link in self.links:
            p = p + R @ link.pos
            R = R @ link.rot
            if link.joint_index >= 0:
                Rj = axis_angle(link.joint_axis, q[link.joint_index])
                # rotation about an axis through the joint anchor (body frame)
                p = p + R @ (link.joint_anchor - Rj @ link.joint_anchor)
                R = R @ Rj
            out.append((p.copy(), R.copy()))
        out.append((p + R @ self.tip_pos, R @ self.tip_rot))
        return out

    def tool(self, q: np.ndarray) -> np.ndarray:
        return self.frames(q)[-1][0]

    def points(self, q_arm: np.ndarray) -> np.ndarray:
        """(N, 3) world points for the arm's joint vector (the embodiment's joint order)."""
        q_arm = np.asarray(q_arm, dtype=np.float64)
        q = q_arm[self.joint_columns]
        return np.array([f[0] for f in self.frames(q)])


def chain_from_mujoco(xml_path: str, joint_names: list[str], tip_site: str = "", tip_body: str = "") -> KinematicChain:
    """Read the link transforms from a MuJoCo model; ``joint_names`` are the model's hinge joints."""
    import mujoco

    model = mujoco.MjModel.from_xml_path(str(xml_path))
    jids = []
    for name in joint_names:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0:
            raise ValueError(f"{xml_path}: no joint named '{name}'")
        if model.jnt_type[jid] != mujoco.mjtJoint.mjJNT_HINGE:
            raise ValueError(f"{xml_path}: joint '{name}' is not a hinge")
        jids.append(jid)
    if tip_site:
        sid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, tip_site)
        if sid < 0:
            raise ValueError(f"{xml_path}: no site named '{tip_site}'")
        tip = int(model.site_bodyid[sid])
        tip_pos, tip_rot = model.site_pos[sid].copy(), quat_to_matrix(model.site_quat[sid])
    else:
        tip = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, tip_body)
        if tip < 0:
            raise ValueError(f"{xml_path}: no body named '{tip_body}'")
        tip_pos, tip_rot = np.zeros(3), np.eye(3)
    chain_bodies = []
    b = tip
    while b != 0:
        chain_bodies.append(b)
        b = int(model.body_parentid[b])
    chain_bodies.reverse()
    joint_of_body = {int(model.jnt_bodyid[j]): (i, j) for i, j in enumerate(jids)}
    links = []
    for b in chain_bodies:
        njnt = int(model.body_jntnum[b])
        listed = joint_of_body.get(b)
        if njnt > 1 or (njnt == 1 and listed is None):
            first = int(model.body_jntadr[b])
            raise ValueError(f"{xml_path}: body '{mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b)}' on the chain has "
                             f"joint '{mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, first)}' not in the chain's joints")
        if listed is not None:
            i, j = listed
            links.append(_Link(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b), model.body_pos[b].copy(),
                               quat_to_matrix(model.body_quat[b]), i, model.jnt_pos[j].copy(),
                               model.jnt_axis[j] / np.linalg.norm(model.jnt_axis[j])))
        else:
            links.append(_Link(mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b), model.body_pos[b].copy(),
                               quat_to_matrix(model.body_quat[b]), -1, np.zeros(3), np.array([0.0, 0.0, 1.0])))
    missing = [joint_names[i] for i, j in enumerate(jids) if int(model.jnt_bodyid[j]) not in chain_bodies]
    if missing:
        raise ValueError(f"{xml_path}: joints {', '.join(missing)} are not on the chain to the tool")
    return KinematicChain(links, tip_pos, tip_rot, len(jids))


def chain_for_spec(spec: SimModelSpec) -> KinematicChain:
    return chain_from_mujoco(str(spec.path("xml")), list(spec.arm_joints), spec.tip_site, spec.tip_body)


def chain_for_arm(embodiment, arm) -> KinematicChain:
    """The arm's chain, placed at ``arms[].base_pose``, fed from the arm's non-gripper joints."""
    spec = model_for_arm(embodiment, arm)
    chain = chain_for_spec(spec)
    arm_joints = [j for j in arm.joints if j != arm.gripper]
    if len(arm_joints) != chain.n_joints:
        raise ValueError(f"{embodiment.path}: arm '{arm.name}' has {len(arm_joints)} non-gripper joints, "
                         f"MuJoCo model '{spec.name}' {chain.n_joints}")
    chain.joint_columns = [arm.joints.index(j) for j in arm_joints]
    pose = dict(arm.extra.get("base_pose") or {})
    chain.base_pos = np.asarray(pose.get("xyz", [0.0, 0.0, 0.0]), dtype=np.float64)
    chain.base_rot = rpy_to_matrix(pose.get("rpy", [0.0, 0.0, 0.0]))
    return chain
