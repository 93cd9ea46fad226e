"""Camera sources the camera node pulls frames from, and their parsing from configuration.

ROS-free. Pull sources (an OpenCV/V4L2 device, a video file, an image folder) deliver RGB8
frames through ``read()``; ``RetryingSource`` wraps one with reconnect-and-back-off and says
what happened. Topic relays (raw or compressed image topics from realsense2_camera, usb_cam...)
are subscriptions, so the node handles them; here they are only parsed.

A source spec is a dict, as in the embodiment config's ``cameras[].source``::

    {type: device, device: 0 | /dev/video0, width: 640, height: 480, fps: 30, fourcc: MJPG}
    {type: topic, topic: /cameras/top/color/image_raw}            # sensor_msgs/Image
    {type: compressed, topic: /cameras/top/image_raw/compressed}  # sensor_msgs/CompressedImage
    {type: video, path: demo.mp4, loop: true, fps: 30}
    {type: folder, path: frames/, loop: true, fps: 30}            # *.png, *.jpg sorted by name

or the short form ``type:target`` used by the node's ``source_overrides`` parameter
(``top=folder:/data/frames``).

Capture time. Every pull source records, in ``last_capture`` (``time.monotonic()`` seconds), when
its newest frame was captured, and the node stamps the frame with that instant, not with the
time decoding finished: for a V4L2 device the driver's buffer timestamp (OpenCV's
``CAP_PROP_POS_MSEC`` on the V4L2 backend is the buffer's CLOCK_MONOTONIC time) when it is a
plausible capture time, else the moment the frame was dequeued (``grab()``), before the MJPG
decode (``retrieve()``); for files and folders the moment the bytes were read, before decoding.
This removes the decode time (a few ms for 640x480 MJPG) and, with the driver's timestamp, the
time the frame waited in the V4L2 queue (up to a frame period per queued buffer) from every
latency downstream.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import image_codec

SOURCE_TYPES = ("device", "topic", "compressed", "video", "folder")
_ALIASES = {"opencv": "device", "v4l2": "device", "usb": "device", "image_folder": "folder", "images": "folder",
            "video_file": "video", "file": "video", "image": "topic", "raw": "topic"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class SourceError(RuntimeError):
    """A source that cannot deliver: not found, disconnected, unreadable."""


@dataclass(frozen=True)
class SourceSpec:
    type: str
    target: str  # device index/path, topic name, file or folder path
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def is_topic(self) -> bool:
        return self.type in ("topic", "compressed")


def parse_source(spec: dict | str, camera: str = "") -> SourceSpec:
    """A source dict (embodiment config) or short string ``type:target`` -> ``SourceSpec``."""
    where = f"camera '{camera}': " if camera else ""
    if isinstance(spec, str):
        if ":" not in spec:
            raise ValueError(f"{where}source '{spec}' must be 'type:target' with type one of {', '.join(SOURCE_TYPES)}")
        kind, target = spec.split(":", 1)
        spec = {"type": kind.strip(), "target": target.strip()}
    spec = dict(spec)
    kind = str(spec.pop("type", ""))
    kind = _ALIASES.get(kind, kind)
    if kind not in SOURCE_TYPES:
        raise ValueError(f"{where}source type '{kind}' must be one of {', '.join(SOURCE_TYPES)}")
    key = {"device": "device", "topic": "topic", "compressed": "topic", "video": "path", "folder": "path"}[kind]
    target = spec.pop("target", None)
    if target is None:
        target = spec.pop(key, None)
    else:
        spec.pop(key, None)
    if target is None or str(target) == "":
        raise ValueError(f"{where}source of type '{kind}' needs '{key}'")
    if kind == "topic" and (spec.get("compressed") or spec.get("transport") == "compressed"):
        kind = "compressed"
    return SourceSpec(kind, str(target), spec)


def parse_overrides(entries: list[str], cameras: list[str]) -> dict[str, SourceSpec]:
    """``["top=folder:/data/top", ...]`` -> {camera: SourceSpec}."""
    out = {}
    for e in entries:
        if "=" not in e:
            raise ValueError(f"source override '{e}' must be 'camera=type:target'")
        cam, spec = e.split("=", 1)
        cam = cam.strip()
        if cam not in cameras:
            raise ValueError(f"source override names unknown camera '{cam}' (cameras: {', '.join(cameras)})")
        out[cam] = parse_source(spec, cam)
    return out


class PullSource:
    """A source read by polling: ``open()``, then ``read()`` -> RGB8 frame (blocks until one is
    due), ``close()``. ``read()`` raises ``SourceError`` when the source is gone; after it,
    ``last_capture`` is the frame's capture time on ``time.monotonic()``."""

    last_capture: float = 0.0

    def open(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def read(self) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class _Paced:
    def __init__(self, fps: float, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.period = 1.0 / float(fps) if fps and float(fps) > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self.next = None

    def wait(self) -> None:
        if not self.period:
            return
        now = self.clock()
        if self.next is None or now - self.next > self.period:
            self.next = now
        if self.next > now:
            self.sleep(self.next - now)
        self.next += self.period


class ImageFolderSource(PullSource):
    def __init__(self, path: str, fps: float = 30.0, loop: bool = True, clock: Callable[[], float] = time.monotonic):
        self.path, self.loop = Path(path), bool(loop)
        self.clock = clock
        self.pacer = _Paced(fps)
        self.files: list[Path] = []
        self.index = 0

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"image folder {self.path} does not exist")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"image folder {self.path} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        self.index = 0

    def read(self) -> np.ndarray:
        if self.index >= len(self.files):
            if not self.loop:
                raise SourceError(f"image folder {self.path}: end of the {len(self.files)} images")
            self.index = 0
        f = self.files[self.index]
        self.index += 1
        self.pacer.wait()
        try:
            data = f.read_bytes()
        except OSError as exc:
            raise SourceError(f"cannot read {f}: {exc}") from exc
        self.last_capture = self.clock()  # the frame exists now; decoding comes after
        fmt = "png" if f.suffix.lower() == ".png" else "jpeg"
        if f.suffix.lower() == ".bmp":
            return _imdecode_any(data, f)
        return image_codec.decode_compressed(fmt, data)


def _imdecode_any(data: bytes, f: Path) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(f"cannot decode {f}")
    return np.ascontiguousarray(img[..., ::-1])


class OpenCVSource(PullSource):
    """A V4L2/OpenCV device (index or /dev path) or a video file, through cv2.VideoCapture."""

    # a driver timestamp older than this is not a capture time of the frame just dequeued
    MAX_DRIVER_STAMP_AGE_S = 1.0

    def __init__(self, target: str, *, is_file: bool, width: int = 0, height: int = 0, fps: float = 0.0,
                 fourcc: str = "", loop: bool = True, clock: Callable[[], float] = time.monotonic):
        self.target, self.is_file = target, is_file
        self.clock = clock
        self.stamp_source = ""  # "driver" or "dequeue": which capture time the last frame got
        self.width, self.height, self.fps = int(width or 0), int(height or 0), float(fps or 0)
        self.fourcc, self.loop = str(fourcc or ""), bool(loop)
        self.cap = None
        self.pacer = _Paced(self.fps) if is_file else _Paced(0)

    def open(self) -> None:
        import cv2

        if self.is_file:
            if not os.path.isfile(self.target):
                raise SourceError(f"video file {self.target} does not exist")
            cap = cv2.VideoCapture(self.target)
            if not self.fps:
                self.pacer = _Paced(cap.get(cv2.CAP_PROP_FPS) or 30.0)
        else:
            dev: int | str = int(self.target) if self.target.isdigit() else self.target
            if isinstance(dev, str) and not os.path.exists(dev):
                raise SourceError(f"camera device {dev} does not exist")
            cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
            if self.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc[:4].ljust(4)))
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {'video file' if self.is_file else 'camera device'} {self.target}")
        self.cap = cap

    def read(self) -> np.ndarray:
        import cv2

        if self.cap is None:
            raise SourceError(f"{self.target} is not open")
        self.pacer.wait()
        ok = self.cap.grab()
        if not ok and self.is_file and self.loop:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok = self.cap.grab()
        dequeued = self.clock()
        self.last_capture, self.stamp_source = dequeued, "dequeue"
        if ok and not self.is_file:
            driver_s = float(self.cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0
            if 0.0 < dequeued - driver_s <= self.MAX_DRIVER_STAMP_AGE_S:
                self.last_capture, self.stamp_source = driver_s, "driver"
        frame = None
        if ok:
            ok, frame = self.cap.retrieve()  # the MJPG decode happens here, after the stamp
        if not ok or frame is None:
            raise SourceError(f"{'video file' if self.is_file else 'camera device'} {self.target}: no frame (disconnected or ended)")
        if frame.ndim == 2:
            return np.ascontiguousarray(np.repeat(frame[..., None], 3, axis=2))
        return np.ascontiguousarray(frame[..., 2::-1])

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def make_pull_source(spec: SourceSpec) -> PullSource:
    o = spec.options
    if spec.type == "folder":
        return ImageFolderSource(spec.target, fps=float(o.get("fps", 30.0)), loop=bool(o.get("loop", True)))
    if spec.type == "video":
        return OpenCVSource(spec.target, is_file=True, fps=float(o.get("fps", 0.0)), loop=bool(o.get("loop", True)))
    if spec.type == "device":
        return OpenCVSource(spec.target, is_file=False, width=int(o.get("width", 0)), height=int(o.get("height", 0)),
                            fps=float(o.get("fps", 0.0)), fourcc=str(o.get("fourcc", "MJPG")))
    raise ValueError(f"source type '{spec.type}' is a topic relay, not a pull source")


class RetryingSource:
    """Reconnects a pull source with exponential back-off and reports each transition.

    ``poll(now)`` returns a frame, or None when the source is down (waiting to retry).
    ``report`` is called with a message on every disconnect and reconnect.
    """

    def __init__(self, name: str, source: PullSource, report: Callable[[str], None],
                 initial_backoff: float = 0.5, max_backoff: float = 5.0):
        self.name, self.source, self.report = name, source, report
        self.initial_backoff, self.max_backoff = float(initial_backoff), float(max_backoff)
        self.backoff = self.initial_backoff
        self.connected = False
        self.retry_at = 0.0
        self.failures = 0
        self.frames = 0
        self.last_capture = 0.0  # time.monotonic() of the newest frame's capture

    def poll(self, now: float) -> np.ndarray | None:
        if not self.connected:
            if now < self.retry_at:
                return None
            try:
                self.source.open()
            except (SourceError, OSError, ValueError) as exc:
                self._down(now, f"camera '{self.name}' unavailable: {exc}")
                return None
            self.connected = True
            self.report(f"camera '{self.name}' connected" + (f" after {self.failures} failed attempts" if self.failures else ""))
            self.failures = 0
            self.backoff = self.initial_backoff
        try:
            frame = self.source.read()
        except (SourceError, OSError, image_codec.ImageCodecError) as exc:
            self.source.close()
            self.connected = False
            self._down(now, f"camera '{self.name}' disconnected: {exc}")
            return None
        self.frames += 1
        self.last_capture = getattr(self.source, "last_capture", 0.0) or time.monotonic()
        return frame

    def _down(self, now: float, msg: str) -> None:
        self.failures += 1
        self.retry_at = now + self.backoff
        self.report(f"{msg}; retrying in {self.backoff:.1f} s")
        self.backoff = min(self.max_backoff, self.backoff * 2)

    def close(self) -> None:
        self.source.close()
        self.connected = False
