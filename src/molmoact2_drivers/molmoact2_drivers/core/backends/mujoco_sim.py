"""In-process MuJoCo backend: the arm's MuJoCo model, stepped to follow real time.

Each ``read_state``/``send_target`` steps the physics up to ``(monotonic() - start) *
real_time_factor`` (at most ``max_catch_up_s`` at once, so a stalled caller never makes the arm
race). For a graph with ``/clock`` and cameras use the simulation node
(``nodes/mujoco_sim_node``) and drive it through the ros2_control bridge instead; this backend is
the fast path for one process (tests, benchmarks, a driver without ROS time).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from ..backend import ArmBackend, BackendError, BackendHealth, JointReading
from ..sim.arm_sim import ArmSim
from ..sim.models import SimModelError, SimModelSpec, model_for_arm, model_spec


class MujocoBackend(ArmBackend):
    simulated = True

    def __init__(self, arm_name: str, joint_names: list[str], spec: SimModelSpec, gripper: str | None,
                 initial: np.ndarray | None = None, real_time_factor: float = 1.0, max_catch_up_s: float = 0.1) -> None:
        super().__init__(arm_name, joint_names)
        self.spec = spec
        self.gripper_index = joint_names.index(gripper) if gripper else None
        self.initial = initial
        self.rtf = float(real_time_factor)
        self.max_catch_up_s = float(max_catch_up_s)
        self.sim: ArmSim | None = None
        self._t0 = 0.0
        self._lock = threading.Lock()
        self.torque_on = False
        self.sent: list[tuple[float, np.ndarray]] = []

    def connect(self) -> None:
        try:
            self.sim = ArmSim(self.spec, len(self.joint_names), self.gripper_index, self.initial)
        except (SimModelError, ValueError) as exc:
            raise BackendError(f"arm '{self.arm_name}': MuJoCo model '{self.spec.name}': {exc}") from exc
        self._t0 = time.monotonic()

    def _advance(self) -> None:
        sim = self.sim
        if sim is None:
            raise BackendError(f"arm '{self.arm_name}': MuJoCo backend not connected")
        due = (time.monotonic() - self._t0) * self.rtf
        lag = due - sim.time
        if lag > self.max_catch_up_s:  # a caller that stalled: skip ahead instead of racing
            self._t0 += (lag - self.max_catch_up_s) / self.rtf
            lag = self.max_catch_up_s
        n = int(lag / sim.timestep)
        if n > 0:
            sim.step(n)

    def read_state(self) -> JointReading:
        with self._lock:
            self._advance()
            pos, vel, eff = self.sim.read()
            if not np.all(np.isfinite(pos)):
                raise BackendError(f"arm '{self.arm_name}': the MuJoCo simulation diverged (non-finite joint positions)")
            return JointReading(pos, vel, eff, time.monotonic(), {"sim_time": self.sim.time})

    def send_target(self, positions: np.ndarray) -> np.ndarray:
        with self._lock:
            self._advance()
            sent = self.sim.set_target(np.asarray(positions, dtype=np.float64))
            self.sent.append((time.monotonic(), sent.copy()))
            return sent

    def enable(self) -> None:
        # the simulated servos always hold their last target; torque state is recorded only
        self.torque_on = True

    def disable(self) -> None:
        self.torque_on = False

    def close(self) -> None:
        self.sim = None

    def health(self) -> BackendHealth:
        return BackendHealth(self.sim is not None, "" if self.sim is not None else "not connected")


def create(arm_config: Any, options: dict, embodiment=None, **context: Any) -> MujocoBackend:
    if options.get("sim_model"):
        spec = model_spec(str(options["sim_model"]))
    elif embodiment is not None:
        spec = model_for_arm(embodiment, arm_config)
    else:
        spec = model_spec(str(arm_config.extra.get("sim_model", "")))
    initial = options.get("initial_position")
    return MujocoBackend(arm_config.name, arm_config.joints, spec, arm_config.gripper,
                         None if initial is None else np.asarray(initial, dtype=np.float64),
                         float(options.get("real_time_factor", 1.0)), float(options.get("max_catch_up_s", 0.1)))
