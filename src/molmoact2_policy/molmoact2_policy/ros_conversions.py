"""The one place where ROS messages and NumPy arrays meet on the policy side.

``sensor_msgs/Image`` / ``CompressedImage`` <-> ``(H, W, 3)`` uint8 RGB (through
``core.image_codec``), ``builtin_interfaces/Time`` <-> integer nanoseconds, ``JointState`` ->
arrays, and ``SyncedObservation`` <-> ``molmoact2_msgs/Observation``. Nodes, the policy and the
bag-replay evaluation call these functions; none of them converts messages by hand.

cv_bridge is not used: PyPI ROS 2 ships none, and apt's is compiled against NumPy 1.x, which
cannot load beside the model's NumPy 2 (see the README's supported layouts).
"""

from __future__ import annotations

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
    return image_codec.decode_raw(msg.encoding, msg.data, msg.height, msg.width, msg.step, bool(msg.is_bigendian))


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
