"""Camera sources: parsing, image folders and video files, reconnect with back-off."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2_policy.core import camera_sources as cs
from molmoact2_policy.core import image_codec


def test_source_specs_parse_from_embodiment_dicts_and_short_strings():
    s = cs.parse_source({"type": "opencv", "device": "/dev/video0", "fps": 30, "fourcc": "MJPG"}, "front")
    assert (s.type, s.target, s.options["fourcc"]) == ("device", "/dev/video0", "MJPG")
    assert cs.parse_source({"type": "topic", "topic": "/a", "compressed": True}).type == "compressed"
    assert cs.parse_source("folder:/data/x") == cs.SourceSpec("folder", "/data/x", {})
    o = cs.parse_overrides(["top=compressed:/cam/image_raw/compressed"], ["top", "left"])
    assert o["top"].is_topic and o["top"].type == "compressed"


def test_bad_source_specs_are_refused_with_the_camera_named():
    with pytest.raises(ValueError, match="camera 'top'.*'laser'"):
        cs.parse_source({"type": "laser"}, "top")
    with pytest.raises(ValueError, match="needs 'path'"):
        cs.parse_source({"type": "folder"}, "top")
    with pytest.raises(ValueError, match="unknown camera 'wrist'"):
        cs.parse_overrides(["wrist=folder:/x"], ["top"])
    with pytest.raises(ValueError, match="camera=type:target"):
        cs.parse_overrides(["top"], ["top"])


def _write_folder(tmp_path, n=3, shape=(12, 16)):
    frames = []
    for k in range(n):
        rgb = np.full((*shape, 3), 0, np.uint8)
        rgb[..., 0] = 10 * (k + 1)
        frames.append(rgb)
        (tmp_path / f"f{k:03d}.png").write_bytes(image_codec.encode_compressed(rgb, "png"))
    return frames


def test_image_folder_plays_frames_in_name_order_and_loops(tmp_path):
    frames = _write_folder(tmp_path)
    src = cs.ImageFolderSource(str(tmp_path), fps=0, loop=True)
    src.open()
    got = [src.read() for _ in range(4)]
    for g, f in zip(got, frames + frames[:1]):
        np.testing.assert_array_equal(g, f)


def test_image_folder_without_loop_ends_with_a_source_error(tmp_path):
    _write_folder(tmp_path, n=1)
    src = cs.ImageFolderSource(str(tmp_path), fps=0, loop=False)
    src.open()
    src.read()
    with pytest.raises(cs.SourceError, match="end of"):
        src.read()


def test_video_file_source_reads_rgb_frames(tmp_path):
    import cv2

    path = str(tmp_path / "v.avi")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (32, 24))
    for k in range(3):
        bgr = np.zeros((24, 32, 3), np.uint8)
        bgr[..., 2] = 200  # red in BGR
        w.write(bgr)
    w.release()
    src = cs.make_pull_source(cs.parse_source(f"video:{path}"))
    src.pacer = cs._Paced(0)
    src.open()
    f = src.read()
    assert f.shape == (24, 32, 3) and f[12, 16, 0] > 150 and f[12, 16, 2] < 60
    src.close()


def test_missing_device_is_a_source_error():
    src = cs.make_pull_source(cs.parse_source({"type": "device", "device": "/dev/video_does_not_exist"}))
    with pytest.raises(cs.SourceError, match="does not exist"):
        src.open()


class _Flaky(cs.PullSource):
    def __init__(self):
        self.up = False
        self.opens = 0

    def open(self):
        self.opens += 1
        if not self.up:
            raise cs.SourceError("unplugged")

    def read(self):
        if not self.up:
            raise cs.SourceError("unplugged")
        return np.zeros((2, 2, 3), np.uint8)


def test_disconnect_is_retried_with_growing_backoff_and_reported():
    msgs = []
    flaky = _Flaky()
    rs = cs.RetryingSource("top", flaky, msgs.append, initial_backoff=0.5, max_backoff=2.0)
    assert rs.poll(0.0) is None and "retrying in 0.5 s" in msgs[-1] and "unplugged" in msgs[-1]
    assert rs.poll(0.4) is None and flaky.opens == 1  # still backing off
    assert rs.poll(0.5) is None and "retrying in 1.0 s" in msgs[-1]
    rs.poll(1.5)
    rs.poll(3.5)
    assert "retrying in 2.0 s" in msgs[-1]  # capped
    flaky.up = True
    assert rs.poll(5.5) is not None and "connected after" in msgs[-1]
    flaky.up = False
    assert rs.poll(5.6) is None and "disconnected" in msgs[-1] and "retrying in 0.5 s" in msgs[-1]
    flaky.up = True
    assert rs.poll(6.1) is not None  # resumes without restart


class _Ticks:
    """A clock that advances by one second on every reading: which reading a stamp came from shows
    when (before or after decoding) the source took it."""

    def __init__(self):
        self.t = 100.0
        self.calls = 0

    def __call__(self):
        self.calls += 1
        self.t += 1.0
        return self.t


def test_folder_frames_are_stamped_when_read_not_after_decoding(tmp_path, monkeypatch):
    _write_folder(tmp_path, n=1)
    clock = _Ticks()
    src = cs.ImageFolderSource(str(tmp_path), fps=0, loop=True, clock=clock)
    src.open()
    decoded_at = []
    real_decode = cs.image_codec.decode_compressed
    monkeypatch.setattr(cs.image_codec, "decode_compressed", lambda *a: (decoded_at.append(clock()), real_decode(*a))[1])
    src.read()
    assert src.last_capture < decoded_at[0]


def test_video_frames_are_stamped_at_dequeue_before_the_decode(tmp_path):
    import cv2

    path = str(tmp_path / "v.avi")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (32, 24))
    for _ in range(3):
        w.write(np.full((24, 32, 3), 90, np.uint8))
    w.release()
    clock = _Ticks()
    src = cs.OpenCVSource(path, is_file=True, fps=0, clock=clock)
    src.open()
    src.pacer = cs._Paced(0)
    src.read()
    # one clock reading, taken between grab() and retrieve(); a file has no driver timestamp
    assert clock.calls == 1 and src.last_capture == clock.t and src.stamp_source == "dequeue"


def test_retrying_source_carries_the_capture_time_of_its_frame(tmp_path):
    _write_folder(tmp_path, n=2)
    clock = _Ticks()
    inner = cs.ImageFolderSource(str(tmp_path), fps=0, loop=True, clock=clock)
    r = cs.RetryingSource("front", inner, lambda m: None)
    assert r.poll(0.0) is not None
    assert r.last_capture == inner.last_capture == clock.t
