"""Policy inputs and outputs by name, and the one wire <-> model unit conversion of the policy side.

The embodiment config says, by name, which cameras the model sees in which order (YAM: top, left,
right), which joints make up the state vector and the action vector, and the checkpoint's units
(``model.units``). ``PolicyIO`` assembles a request from an observation (whatever order the cameras
and joints arrive in), converts wire units (radians, gripper 0 = closed .. 1 = open) to model units,
and converts a predicted chunk back. Nowhere else on the policy side are model units converted.

ROS-free: the node hands it arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from molmoact2_common.embodiment import Embodiment

from .backends.base import BackendInfo, TagInfo, match_camera_keys


class PolicyIOError(ValueError):
    """An observation, chunk or checkpoint that does not fit the embodiment; the message names both sides."""


class PolicyIO:
    def __init__(self, embodiment: Embodiment, norm_tag: str | None = None) -> None:
        self.embodiment = embodiment
        m = embodiment.model
        self.norm_tag = norm_tag or m.norm_tag
        self.camera_order = list(m.camera_order)
        self.state_joints = list(m.state_joints)
        self.action_joints = list(m.action_joints)
        self.state_units = m.state_units
        self.action_units = m.action_units
        self.action_space = m.action_space
        self.dt = 1.0 / float(embodiment.control_rate_hz)
        self._image_indices: dict[tuple[str, ...], list[int]] = {}
        self._state_indices: dict[tuple[str, ...], np.ndarray] = {}

    # ------------------------------------------------------------------ inputs
    def _image_index(self, camera_names: Sequence[str]) -> list[int]:
        key = tuple(camera_names)
        found = self._image_indices.get(key)
        if found is None:
            index = {n: i for i, n in enumerate(key)}
            missing = [c for c in self.camera_order if c not in index]
            if missing:
                raise PolicyIOError(
                    f"observation has no image for camera(s) {', '.join(missing)} "
                    f"(observation cameras: {', '.join(key) or 'none'}; model camera order: {', '.join(self.camera_order)})")
            if len(self._image_indices) > 32:  # names that keep changing: never grow without bound
                self._image_indices.clear()
            found = self._image_indices[key] = [index[c] for c in self.camera_order]
        return found

    def _state_index(self, joint_names: Sequence[str]) -> np.ndarray:
        key = tuple(joint_names)
        found = self._state_indices.get(key)
        if found is None:
            index = {n: i for i, n in enumerate(key)}
            missing = [j for j in self.state_joints if j not in index]
            if missing:
                raise PolicyIOError(f"joint state lacks joint(s) {', '.join(missing)} the model's state needs")
            if len(self._state_indices) > 32:
                self._state_indices.clear()
            found = self._state_indices[key] = np.asarray([index[j] for j in self.state_joints], dtype=np.intp)
        return found

    def order_images(self, camera_names: Sequence[str], images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Images in the model's camera order, picked by name (the name -> slot map is worked out
        once per camera list: every observation of a graph names its cameras the same way)."""
        return [images[i] for i in self._image_index(camera_names)]

    def state_to_model(self, joint_names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        """Wire-unit joint positions (any order, by name) -> the model's state vector in model units."""
        if len(joint_names) != len(positions):
            raise PolicyIOError(f"joint state has {len(joint_names)} names but {len(positions)} positions")
        wire = np.asarray(positions, dtype=np.float64)[self._state_index(joint_names)]
        if not np.all(np.isfinite(wire)):
            bad = [j for j, v in zip(self.state_joints, wire) if not np.isfinite(v)]
            raise PolicyIOError(f"joint state holds NaN/inf for {', '.join(bad)}")
        return self.state_units.to_model(wire).astype(np.float32)

    def assemble(self, camera_names, images, joint_names, positions) -> tuple[list[np.ndarray], np.ndarray]:
        return self.order_images(camera_names, images), self.state_to_model(joint_names, positions)

    # ------------------------------------------------------------------ outputs
    def actions_to_wire(self, actions: np.ndarray) -> np.ndarray:
        """(N, D) model-unit chunk -> (N, D) wire units (radians, gripper 0..1), action joint order."""
        a = np.asarray(actions)
        if a.ndim != 2 or a.shape[1] != len(self.action_joints):
            raise PolicyIOError(
                f"chunk of shape {a.shape} does not match the embodiment's {len(self.action_joints)} action joints")
        return self.action_units.to_wire(a.astype(np.float64))

    # ------------------------------------------------------------------ checks
    def check_backend(self, info: BackendInfo) -> TagInfo:
        """Refuse a checkpoint whose norm tag, state size, action size, action space or camera names do
        not match this embodiment; each message names both sides."""
        name = f"embodiment '{self.embodiment.name}' ({self.embodiment.path.name})"
        model = f"checkpoint '{info.model_id}'"
        tag = info.tags.get(self.norm_tag)
        if tag is None:
            if info.tags:
                raise PolicyIOError(
                    f"{name} uses norm tag '{self.norm_tag}' but {model} has only: {', '.join(sorted(info.tags))}")
            tag = TagInfo(self.norm_tag, None, None, None, None)
        if tag.state_dim is not None and tag.state_dim != len(self.state_joints):
            raise PolicyIOError(
                f"state size mismatch: {name} has {len(self.state_joints)} state joints, {model} expects "
                f"{tag.state_dim} for norm tag '{self.norm_tag}'")
        if tag.action_dim is not None and tag.action_dim != len(self.action_joints):
            raise PolicyIOError(
                f"action size mismatch: {name} has {len(self.action_joints)} action joints, {model} emits "
                f"{tag.action_dim} for norm tag '{self.norm_tag}'")
        space = tag.action_space
        if space is not None and space != self.action_space:
            raise PolicyIOError(
                f"action space mismatch: {name} executes '{self.action_space}', {model} emits '{space}' "
                f"for norm tag '{self.norm_tag}' (control mode '{tag.control_mode}')")
        self.check_cameras(info, tag, name, model)
        return tag

    def check_cameras(self, info: BackendInfo, tag: TagInfo, name: str, model: str) -> None:
        """Cameras by name, never by count: every embodiment camera must be named by exactly one of the
        backend's camera keys (or, for a backend that takes images in its norm tag's camera order, by
        one of the tag's cameras, in the same order)."""
        by_keys = info.camera_keys is not None
        keys = info.camera_keys if by_keys else tag.cameras
        if keys is None:
            return
        matched, unmatched, missing = match_camera_keys(self.camera_order, keys)
        sides = (f"{name} gives the model cameras {', '.join(self.camera_order)}, "
                 f"{model} takes {', '.join(keys)} for norm tag '{self.norm_tag}'")
        if unmatched or missing:
            why = []
            if missing:
                why.append(f"no checkpoint camera for {', '.join(missing)}")
            if unmatched:
                why.append(f"no embodiment camera for {', '.join(unmatched)}")
            raise PolicyIOError(f"camera set mismatch: {sides} ({'; '.join(why)})")
        if not by_keys and [matched[str(k)] for k in keys] != self.camera_order:
            raise PolicyIOError(
                f"camera order mismatch: {sides}; the images go to the model in model.camera_order, "
                "which must follow the checkpoint's camera order")
