"""Franka FR3 + Franka Hand through ``franky-control`` (optional, import-guarded). UNTESTED on hardware.

Supported: a **Franka Research 3** (FR3) on a system image that libfranka 0.21 talks to
(franky-control 2.0.0 bundles libfranka 0.21.2; older Panda / FER robots need libfranka 0.9 and
are not supported by this backend) with the **Franka Hand**. DROID rigs use a Robotiq 2F-85
instead: that gripper is not driven here (set ``gripper: none`` and drive it separately). The
robot PC needs a PREEMPT_RT kernel (libfranka's 1 kHz loop).

Nothing here can be exercised without the robot, so the backend is thin and relies on the shared
safety layer (limits, velocity clamp, envelope) upstream: each ``send_target`` starts a
``JointMotion`` asynchronously, which preempts the running one (franky's motion preemption, Ruckig
trajectories), at the DROID rate (15 Hz; the driver's ``servo_rate_hz``). The gripper opening
(0 closed .. 1 open) maps onto the hand's width [0, max_width] and is sent only when it changed by
more than ``gripper_deadband``. Franka's *tested* path in this stack is the ros2_control bridge
(franka_ros2), not this backend.

``pip install franky-control==2.0.0`` on the Franka robot PC; other machines never import it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from ..backend import ArmBackend, BackendError, BackendHealth, JointReading


def _import_franky():
    try:
        import franky  # noqa: F401
    except ImportError as exc:
        raise BackendError("the franky backend needs franky-control (pip install franky-control==2.0.0) on the Franka robot PC; "
                           f"it is optional and not installed here ({exc})") from None
    return franky


class FrankyBackend(ArmBackend):
    def __init__(self, arm_name: str, joint_names: list[str], *, host: str, gripper: str | None = None,
                 relative_dynamics_factor: float = 0.1, gripper_speed: float = 0.05, gripper_deadband: float = 0.02) -> None:
        super().__init__(arm_name, joint_names)
        n_arm = len(joint_names) - (1 if gripper else 0)
        if n_arm != 7:
            raise BackendError(f"franky backend '{arm_name}': an FR3 has 7 joints, the arm config has {n_arm} (+ gripper: {gripper})")
        if not 0.0 < relative_dynamics_factor <= 1.0:
            raise BackendError(f"franky backend '{arm_name}': relative_dynamics_factor must be in (0, 1], got {relative_dynamics_factor}")
        self.host = host
        self.gripper = gripper
        self.gripper_index = joint_names.index(gripper) if gripper else None
        self.relative_dynamics_factor = float(relative_dynamics_factor)
        self.gripper_speed = float(gripper_speed)
        self.gripper_deadband = float(gripper_deadband)
        self._robot = None
        self._hand = None
        self._max_width = 0.08
        self._last_gripper: float | None = None
        self._lock = threading.RLock()
        self._fault: str | None = None

    def _arm_idx(self) -> list[int]:
        return [i for i in range(len(self.joint_names)) if i != self.gripper_index]

    def connect(self) -> None:
        franky = _import_franky()
        with self._lock:
            self.close()
            self._fault = None
            try:
                self._robot = franky.Robot(self.host, relative_dynamics_factor=self.relative_dynamics_factor)
                self._robot.recover_from_errors()
                if self.gripper:
                    self._hand = franky.Gripper(self.host)
                    self._max_width = float(self._hand.max_width)
            except Exception as exc:
                self._robot = self._hand = None
                raise BackendError(f"franky backend '{self.arm_name}': cannot connect to the FR3 at {self.host}: {exc}") from None

    def _require(self) -> None:
        if self._fault:
            raise BackendError(self._fault)
        if self._robot is None:
            raise BackendError(f"franky backend '{self.arm_name}': not connected")

    def read_state(self) -> JointReading:
        with self._lock:
            self._require()
            try:
                js = self._robot.current_joint_state
                q, dq = np.asarray(js.position, dtype=float).ravel(), np.asarray(js.velocity, dtype=float).ravel()
                width = float(self._hand.width) if self._hand is not None else None
            except Exception as exc:
                self._fault = f"franky backend '{self.arm_name}': reading the state failed: {exc}"
                raise BackendError(self._fault) from None
            pos, vel = np.zeros(len(self.joint_names)), np.zeros(len(self.joint_names))
            pos[self._arm_idx()], vel[self._arm_idx()] = q, dq
            if self.gripper_index is not None:
                pos[self.gripper_index] = min(1.0, max(0.0, width / self._max_width)) if self._max_width > 0 else 0.0
            return JointReading(pos, vel, None, time.monotonic())

    def send_target(self, positions: np.ndarray) -> np.ndarray:
        franky = _import_franky()
        target = np.asarray(positions, dtype=np.float64)
        if target.shape != (len(self.joint_names),) or not np.all(np.isfinite(target)):
            raise BackendError(f"franky backend '{self.arm_name}': target must be {len(self.joint_names)} finite values")
        sent = target.copy()
        with self._lock:
            self._require()
            try:
                if self._robot.has_errors:
                    raise RuntimeError("the robot reports errors (reflex / limit violation)")
                motion = franky.JointMotion(target[self._arm_idx()].tolist(), return_when_finished=False)
                self._robot.move(motion, asynchronous=True)  # preempts the running motion
                if self.gripper_index is not None:
                    g = sent[self.gripper_index] = min(1.0, max(0.0, float(target[self.gripper_index])))
                    if self._last_gripper is None or abs(g - self._last_gripper) > self.gripper_deadband:
                        self._hand.move_async(g * self._max_width, self.gripper_speed)
                        self._last_gripper = g
            except Exception as exc:
                self._fault = f"franky backend '{self.arm_name}': command failed: {exc}; the robot's own reflexes stop it"
                raise BackendError(self._fault) from None
        return sent

    def enable(self) -> None:
        with self._lock:
            self._require()
            self.send_target(self.read_state().positions)

    def disable(self) -> None:
        with self._lock:
            self._require()
            try:
                self._robot.stop()
            except Exception as exc:
                raise BackendError(f"franky backend '{self.arm_name}': stop failed: {exc}") from None

    def close(self) -> None:
        with self._lock:
            robot, self._robot, self._hand = self._robot, None, None
            if robot is not None:
                try:
                    robot.stop()
                except Exception:
                    pass

    def health(self) -> BackendHealth:
        if self._fault:
            return BackendHealth(False, self._fault)
        return BackendHealth(self._robot is not None, "" if self._robot is not None else "not connected")


def create(arm_config: Any, options: dict, **context: Any) -> FrankyBackend:
    """``arms[].backend``: ``type: franky``, ``host`` (the FCI address), optional ``relative_dynamics_factor``,
    ``gripper_speed`` (m/s), ``gripper_deadband``; ``gripper: none`` when the hand is not a Franka Hand."""
    _import_franky()
    host = options.get("host")
    if not host:
        raise BackendError(f"arm '{arm_config.name}': franky backend needs backend.host (the robot's FCI address)")
    gripper = arm_config.gripper if options.get("gripper", "franka_hand") != "none" else None
    joints = list(arm_config.joints) if gripper or not arm_config.gripper else [j for j in arm_config.joints if j != arm_config.gripper]
    if not gripper and arm_config.gripper:
        raise BackendError(f"arm '{arm_config.name}': gripper: none needs an arm config without the gripper joint '{arm_config.gripper}'")
    kwargs = {k: float(options[k]) for k in ("relative_dynamics_factor", "gripper_speed", "gripper_deadband") if k in options}
    return FrankyBackend(arm_config.name, joints, host=str(host), gripper=gripper, **kwargs)
