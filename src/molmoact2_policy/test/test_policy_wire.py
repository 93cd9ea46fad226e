"""The policy node's fast paths produce exactly what the slow paths did: ActionChunk bytes built
from a pre-encoded prefix, the rgb8 image view, and the cached name -> slot maps of PolicyIO."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message

from molmoact2_common.embodiment import load_embodiment
from molmoact2_msgs.msg import ActionChunk
from molmoact2_policy.core import image_codec
from molmoact2_policy.core.policy_io import PolicyIO, PolicyIOError
from molmoact2_policy.ros_conversions import ActionChunkSerializer, image_msg_to_rgb, rgb_to_image_msg


@pytest.mark.parametrize("names,model_id,horizon", [
    ([f"left_joint{i}" for i in range(7)] + [f"right_joint{i}" for i in range(7)], "tiny", 30),
    (["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"], "MolmoAct2-SO100_101", 15),
    (["a"], "", 1),
    (["j" * k for k in range(1, 9)], "x" * 13, 7),  # every string length modulo the CDR alignment
])
def test_serialized_action_chunk_reads_back_as_the_same_message(names, model_id, horizon):
    wire = ActionChunkSerializer(names, model_id)
    assert wire.matches_rmw()
    rng = np.random.default_rng(horizon)
    pos = rng.normal(size=(horizon, len(names)))
    for stamp in (0, 1, 1_764_000_000_123_456_789):
        args = (stamp, pos, 1 / 30, 2**40 + horizon, 0.0375)
        ours = wire.serialize(*args)
        msg = deserialize_message(ours, ActionChunk)
        assert msg == wire.message(*args)
        assert len(ours) == len(serialize_message(msg))
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == divmod(stamp, 10**9)
        assert list(msg.joint_names) == names and msg.model_id == model_id and msg.horizon == horizon
        np.testing.assert_array_equal(np.asarray(msg.positions).reshape(horizon, -1), pos)


def test_rgb8_fast_path_gives_the_generic_decoders_array_and_padded_rows_still_decode():
    rgb = np.random.default_rng(0).integers(0, 255, (36, 64, 3), dtype=np.uint8)
    msg = rgb_to_image_msg(rgb, 5)
    out = image_msg_to_rgb(msg)
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(out, image_codec.decode_raw(msg.encoding, msg.data, msg.height, msg.width, msg.step))
    padded = rgb_to_image_msg(rgb, 5)
    padded.step = 64 * 3 + 8
    padded.data = b"".join(bytes(row.tobytes()) + b"\0" * 8 for row in rgb)
    np.testing.assert_array_equal(image_msg_to_rgb(padded), rgb)  # not the fast path: rows padded
    bgr = rgb_to_image_msg(rgb, 5, encoding="bgr8")
    np.testing.assert_array_equal(image_msg_to_rgb(bgr), rgb)


def test_policy_io_follows_each_observations_own_joint_and_camera_order():
    io = PolicyIO(load_embodiment("yam_bimanual"))
    joints = list(io.state_joints)
    values = np.linspace(0.1, 0.9, len(joints))
    first = io.state_to_model(joints, values)
    rev = io.state_to_model(joints[::-1], values[::-1])  # another order: its own map, same state
    np.testing.assert_array_equal(first, rev)
    np.testing.assert_array_equal(io.state_to_model(joints, values), first)
    imgs = [np.full((2, 2, 3), i, np.uint8) for i in range(3)]
    for order in (["top", "left", "right"], ["right", "top", "left"]):
        got = io.order_images(order, [imgs[["top", "left", "right"].index(c)] for c in order])
        assert [int(g[0, 0, 0]) for g in got] == [0, 1, 2]
    with pytest.raises(PolicyIOError, match="lacks joint"):
        io.state_to_model(joints[1:], values[1:])
    with pytest.raises(PolicyIOError, match="no image for camera"):
        io.order_images(["top", "left"], imgs[:2])
