"""Frames read from and Observations written as the middleware's own bytes (molmoact2_policy.wire)."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from molmoact2_msgs.msg import Observation
from molmoact2_policy import ros_conversions as rc
from molmoact2_policy import wire
from molmoact2_policy.core.observation_sync import ObservationSynchronizer

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "rgba8", "yuv422"])
@pytest.mark.parametrize("frame_id", ["", "c", "top_camera_optical_frame"])
def test_a_frame_read_in_place_from_the_serialised_image_equals_the_message_path(encoding, frame_id):
    rng = np.random.default_rng(len(frame_id))
    rgb = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    msg = rc.rgb_to_image_msg(rgb, 3 * 10**9 + 17, frame_id, encoding=encoding)
    raw = wire.decode_image(serialize_message(msg))
    assert (raw.stamp_ns, raw.frame_id, raw.height, raw.width, raw.encoding, raw.step) == (
        3 * 10**9 + 17, frame_id, 6, 10, encoding, msg.step)
    np.testing.assert_array_equal(raw.to_rgb(), rc.image_msg_to_rgb(msg))


def test_a_truncated_image_is_refused_with_a_wire_error():
    buf = serialize_message(rc.rgb_to_image_msg(np.zeros((4, 4, 3), np.uint8), 1, "f"))
    with pytest.raises(wire.WireError, match="runs past"):
        wire.decode_image(buf[:-10])


def _observation(velocities, efforts, frame_ids, sizes):
    cams = [f"cam{i}" for i in range(len(sizes))]
    sync = ObservationSynchronizer(cams, ["left/joint_states", "right/joint_states"], camera_max_age=0.05)
    rng = np.random.default_rng(len(sizes))
    for i, (c, (h, w)) in enumerate(zip(cams, sizes)):
        sync.add_frame(c, rng.integers(0, 256, (h, w, 3), dtype=np.uint8), 10**9 + i, frame_ids[i % len(frame_ids)])
    for k, src in enumerate(("left/joint_states", "right/joint_states")):
        names = [f"{src[0]}_j{j}" for j in range(3 + k)]
        n = len(names)
        sync.add_joint_state(src, names, rng.normal(size=n), 10**9 + 100 * k,
                             rng.normal(size=n) if velocities else None, rng.normal(size=n) if efforts else None)
    return sync.assemble(10**9 + 70_000_000)  # the first camera is stale: flags set


@pytest.mark.parametrize("velocities,efforts", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("sizes", [[(360, 640)], [(3, 5), (2, 7), (1, 1)]])
def test_observation_bytes_are_read_back_as_the_message_synced_to_observation_msg_builds(velocities, efforts, sizes):
    obs = _observation(velocities, efforts, ["", "x", "optical_frame"], sizes)
    assert obs.stale and obs.complete
    msg = rc.synced_to_observation_msg(obs)
    assert deserialize_message(wire.encode_observation(obs), Observation) == msg


def test_the_self_checks_the_camera_node_runs_pass_on_this_middleware():
    assert wire.image_codec_matches_rmw()
    assert wire.observation_codec_matches_rmw()


def test_an_incomplete_observation_is_not_encoded():
    sync = ObservationSynchronizer(["a"], ["s"])
    with pytest.raises(ValueError, match="incomplete"):
        wire.encode_observation(sync.assemble(1))
