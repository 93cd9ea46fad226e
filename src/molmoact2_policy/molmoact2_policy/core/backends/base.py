"""The ROS-free policy backend interface.

A backend turns one ``PolicyRequest`` (camera images in the model's camera order, the state vector
in MODEL units, the instruction and the norm tag) into a ``PolicyResult`` (an action chunk in model
units, plus MolmoAct2-Think's depth codes). Three kinds exist:

* ``hf``: a MolmoAct2 checkpoint directory in the released Hugging Face layout, run in-process with
  the model classes lerobot 0.6.1 ships;
* ``lerobot``: a LeRobot ``MolmoAct2Policy`` checkpoint (users' fine-tunes);
* ``remote``: an HTTP client of the ``/act`` protocol of the allenai/molmoact2 FastAPI servers (or
  of ``molmoact2-act-server``, which serves the same protocol over any local backend).

Nothing here imports torch, lerobot or ROS: ``make_backend`` imports the chosen kind lazily, so a
drivers-only venv can still use the ``remote`` backend.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ACTION_MODES = ("continuous", "discrete")
BACKEND_KINDS = ("hf", "lerobot", "remote")
ACTION_SPACES = ("joint_position", "end_effector")
#: LeRobot's ``RTCAttentionSchedule`` values (lerobot.configs.types), by name
RTC_SCHEDULES = ("ZEROS", "ONES", "LINEAR", "EXP")


class BackendError(RuntimeError):
    """The backend cannot serve a request (or cannot be built); the message says why."""


class CheckpointError(BackendError):
    """A checkpoint directory that is missing, incomplete or inconsistent; names the file."""


class BackendUnavailable(BackendError):
    """A transient failure (remote server down, timeout): the caller may retry with backoff."""


def action_space_of(control_mode: str) -> str | None:
    """Map a checkpoint's ``control_mode`` text to an action space of the embodiment config.

    DROID, BimanualYAM and SO100_101 checkpoints emit absolute joint positions; LIBERO ones emit
    end-effector actions. Returns None when the text says neither.
    """
    text = (control_mode or "").lower()
    if "joint" in text:
        return "joint_position"
    if re.search(r"end[ _-]?effector|\beef\b|\bee\b|cartesian|\bpose\b", text):
        return "end_effector"
    return None


CAMERA_KEY_PREFIXES = ("observation.images.", "observation.image.")
CAMERA_KEY_SUFFIX = "_cam"


def camera_name_of_key(key: str, cameras: Sequence[str]) -> str | None:
    """The camera of ``cameras`` a checkpoint/server camera key names, or None.

    A key names a camera when it is the camera's name, or the name under LeRobot's
    ``observation.images.`` prefix, or the name with the ``/act`` protocol's ``_cam`` suffix. Never
    matched by position or count.
    """
    key = str(key)
    forms = [key]
    for prefix in CAMERA_KEY_PREFIXES:
        if key.startswith(prefix):
            forms.append(key[len(prefix):])
    forms += [f[: -len(CAMERA_KEY_SUFFIX)] for f in list(forms) if f.endswith(CAMERA_KEY_SUFFIX)]
    return next((f for f in forms if f in cameras), None)


def match_camera_keys(cameras: Sequence[str], keys: Sequence[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """Match camera names to keys by name: (key -> camera, keys naming no camera, cameras no key names).

    A camera named by two keys counts the second key as unmatched.
    """
    matched: dict[str, str] = {}
    unmatched: list[str] = []
    for key in keys:
        cam = camera_name_of_key(key, cameras)
        if cam is None or cam in matched.values():
            unmatched.append(str(key))
        else:
            matched[str(key)] = cam
    missing = [c for c in cameras if c not in matched.values()]
    return matched, unmatched, missing


@dataclass(frozen=True)
class TagInfo:
    """What a checkpoint's norm_stats.json says about one norm tag."""

    name: str
    state_dim: int | None
    action_dim: int | None
    action_horizon: int | None
    n_action_steps: int | None
    control_mode: str = ""
    setup_type: str = ""
    cameras: tuple[str, ...] | None = None  # the tag's camera keys in model order, when the stats say

    @property
    def action_space(self) -> str | None:
        return action_space_of(self.control_mode)


@dataclass(frozen=True)
class BackendInfo:
    """What a loaded backend serves: checked against the embodiment config at configure time."""

    kind: str
    model_id: str
    tags: dict[str, TagInfo] = field(default_factory=dict)
    action_mode: str = "continuous"
    think: bool = False
    # the camera keys the backend takes images under, matched to camera names by ``camera_name_of_key``
    # (remote: ``<camera>_cam``; lerobot: ``observation.images.<camera>``); None: the backend takes
    # the images in the order of its norm tag's cameras
    camera_keys: tuple[str, ...] | None = None
    # takes RtcInputs (real-time chunking); a backend that says False would ignore them
    rtc: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return "think" if self.think else self.action_mode


@dataclass
class RtcInputs:
    """Real-time chunking inputs of one request, with LeRobot's names (``predict_action_chunk``'s
    ``prev_chunk_left_over``, ``inference_delay``, ``execution_horizon``; ``RTCConfig``'s
    ``max_guidance_weight`` and ``prefix_attention_schedule``).

    ``prev_chunk_left_over`` is in MODEL units (what the backend returned before, re-timed so that
    row 0 is due at this request's observation stamp); each backend normalises it as the model's
    actions are normalised."""

    prev_chunk_left_over: np.ndarray  # (M, D) float32, MODEL units
    inference_delay: int
    execution_horizon: int = 10
    max_guidance_weight: float = 10.0
    prefix_attention_schedule: str = "LINEAR"

    def validate(self, action_dim: int | None = None) -> None:
        left = np.asarray(self.prev_chunk_left_over)
        if left.ndim != 2 or left.shape[0] == 0:
            raise BackendError(f"prev_chunk_left_over must be (steps >= 1, action_dim), got shape {left.shape}")
        if action_dim is not None and left.shape[1] != action_dim:
            raise BackendError(f"prev_chunk_left_over has {left.shape[1]} action dims, the model emits {action_dim}")
        if not np.all(np.isfinite(left)):
            raise BackendError("prev_chunk_left_over holds NaN or inf")
        if int(self.inference_delay) < 0 or int(self.execution_horizon) < 1:
            raise BackendError(f"inference_delay {self.inference_delay} must be >= 0 and execution_horizon "
                               f"{self.execution_horizon} >= 1")
        if not float(self.max_guidance_weight) > 0:
            raise BackendError(f"max_guidance_weight must be > 0, got {self.max_guidance_weight}")
        if self.prefix_attention_schedule not in RTC_SCHEDULES:
            raise BackendError(f"prefix_attention_schedule '{self.prefix_attention_schedule}' must be one of "
                               f"{', '.join(RTC_SCHEDULES)}")


@dataclass
class PolicyRequest:
    """One inference request, already in model order and model units."""

    images: list[np.ndarray]  # HxWx3 uint8 RGB, in the model's camera order
    state: np.ndarray  # (state_dim,) float, MODEL units
    instruction: str
    norm_tag: str
    camera_names: list[str] = field(default_factory=list)  # model camera order (names, for remote keys)
    seed: int | None = None  # noise seed of the flow expert (None: nondeterministic)
    num_steps: int | None = None  # flow steps override for this call
    rtc: RtcInputs | None = None  # real-time chunking: continue the previous chunk

    def validate(self) -> None:
        if not self.images:
            raise BackendError("request has no images")
        for i, img in enumerate(self.images):
            name = self.camera_names[i] if i < len(self.camera_names) else str(i)
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise BackendError(
                    f"image of camera '{name}' must be an HxWx3 uint8 RGB array, got "
                    f"{getattr(img, 'shape', None)} {getattr(img, 'dtype', type(img).__name__)}")
        if self.camera_names and len(self.camera_names) != len(self.images):
            raise BackendError(f"{len(self.images)} images but {len(self.camera_names)} camera names")
        state = np.asarray(self.state)
        if state.ndim != 1:
            raise BackendError(f"state must be a vector, got shape {state.shape}")
        if not np.all(np.isfinite(state)):
            raise BackendError("state holds NaN or inf")
        if self.rtc is not None:
            self.rtc.validate()


@dataclass
class PolicyResult:
    """An action chunk in model units, with Think's depth codes when the backend reasons about depth."""

    actions: np.ndarray  # (N, D) float32, MODEL units
    depth_codes: np.ndarray | None = None  # (rows*cols,) uint8, row-major
    depth_refreshed: np.ndarray | None = None  # (rows*cols,) bool: re-predicted (True) or replayed
    depth_rows: int = 10
    depth_cols: int = 10
    num_depth_codes: int = 128
    timings: dict[str, float] = field(default_factory=dict)  # seconds, by stage

    def check_finite(self) -> None:
        if not np.all(np.isfinite(self.actions)):
            bad = int(np.size(self.actions) - np.count_nonzero(np.isfinite(self.actions)))
            raise NonFiniteActions(f"predicted chunk holds {bad} NaN/inf values")


class NonFiniteActions(BackendError):
    """The model produced NaN or inf: the chunk must not be published."""


class PolicyBackend(abc.ABC):
    """One small interface over every way of running MolmoAct2."""

    kind: str = "?"

    @abc.abstractmethod
    def info(self) -> BackendInfo:
        """What the backend serves (norm tags, dims, action space, mode)."""

    @abc.abstractmethod
    def predict(self, request: PolicyRequest) -> PolicyResult:
        """Run one inference; raises BackendError (BackendUnavailable for transient failures)."""

    def reset(self) -> None:
        """Episode boundary: drop any state carried from call to call (Think's depth cache)."""

    def close(self) -> None:
        """Release resources."""


def make_backend(kind: str, **options: Any) -> PolicyBackend:
    """Build a backend by kind; options are the kind's constructor keywords."""
    if kind == "hf":
        from .hf import HfBackend

        return HfBackend(**options)
    if kind == "lerobot":
        from .lerobot_policy import LeRobotBackend

        return LeRobotBackend(**options)
    if kind == "remote":
        from .remote import RemoteBackend

        return RemoteBackend(**options)
    raise BackendError(f"unknown backend kind '{kind}' (one of: {', '.join(BACKEND_KINDS)})")
