"""Serialized messages built with the bag typestore (no rclpy), and a small synthetic
demonstration bag: cameras that see a moving square, joint states that follow a smooth
trajectory, optionally the ActionChunks of a policy. Used by the tests, the benchmark and to
try the tools on a machine without a robot."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..image_codec import encode_compressed, encode_raw
from .bagio import BagWriter, make_typestore

NS = 1_000_000_000


def _header(store, stamp_ns: int, frame_id: str = ""):
    T = store.types
    return T["std_msgs/msg/Header"](stamp=_time(store, stamp_ns), frame_id=frame_id)


def _time(store, ns: int):
    return store.types["builtin_interfaces/msg/Time"](sec=int(ns) // NS, nanosec=int(ns) % NS)


def joint_state_cdr(store, stamp_ns: int, names: Sequence[str], positions: Sequence[float]) -> bytes:
    msg = store.types["sensor_msgs/msg/JointState"](
        header=_header(store, stamp_ns), name=list(names), position=np.asarray(positions, np.float64),
        velocity=np.zeros(0, np.float64), effort=np.zeros(0, np.float64),
    )
    return bytes(store.serialize_cdr(msg, "sensor_msgs/msg/JointState"))


def action_chunk_cdr(store, stamp_ns: int, names: Sequence[str], positions: np.ndarray, dt: float,
                     sequence: int, model_id: str, latency: float = 0.0) -> bytes:
    positions = np.asarray(positions, np.float64)
    msg = store.types["molmoact2_msgs/msg/ActionChunk"](
        header=_header(store, stamp_ns), joint_names=list(names), horizon=int(positions.shape[0]), dt=float(dt),
        positions=positions.reshape(-1), sequence=int(sequence), model_id=model_id, inference_latency=float(latency),
    )
    return bytes(store.serialize_cdr(msg, "molmoact2_msgs/msg/ActionChunk"))


def image_cdr(store, stamp_ns: int, rgb: np.ndarray, encoding: str = "rgb8", frame_id: str = "camera") -> bytes:
    data, step = encode_raw(rgb, encoding)
    msg = store.types["sensor_msgs/msg/Image"](
        header=_header(store, stamp_ns, frame_id), height=int(rgb.shape[0]), width=int(rgb.shape[1]),
        encoding=encoding, is_bigendian=0, step=int(step), data=np.frombuffer(data, np.uint8),
    )
    return bytes(store.serialize_cdr(msg, "sensor_msgs/msg/Image"))


def compressed_image_cdr(store, stamp_ns: int, rgb: np.ndarray, fmt: str = "jpeg", frame_id: str = "camera") -> bytes:
    msg = store.types["sensor_msgs/msg/CompressedImage"](
        header=_header(store, stamp_ns, frame_id), format=fmt,
        data=np.frombuffer(encode_compressed(rgb, fmt), np.uint8),
    )
    return bytes(store.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))


def string_cdr(store, text: str) -> bytes:
    return bytes(store.serialize_cdr(store.types["std_msgs/msg/String"](data=text), "std_msgs/msg/String"))


def trajectory(t: float, n: int) -> np.ndarray:
    """A smooth demonstration: joint j follows 0.3*sin(0.8 t + j); the last joint (gripper)
    opens and closes between 0 and 1 every 4 s."""
    q = 0.3 * np.sin(0.8 * t + np.arange(n, dtype=np.float64))
    q[-1] = 1.0 if (t % 4.0) < 2.0 else 0.0
    return q


def scene(t: float, width: int, height: int, seed: int = 0) -> np.ndarray:
    """A textured background with a square that moves during the first half of every 2 s."""
    rng = np.random.default_rng(seed)
    img = (rng.integers(40, 90, size=(height, width, 3))).astype(np.uint8)
    phase = t % 2.0
    x = int((min(phase, 1.0)) * (width - width // 4))
    y = height // 3
    img[y: y + height // 4, x: x + width // 4] = (230, 40, 40)
    return img


@dataclass
class SyntheticSpec:
    cameras: dict[str, str]  # camera name -> topic
    joint_topic: str
    joint_names: list[str]
    seconds: float = 4.0
    camera_hz: float = 15.0
    joint_hz: float = 50.0
    width: int = 64
    height: int = 48
    encoding: str = "rgb8"  # or bgr8, mono8, jpeg (CompressedImage), ...
    chunk_topic: str = ""
    chunk_model_id: str = ""
    chunk_horizon: int = 8
    chunk_dt: float = 1 / 15
    instruction_topic: str = ""
    instruction: str = "pick up the red block"
    start_ns: int = 1_700_000_000 * NS
    storage: str = "mcap"
    split_seconds: float = 60.0


def write_synthetic_bag(path, spec: SyntheticSpec, store=None) -> None:
    """Write the demonstration bag ``spec`` describes to ``path`` (streamed: any length)."""
    store = store if store is not None else make_typestore()
    compressed = spec.encoding in ("jpeg", "png")
    with BagWriter(path, spec.storage, store, split_seconds=spec.split_seconds) as w:
        for topic in spec.cameras.values():
            w.add_topic(topic, "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image")
        w.add_topic(spec.joint_topic, "sensor_msgs/msg/JointState")
        if spec.chunk_topic:
            w.add_topic(spec.chunk_topic, "molmoact2_msgs/msg/ActionChunk")
        if spec.instruction_topic:
            w.add_topic(spec.instruction_topic, "std_msgs/msg/String")
            w.write(spec.instruction_topic, spec.start_ns, string_cdr(store, spec.instruction))
        events: list[tuple[int, int, str]] = []
        n_j = int(spec.seconds * spec.joint_hz)
        n_c = int(spec.seconds * spec.camera_hz)
        events += [(spec.start_ns + int(i * NS / spec.joint_hz), 0, "j") for i in range(n_j)]
        events += [(spec.start_ns + int(i * NS / spec.camera_hz) + 1, 1, "c") for i in range(n_c)]
        if spec.chunk_topic:
            events += [(spec.start_ns + int(i * NS / spec.camera_hz) + 2, 2, "a") for i in range(n_c)]
        events.sort()
        seq = 0
        n = len(spec.joint_names)
        for ts, _, kind in events:
            t = (ts - spec.start_ns) / NS
            if kind == "j":
                w.write(spec.joint_topic, ts, joint_state_cdr(store, ts, spec.joint_names, trajectory(t, n)))
            elif kind == "c":
                for k, (cam, topic) in enumerate(spec.cameras.items()):
                    img = scene(t, spec.width, spec.height, seed=k)
                    data = (compressed_image_cdr(store, ts, img, spec.encoding) if compressed
                            else image_cdr(store, ts, img, spec.encoding, frame_id=cam))
                    w.write(topic, ts, data)
            else:
                seq += 1
                steps = np.stack([trajectory(t + k * spec.chunk_dt, n) for k in range(spec.chunk_horizon)])
                w.write(spec.chunk_topic, ts, action_chunk_cdr(store, ts, spec.joint_names, steps, spec.chunk_dt, seq, spec.chunk_model_id, 0.05))
