"""Camera frames in and Observations out as serialised bytes (CDR, little endian), for
``create_subscription(..., raw=True)`` and ``publish(bytes)``.

A 640x360 rgb8 frame taken as a message is copied twice on its way into Python (into the C
message, then into an ``array.array``), and an Observation of three of them is copied three
times before the middleware gets it (``tobytes``, the ``array.array`` setter, the conversion to
the C message) and once more when it is serialised. Here a frame is read in place from the bytes
the middleware hands over, and an Observation is one ``b"".join`` of its fields around the
frames' own buffers. The layout is the one rmw_fastrtps and rmw_cyclonedds write (XCDR1: a 4-byte
encapsulation header, then each field aligned to its size from the end of that header);
``image_codec_matches_rmw`` and ``observation_codec_matches_rmw`` compare both directions with the
middleware's own serialisation, and the camera node falls back to messages if they ever differ.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .core import image_codec
from .core.observation_sync import SyncedObservation

NS = 1_000_000_000
_ENCAPSULATION = b"\x00\x01\x00\x00"  # CDR little endian


class WireError(ValueError):
    """Bytes that are not the message they should be."""


@dataclass(frozen=True)
class RawImage:
    """A sensor_msgs/Image read in place: ``data`` is a view of the serialised bytes."""

    stamp_ns: int
    frame_id: str
    height: int
    width: int
    encoding: str
    is_bigendian: bool
    step: int
    data: np.ndarray  # uint8, a view

    def to_rgb(self) -> np.ndarray:
        return image_codec.decode_raw(self.encoding, self.data, self.height, self.width, self.step, self.is_bigendian)


def _read_string(buf: bytes, off: int) -> tuple[str, int]:
    off += (-off) % 4
    (n,) = struct.unpack_from("<I", buf, 4 + off)
    start = 4 + off + 4
    if n == 0 or start + n > len(buf):
        raise WireError("string runs past the message")
    return buf[start:start + n - 1].decode("utf-8"), off + 4 + n


def decode_image(buf: bytes) -> RawImage:
    """Serialised sensor_msgs/Image -> RawImage (no copy of the pixels)."""
    if len(buf) < 4 + 8 or buf[:2] != _ENCAPSULATION[:2]:
        raise WireError("not a little-endian CDR message")
    sec, nanosec = struct.unpack_from("<iI", buf, 4)
    off = 8  # offsets from the end of the encapsulation header
    frame_id, off = _read_string(buf, off)
    off += (-off) % 4
    height, width = struct.unpack_from("<II", buf, 4 + off)
    off += 8
    encoding, off = _read_string(buf, off)
    is_bigendian = buf[4 + off]
    off += 1
    off += (-off) % 4
    step, n = struct.unpack_from("<II", buf, 4 + off)
    off += 8
    if 4 + off + n > len(buf):
        raise WireError(f"image data of {n} bytes runs past the message ({len(buf)} bytes)")
    data = np.frombuffer(buf, np.uint8, count=n, offset=4 + off)
    return RawImage(sec * NS + nanosec, frame_id, int(height), int(width), encoding, bool(is_bigendian), int(step), data)


class _Writer:
    """Appends CDR fields, tracking the offset for alignment; big buffers are kept by reference."""

    def __init__(self) -> None:
        self.parts: list = [_ENCAPSULATION]
        self.off = 0

    def _pad(self, align: int) -> None:
        pad = (-self.off) % align
        if pad:
            self.parts.append(b"\0" * pad)
            self.off += pad

    def pack(self, align: int, fmt: str, *values) -> None:
        self._pad(align)
        raw = struct.pack("<" + fmt, *values)
        self.parts.append(raw)
        self.off += len(raw)

    def string(self, text: str) -> None:
        raw = text.encode("utf-8") + b"\0"
        self.pack(4, "I", len(raw))
        self.parts.append(raw)
        self.off += len(raw)

    def strings(self, items) -> None:
        self.pack(4, "I", len(items))
        for s in items:
            self.string(s)

    def stamp(self, ns: int) -> None:
        ns = int(ns)
        self.pack(4, "iI", ns // NS, ns % NS)

    def stamps(self, items) -> None:
        self.pack(4, "I", len(items))
        for ns in items:
            self.stamp(ns)

    def bools(self, items) -> None:
        self.pack(4, "I", len(items))
        self.parts.append(bytes(bool(b) for b in items))
        self.off += len(items)

    def doubles(self, values) -> None:
        arr = np.ascontiguousarray(values if values is not None else [], dtype="<f8").reshape(-1)
        self.pack(4, "I", arr.size)
        if arr.size:
            self._pad(8)
            self.parts.append(arr.tobytes())
            self.off += arr.nbytes

    def octets(self, data: memoryview) -> None:
        self.pack(4, "I", data.nbytes)
        self.parts.append(data)
        self.off += data.nbytes

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def encode_observation(obs: SyncedObservation) -> bytes:
    """A complete SyncedObservation -> the serialised molmoact2_msgs/Observation that
    ``ros_conversions.synced_to_observation_msg`` builds (images as rgb8)."""
    if not obs.complete:
        raise ValueError("observation is incomplete (a camera or joint source was never received): not sent")
    w = _Writer()
    w.stamp(obs.now_ns)
    w.string("")
    w.strings(list(obs.camera_names))
    w.pack(4, "I", len(obs.frames))
    for f in obs.frames:
        rgb = np.ascontiguousarray(image_codec.as_rgb8(f.image))
        w.stamp(f.stamp_ns)
        w.string(f.frame_id)
        w.pack(4, "II", rgb.shape[0], rgb.shape[1])
        w.string("rgb8")
        w.pack(1, "B", 0)
        w.pack(4, "I", rgb.shape[1] * 3)
        w.octets(memoryview(rgb).cast("B"))
    w.stamps([f.stamp_ns for f in obs.frames])
    w.bools([s.stale for s in obs.cameras])
    w.stamp(obs.joint_stamp_ns or 0)
    w.string("")
    w.strings(list(obs.joint_names))
    w.doubles(obs.joint_positions)
    w.doubles(obs.joint_velocities)
    w.doubles(obs.joint_efforts)
    w.strings([s.name for s in obs.joint_sources])
    w.stamps([s.stamp_ns or 0 for s in obs.joint_sources])
    w.bools([s.stale for s in obs.joint_sources])
    return w.bytes()


def image_codec_matches_rmw() -> bool:
    """True when ``decode_image`` reads the middleware's own serialisation of an Image right."""
    from rclpy.serialization import serialize_message

    from . import ros_conversions as rc

    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    msg = rc.rgb_to_image_msg(rgb, 1_234_567_891_011, "cam_optical_frame", encoding="bgr8")
    try:
        got = decode_image(serialize_message(msg))
    except WireError:
        return False
    return (got.stamp_ns, got.frame_id, got.height, got.width, got.encoding, got.step) == (
        1_234_567_891_011, "cam_optical_frame", 5, 7, "bgr8", 21) and np.array_equal(got.to_rgb(), rgb)


def observation_codec_matches_rmw() -> bool:
    """True when the middleware reads ``encode_observation``'s bytes back as the very message
    ``synced_to_observation_msg`` builds (odd sizes and names, so every alignment is exercised).
    Compared field by field, not byte by byte: rmw leaves its padding bytes as they were in memory
    and ends a message with a few bytes more."""
    from rclpy.serialization import deserialize_message

    from molmoact2_msgs.msg import Observation

    from . import ros_conversions as rc
    from .core.observation_sync import ObservationSynchronizer

    sync = ObservationSynchronizer(["a", "bb"], ["s"], camera_max_age=10.0)
    sync.add_frame("a", np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3), 1_000_000_001, "fa")
    sync.add_frame("bb", np.full((2, 3, 3), 7, np.uint8), 1_000_000_002, "")
    sync.add_joint_state("s", ["j1", "joint_two", "j3"], np.array([0.5, -1.25, 2.0]), 1_000_000_003,
                         np.array([0.1, 0.2, 0.3]), None)
    obs = sync.assemble(1_000_000_004)
    msg = rc.synced_to_observation_msg(obs)
    return deserialize_message(encode_observation(obs), Observation) == msg
