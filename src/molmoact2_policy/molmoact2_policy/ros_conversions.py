"""The one place where ROS messages and NumPy arrays meet on the policy side.

``sensor_msgs/Image`` / ``CompressedImage`` <-> ``(H, W, 3)`` uint8 RGB (through
``core.image_codec``), ``builtin_interfaces/Time`` <-> integer nanoseconds, ``JointState`` ->
arrays, and ``SyncedObservation`` <-> ``molmoact2_msgs/Observation``. Nodes, the policy and the
bag-replay evaluation call these functions; none of them converts messages by hand.

cv_bridge is not used: PyPI ROS 2 ships none, and apt's is compiled against NumPy 1.x, which
cannot load beside the model's NumPy 2 (see the README's supported layouts).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Header

from molmoact2_msgs.msg import Observation

from .core import image_codec
from .core.observation_sync import SyncedObservation

NS = 1_000_000_000


def time_to_ns(t: Time) -> int:
    return int(t.sec) * NS + int(t.nanosec)


def ns_to_time(ns: int) -> Time:
    ns = int(ns)
    return Time(sec=ns // NS, nanosec=ns % NS)


def image_msg_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (any encoding ``image_codec`` converts) -> (H, W, 3) uint8 RGB.
    Raises ``image_codec.ImageCodecError`` / ``UnsupportedEncoding`` with a clear message."""
    h, w = msg.height, msg.width
    data = msg.data
    # the camera node's own layout (tightly packed rgb8): a view of the message's buffer, the same
    # array decode_raw returns, without its generic checks (on the policy's observation path)
    if msg.encoding == "rgb8" and msg.step in (0, w * 3) and h > 0 and w > 0 and len(data) == h * w * 3:
        return np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)
    return image_codec.decode_raw(msg.encoding, data, h, w, msg.step, bool(msg.is_bigendian))


def rgb_to_image_msg(rgb: np.ndarray, stamp_ns: int = 0, frame_id: str = "", encoding: str = "rgb8") -> Image:
    rgb = image_codec.as_rgb8(rgb)
    data, step = image_codec.encode_raw(rgb, encoding)
    msg = Image()
    msg.header = Header(stamp=ns_to_time(stamp_ns), frame_id=frame_id)
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = step
    msg.data = data
    return msg


def compressed_msg_to_rgb(msg: CompressedImage) -> np.ndarray:
    return image_codec.decode_compressed(msg.format, msg.data)


def rgb_to_compressed_msg(rgb: np.ndarray, stamp_ns: int = 0, frame_id: str = "", fmt: str = "jpeg", quality: int = 90) -> CompressedImage:
    msg = CompressedImage()
    msg.header = Header(stamp=ns_to_time(stamp_ns), frame_id=frame_id)
    msg.format = fmt
    msg.data = image_codec.encode_compressed(rgb, fmt, quality)
    return msg


@dataclass(frozen=True)
class JointStateArrays:
    names: list[str]
    positions: np.ndarray
    velocities: np.ndarray | None
    efforts: np.ndarray | None
    stamp_ns: int


def joint_state_to_arrays(msg: JointState) -> JointStateArrays:
    return JointStateArrays(
        names=list(msg.name),
        positions=np.asarray(msg.position, dtype=np.float64),
        velocities=np.asarray(msg.velocity, dtype=np.float64) if len(msg.velocity) else None,
        efforts=np.asarray(msg.effort, dtype=np.float64) if len(msg.effort) else None,
        stamp_ns=time_to_ns(msg.header.stamp),
    )


def synced_to_observation_msg(obs: SyncedObservation) -> Observation:
    """A complete ``SyncedObservation`` -> ``molmoact2_msgs/Observation`` (images as rgb8)."""
    if not obs.complete:
        raise ValueError("observation is incomplete (a camera or joint source was never received): not sent")
    msg = Observation()
    msg.header = Header(stamp=ns_to_time(obs.now_ns), frame_id="")
    msg.camera_names = list(obs.camera_names)
    msg.images = [rgb_to_image_msg(f.image, f.stamp_ns, f.frame_id) for f in obs.frames]
    msg.capture_stamps = [ns_to_time(f.stamp_ns) for f in obs.frames]
    msg.camera_stale = [bool(s.stale) for s in obs.cameras]
    js = JointState()
    js.header = Header(stamp=ns_to_time(obs.joint_stamp_ns or 0), frame_id="")
    js.name = list(obs.joint_names)
    js.position = [float(x) for x in obs.joint_positions]
    if obs.joint_velocities is not None:
        js.velocity = [float(x) for x in obs.joint_velocities]
    if obs.joint_efforts is not None:
        js.effort = [float(x) for x in obs.joint_efforts]
    msg.joint_state = js
    msg.joint_sources = [s.name for s in obs.joint_sources]
    msg.joint_source_stamps = [ns_to_time(s.stamp_ns or 0) for s in obs.joint_sources]
    msg.joint_source_stale = [bool(s.stale) for s in obs.joint_sources]
    return msg


@dataclass(frozen=True)
class ObservationArrays:
    stamp_ns: int
    camera_names: list[str]
    images: list[np.ndarray]
    capture_stamps_ns: list[int]
    camera_stale: list[bool]
    joints: JointStateArrays
    joint_sources: list[str]
    joint_source_stamps_ns: list[int]
    joint_source_stale: list[bool]

    @property
    def stale(self) -> bool:
        return any(self.camera_stale) or any(self.joint_source_stale)

    def image(self, camera: str) -> np.ndarray:
        return self.images[self.camera_names.index(camera)]


def observation_msg_to_arrays(msg: Observation) -> ObservationArrays:
    """``molmoact2_msgs/Observation`` -> arrays; images decoded whatever their encoding."""
    if len(msg.images) != len(msg.camera_names):
        raise ValueError(f"Observation has {len(msg.images)} images for {len(msg.camera_names)} cameras")
    return ObservationArrays(
        stamp_ns=time_to_ns(msg.header.stamp),
        camera_names=list(msg.camera_names),
        images=[image_msg_to_rgb(im) for im in msg.images],
        capture_stamps_ns=[time_to_ns(t) for t in msg.capture_stamps],
        camera_stale=[bool(x) for x in msg.camera_stale],
        joints=joint_state_to_arrays(msg.joint_state),
        joint_sources=list(msg.joint_sources),
        joint_source_stamps_ns=[time_to_ns(t) for t in msg.joint_source_stamps],
        joint_source_stale=[bool(x) for x in msg.joint_source_stale],
    )


def _cdr_pad(offset: int, alignment: int) -> bytes:
    return b"\0" * ((-offset) % alignment)


def _cdr_string(text: str, offset: int) -> bytes:
    raw = text.encode("utf-8") + b"\0"
    return _cdr_pad(offset, 4) + struct.pack("<I", len(raw)) + raw


class ActionChunkSerializer:
    """``ActionChunk`` straight to its serialized (CDR, little endian) bytes, for ``publish(bytes)``.

    The joint names and the model id are the same in every chunk of a node, so the bytes they take
    are encoded once; a chunk then costs a few ``struct.pack`` calls and one ``tobytes`` of the
    positions, instead of building a message whose setters check every element and whose fields
    rclpy converts one by one (measured: ~0.2 ms per YAM chunk before). ``matches_rmw()`` checks the
    bytes against the middleware's own serialisation of the same message; the node falls back to
    publishing the message if they ever differ (another RMW).
    """

    def __init__(self, joint_names: Sequence[str], model_id: str) -> None:
        self.joint_names = [str(n) for n in joint_names]
        self.model_id = str(model_id)
        body = bytearray(_cdr_string("", 8))  # header.frame_id, after the 8-byte stamp
        body += _cdr_pad(8 + len(body), 4) + struct.pack("<I", len(self.joint_names))
        for name in self.joint_names:
            body += _cdr_string(name, 8 + len(body))
        body += _cdr_pad(8 + len(body), 4)
        self._names = bytes(body)  # up to the horizon field
        off = 8 + len(body) + 4  # after horizon
        self._dt_pad = _cdr_pad(off, 8)
        off += len(self._dt_pad) + 8 + 4  # dt, positions count
        self._data_pad = _cdr_pad(off, 8)
        # the positions end 8-aligned, so the sequence and what follows sit at fixed alignments
        tail = _cdr_string(self.model_id, 8)
        self._model = tail + _cdr_pad(8 + len(tail), 8)

    def serialize(self, stamp_ns: int, positions: np.ndarray, dt: float, sequence: int, latency_s: float) -> bytes:
        pos = np.ascontiguousarray(positions, dtype=np.float64)
        horizon = int(pos.shape[0])
        stamp_ns = int(stamp_ns)
        return b"".join((
            b"\x00\x01\x00\x00",  # CDR little endian encapsulation
            struct.pack("<iI", stamp_ns // NS, stamp_ns % NS), self._names, struct.pack("<I", horizon),
            self._dt_pad, struct.pack("<dI", float(dt), pos.size), self._data_pad, pos.tobytes(),
            struct.pack("<Q", int(sequence)), self._model, struct.pack("<d", float(latency_s))))

    def message(self, stamp_ns: int, positions: np.ndarray, dt: float, sequence: int, latency_s: float):
        """The same chunk as a message (the fallback, and what ``matches_rmw`` compares)."""
        import array

        from molmoact2_msgs.msg import ActionChunk

        pos = np.ascontiguousarray(positions, dtype=np.float64)
        msg = ActionChunk()
        msg.header.stamp = ns_to_time(stamp_ns)
        msg.joint_names = self.joint_names
        msg.horizon = int(pos.shape[0])
        msg.dt = float(dt)
        # array.array skips the generated setter's per-element checks (the chunk is already finite)
        msg.positions = array.array("d", pos.tobytes())
        msg.sequence = int(sequence)
        msg.model_id = self.model_id
        msg.inference_latency = float(latency_s)
        return msg

    def matches_rmw(self) -> bool:
        """True when the middleware reads these bytes back as the same chunk, and its own
        serialisation of that chunk has the same length (its padding bytes are not zeroed, so the
        bytes themselves are not compared)."""
        from molmoact2_msgs.msg import ActionChunk
        from rclpy.serialization import deserialize_message, serialize_message

        probe = np.arange(3 * max(1, len(self.joint_names)), dtype=np.float64).reshape(3, -1) * 0.25
        args = (1_234_567_891_011, probe, 1 / 30, 5, 0.0421)
        ours, msg = self.serialize(*args), self.message(*args)
        try:
            return len(serialize_message(msg)) == len(ours) and deserialize_message(ours, ActionChunk) == msg
        except Exception:  # noqa: BLE001 - an RMW that cannot read them: publish messages instead
            return False
