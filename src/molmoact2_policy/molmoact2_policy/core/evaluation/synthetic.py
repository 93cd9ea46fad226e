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
    file_order: str = "time"  # see write_synthetic_bag
    joint_gap: tuple[float, float] | None = None  # (from, to) seconds after the start without joint states


FILE_ORDERS = ("time", "per_topic_blocks", "reversed", "interleaved_chunks")


def write_synthetic_bag(path, spec: SyntheticSpec, store=None) -> None:
    """Write the demonstration bag ``spec`` describes to ``path`` (streamed: any length).

    ``spec.file_order`` chooses the order the messages are written to the storage file (their
    timestamps are the same in every order; a valid rosbag2 may hold them in any file order):
    ``time``; ``per_topic_blocks`` (every message of one topic, then the next topic's, as a
    recorder that flushes per topic writes them); ``reversed`` (newest first);
    ``interleaved_chunks`` (0.25 s blocks of the timeline written in a shuffled order, each block
    its own mcap chunk / sqlite3 transaction). Every order but ``time`` holds the whole event
    list in memory (tests only).
    """
    if spec.file_order not in FILE_ORDERS:
        raise ValueError(f"file_order '{spec.file_order}' is not one of {', '.join(FILE_ORDERS)}")
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
        # (timestamp, tie order, topic, what); the instruction first
        events: list[tuple[int, int, str, str]] = []
        if spec.instruction_topic:
            events.append((spec.start_ns, -1, spec.instruction_topic, "i"))
        n_j = int(spec.seconds * spec.joint_hz)
        n_c = int(spec.seconds * spec.camera_hz)
        gap = [spec.start_ns + int(s * NS) for s in spec.joint_gap] if spec.joint_gap else None
        events += [(ts, 0, spec.joint_topic, "j") for ts in (spec.start_ns + int(i * NS / spec.joint_hz) for i in range(n_j))
                   if gap is None or not gap[0] <= ts < gap[1]]
        for k, topic in enumerate(spec.cameras.values()):
            events += [(spec.start_ns + int(i * NS / spec.camera_hz) + 1, 1 + k, topic, "c") for i in range(n_c)]
        if spec.chunk_topic:
            events += [(spec.start_ns + int(i * NS / spec.camera_hz) + 2, 1 + len(spec.cameras), spec.chunk_topic, "a")
                       for i in range(n_c)]
        events.sort()
        blocks = _file_order(events, spec)
        cam_index = {topic: k for k, topic in enumerate(spec.cameras.values())}
        cam_name = {topic: cam for cam, topic in spec.cameras.items()}
        seq = {ts: i + 1 for i, ts in enumerate(sorted(e[0] for e in events if e[3] == "a"))}
        n = len(spec.joint_names)
        for block in blocks:
            for ts, _, topic, kind in block:
                t = (ts - spec.start_ns) / NS
                if kind == "i":
                    w.write(topic, ts, string_cdr(store, spec.instruction))
                elif kind == "j":
                    w.write(topic, ts, joint_state_cdr(store, ts, spec.joint_names, trajectory(t, n)))
                elif kind == "c":
                    img = scene(t, spec.width, spec.height, seed=cam_index[topic])
                    data = (compressed_image_cdr(store, ts, img, spec.encoding) if compressed
                            else image_cdr(store, ts, img, spec.encoding, frame_id=cam_name[topic]))
                    w.write(topic, ts, data)
                else:
                    steps = np.stack([trajectory(t + k * spec.chunk_dt, n) for k in range(spec.chunk_horizon)])
                    w.write(topic, ts, action_chunk_cdr(store, ts, spec.joint_names, steps, spec.chunk_dt, seq[ts],
                                                        spec.chunk_model_id, 0.05))
            if len(blocks) > 1:
                w.flush()  # each block its own mcap chunk / sqlite3 commit


def _file_order(events: list, spec: SyntheticSpec) -> list[list]:
    if spec.file_order == "time":
        return [events]
    if spec.file_order == "reversed":
        return [events[::-1]]
    if spec.file_order == "per_topic_blocks":
        topics = list(dict.fromkeys(e[2] for e in events))
        return [[e for e in events if e[2] == topic] for topic in topics]
    block_ns = NS // 4
    by_block: dict[int, list] = {}
    for e in events:
        by_block.setdefault((e[0] - spec.start_ns) // block_ns, []).append(e)
    keys = sorted(by_block)
    order = list(np.random.default_rng(1234).permutation(len(keys)))
    if order == sorted(order):
        order = order[::-1]
    return [by_block[keys[i]] for i in order]
