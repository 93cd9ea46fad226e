"""Composed perception process: camera ingestion and masking, two nodes in one process.

The deployments' ``perception:=composed``. The camera node takes the process's name, namespace,
remappings and parameters as ``camera_node`` would; the masking node beside it (``mask_node_name``,
in the same namespace, with the same remappings) takes the ``mask_*`` parameters and gets each
Observation the camera node sends as arrays, in the sending thread, instead of taking it back
from the middleware: the masker's copy of the three frames is never serialised, sent and
deserialised. Both run on one single-threaded executor (a multi-threaded one spends more of the
GIL rebuilding wait sets than the callbacks spend working: bench/bench_perception.py), and the
Observation goes out as soon as every camera has a new frame (``observation_trigger`` defaults to
``frames`` here), so a frame waits for no timer. The topics are those of the two separate nodes.
"""

from __future__ import annotations

import dataclasses
import sys

from rclpy.parameter import Parameter

from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParamSpec

from ..core.observation_sync import SyncedObservation
from . import camera_node, masking_node

MASK_PREFIX = "mask_"


def _camera_params() -> list[ParamSpec]:
    return [dataclasses.replace(p, default="frames") if p.name == "observation_trigger" else p for p in camera_node.PARAMS]


PARAMS = _camera_params() + [
    ParamSpec("mask_node_name", str, "masking_node", "Name of the masking node in this process (deployments: change_mask)",
              check=bool, requirement="non-empty"),
] + [dataclasses.replace(p, name=MASK_PREFIX + p.name, description=f"Masking node: {p.description}") for p in masking_node.PARAMS]


def forwarded_ros_args(argv: list[str]) -> list[str]:
    """The remapping rules of the process's ``--ros-args`` (namespace and topics) for the masking
    node, which does not take the global arguments: their ``__node`` rule would give both nodes
    one name, and their parameters are the camera node's."""
    out: list[str] = []
    in_ros = False
    it = iter(argv)
    for arg in it:
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--":
            in_ros = False
        elif in_ros and arg in ("-r", "--remap"):
            rule = next(it, "")
            if "__node" not in rule.split(":=", 1)[0] and "__name" not in rule.split(":=", 1)[0]:
                out += ["-r", rule]
    return ["--ros-args", *out] if out else []


def make_nodes(argv: list[str]):
    camera = camera_node.CameraNode(params=PARAMS)
    overrides = [Parameter("use_sim_time", value=camera.get_parameter("use_sim_time").value)]
    for spec in masking_node.PARAMS:
        value = camera.p[MASK_PREFIX + spec.name]
        if not (isinstance(value, (list, tuple)) and not value):  # an empty list: the masker's default
            overrides.append(Parameter(spec.name, value=list(value) if isinstance(value, tuple) else value))
    try:
        masker = masking_node.MaskingNode(camera.p["mask_node_name"], subscribe_observation=False,
                                          cli_args=forwarded_ros_args(argv), use_global_arguments=False,
                                          parameter_overrides=overrides)
    except Exception:
        camera.destroy_node()
        raise

    def hand_over(obs: SyncedObservation) -> None:
        frames = [f for f in obs.frames if f is not None]
        masker.mask_observation(obs.now_ns, list(obs.camera_names), {f.camera: f.image for f in frames},
                                {f.camera: f.stamp_ns for f in frames}, {f.camera: f.frame_id for f in frames})

    camera.observation_listeners.append(hand_over)
    return [camera, masker]


def main(args=None) -> int:
    argv = list(sys.argv if args is None else args)
    return run_node(lambda: make_nodes(argv), args)


if __name__ == "__main__":
    raise SystemExit(main())
