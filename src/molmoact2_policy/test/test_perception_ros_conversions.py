"""ros_conversions: the only message <-> array code; Image, CompressedImage, Time, Observation."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2_policy import ros_conversions as rc
from molmoact2_policy.core.image_codec import UnsupportedEncoding
from molmoact2_policy.core.observation_sync import NS, ObservationSynchronizer


def test_time_round_trips_through_nanoseconds():
    t = rc.ns_to_time(12 * NS + 345)
    assert (t.sec, t.nanosec) == (12, 345)
    assert rc.time_to_ns(t) == 12 * NS + 345


@pytest.mark.parametrize("enc", ["rgb8", "bgr8", "mono8", "yuv422"])
def test_image_message_converts_to_rgb8_array(enc):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    if enc == "mono8":
        rgb[...] = rgb[..., :1]
    msg = rc.rgb_to_image_msg(rgb, 5 * NS, "cam", encoding=enc)
    assert msg.encoding == enc and msg.header.frame_id == "cam" and msg.width == 8
    out = rc.image_msg_to_rgb(msg)
    assert out.shape == (6, 8, 3)
    if enc != "yuv422":
        np.testing.assert_array_equal(out, rgb)


def test_unsupported_image_message_raises_a_clear_error():
    msg = rc.rgb_to_image_msg(np.zeros((2, 2, 3), np.uint8))
    msg.encoding = "32FC1"
    with pytest.raises(UnsupportedEncoding, match="32FC1"):
        rc.image_msg_to_rgb(msg)


def test_compressed_message_round_trip():
    rgb = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    msg = rc.rgb_to_compressed_msg(rgb, NS, "cam", fmt="png")
    np.testing.assert_array_equal(rc.compressed_msg_to_rgb(msg), rgb)


def test_synced_observation_round_trips_through_the_observation_message():
    s = ObservationSynchronizer(["top", "wrist"], ["arm"], ["j1", "g"], camera_max_age=0.1, camera_max_skew=0.05)
    s.add_frame("wrist", np.full((4, 6, 3), 2, np.uint8), 10 * NS + 7, "wrist_optical")
    s.add_frame("top", np.full((4, 6, 3), 1, np.uint8), 10 * NS - 90_000_000, "top_optical")
    s.add_joint_state("arm", ["g", "j1"], [0.5, 1.5], 10 * NS, velocities=[0, 1])
    o = s.assemble(10 * NS + 1000)
    msg = rc.synced_to_observation_msg(o)
    assert list(msg.camera_stale) == [True, False]  # top is 90 ms behind wrist > 50 ms skew
    back = rc.observation_msg_to_arrays(msg)
    assert back.camera_names == ["top", "wrist"]
    assert back.capture_stamps_ns == [10 * NS - 90_000_000, 10 * NS + 7]
    assert int(back.image("wrist")[0, 0, 0]) == 2
    assert back.joints.names == ["j1", "g"] and list(back.joints.positions) == [1.5, 0.5]
    assert back.joints.stamp_ns == 10 * NS and back.stale
    assert msg.images[0].header.frame_id == "top_optical"


def test_incomplete_observation_is_not_converted():
    s = ObservationSynchronizer(["top"], ["arm"])
    s.add_frame("top", np.zeros((2, 2, 3), np.uint8), NS)
    with pytest.raises(ValueError, match="incomplete"):
        rc.synced_to_observation_msg(s.assemble(NS))
