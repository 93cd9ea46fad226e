"""The backend factory: ``create_backend(arm_config)`` builds the ArmBackend an arm's config names.

An arm's config (``config/embodiments/*.yaml``, ``arms[].backend``) holds ``type`` plus that
backend's own fields. Each type maps to a module that defines
``create(arm_config, options, **context) -> ArmBackend``; modules are imported only when used, so a
drivers-only robot PC never imports MuJoCo or rclpy for a serial arm, and an optional library
(franky-control) is only needed by the arm that uses it.

``context`` carries what some backends need from their host: ``node`` (an rclpy node, for the
ros2_control bridge), ``embodiment`` (the whole Embodiment), ``clock`` (a callable returning
seconds). Backends ignore what they do not use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..backend import ArmBackend, BackendError

#: type -> module defining ``create(arm_config, options, **context)``
BACKENDS: dict[str, str] = {
    "kinematic": "molmoact2_drivers.core.backends.kinematic",
    "mujoco": "molmoact2_drivers.core.backends.mujoco_sim",
    "ros2_control": "molmoact2_drivers.ros_backends.ros2_control",
    "feetech": "molmoact2_drivers.core.backends.feetech",
    "i2rt": "molmoact2_drivers.core.backends.i2rt_yam",
    "franky": "molmoact2_drivers.core.backends.franky",
}


def register_backend(type_name: str, module: str) -> None:
    """Add (or replace) a backend type; ``module`` must define ``create(arm_config, options, **context)``."""
    BACKENDS[type_name] = module


def create_backend(arm_config: Any, options: dict | None = None, type_name: str | None = None, **context: Any) -> ArmBackend:
    """Build the backend for one arm.

    ``options`` override fields of ``arm_config.backend``; ``type_name`` overrides its ``type``
    (the driver node's ``backend`` parameter: run a Feetech arm's config on the kinematic sim).
    """
    merged = {**dict(getattr(arm_config, "backend", {}) or {}), **(options or {})}
    kind = type_name or merged.get("type")
    if not kind:
        raise BackendError(f"arm '{arm_config.name}': no backend type (set arms[].backend.type in the embodiment config)")
    if kind not in BACKENDS:
        raise BackendError(f"arm '{arm_config.name}': unknown backend type '{kind}' (known: {', '.join(sorted(BACKENDS))})")
    try:
        module = importlib.import_module(BACKENDS[kind])
    except ImportError as exc:
        raise BackendError(f"arm '{arm_config.name}': backend '{kind}' is not available here: {exc}") from exc
    merged["type"] = kind
    return module.create(arm_config, merged, **context)


__all__ = ["BACKENDS", "create_backend", "register_backend"]
