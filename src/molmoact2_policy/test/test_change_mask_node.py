"""Masking node across processes: the reference is the observation the policy announced it is
consuming; masks of newer observations equal lerobot's own eq. (6) function, overlay published."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from molmoact2_common import qos
from molmoact2_msgs.msg import ChangeMask, Observation, PolicyStatus
from molmoact2_policy import ros_conversions as rc
from support.ros_harness import ChildProcess

lerobot_mask = pytest.importorskip(
    "lerobot.policies.molmoact2.molmoact2_hf_model.modeling_molmoact2"
)._compute_depth_update_mask

pytestmark = [pytest.mark.ros, pytest.mark.model]

NS = 1_000_000_000


def _obs(stamp_ns, frames):
    msg = Observation(header=Header(stamp=rc.ns_to_time(stamp_ns)))
    msg.camera_names = list(frames)
    msg.images = [rc.rgb_to_image_msg(f, stamp_ns + i, f"{c}_optical") for i, (c, f) in enumerate(frames.items())]
    msg.capture_stamps = [rc.ns_to_time(stamp_ns + i) for i in range(len(frames))]
    msg.camera_stale = [False] * len(frames)
    return msg


def _frames(k, rng, base):
    top = base.copy()
    top[: 20 * k, : 30 * k] = rng.integers(0, 256, (20 * k, 30 * k, 3), dtype=np.uint8)
    return {"top": top, "wrist": np.ascontiguousarray(base[::-1])}


def test_masking_node_masks_newer_observations_against_the_consumed_one_like_lerobot(ros):
    proc = ChildProcess.python_module("molmoact2_policy.nodes.masking_node", "--ros-args",
                                      "-p", "history:=8", "-p", "cameras:=['top', 'wrist']")
    try:
        node = ros.node("policy_standin")
        obs_pub = node.create_publisher(Observation, "observation", qos.OBSERVATION)
        status_pub = node.create_publisher(PolicyStatus, "policy_status", qos.POLICY_STATUS)
        masks: dict[tuple[str, int], ChangeMask] = {}
        overlays: list[Image] = []

        def keep(m):
            masks[(m.camera, rc.time_to_ns(m.header.stamp) // NS * NS)] = m

        subs = [node.create_subscription(ChangeMask, f"change_mask/{c}", keep, qos.CHANGE_MASK) for c in ("top", "wrist")]
        subs.append(node.create_subscription(Image, "change_mask/top/overlay", overlays.append, qos.VISUALISATION))
        assert ros.wait_for_subscribers(obs_pub, timeout=20), proc.output()
        for sub in subs:
            assert ros.wait_for_publishers(sub, timeout=20), proc.output()
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (90, 170, 3), dtype=np.uint8)  # non-square, odd size
        frames = [_frames(k, rng, base) for k in range(4)]
        stamps = [(10 + k) * NS for k in range(4)]

        def deliver(sequence, until):
            # observations are keep-last-1 (a slow consumer takes the newest): re-send the
            # sequence until the node has answered; re-sent stamps are idempotent
            for _ in range(50):
                for k in sequence:
                    obs_pub.publish(_obs(stamps[k], frames[k]))
                    ros.spin_until(lambda: False, 0.05)
                if ros.spin_until(until, 0.5):
                    return True
            return False

        # the policy starts consuming observation 0: observation 1's mask is against it
        status_pub.publish(PolicyStatus(state=PolicyStatus.STATE_RUNNING, consuming_stamp=rc.ns_to_time(stamps[0])))
        assert deliver([0, 1], lambda: ("top", stamps[1]) in masks), proc.output()
        assert deliver([2], lambda: ("top", stamps[2]) in masks), proc.output()  # masked on arrival
        # the policy now consumes observation 2: the reference moves
        status_pub.publish(PolicyStatus(state=PolicyStatus.STATE_RUNNING, consuming_stamp=rc.ns_to_time(stamps[2])))
        assert deliver([3], lambda: ("top", stamps[3]) in masks and rc.time_to_ns(masks[("top", stamps[3])].reference_stamp) == stamps[2]), proc.output()

        for cur, ref in [(1, 0), (2, 0), (3, 2)]:
            m = masks[("top", stamps[cur])]
            assert rc.time_to_ns(m.header.stamp) == stamps[cur]
            assert rc.time_to_ns(m.reference_stamp) == stamps[ref]
            assert (m.rows, m.cols) == (10, 10) and m.header.frame_id == "top_optical"
            want = lerobot_mask(frames[cur]["top"], frames[ref]["top"], num_depth_codes=100)
            np.testing.assert_array_equal(np.array(m.changed), want)
            assert np.array_equal(np.array(m.changed), np.array(m.similarity, np.float32) < 0.996)
            assert any(m.changed) and not all(m.changed)
        assert not any(masks[("wrist", stamps[1])].changed)  # the wrist image did not change
        assert ros.spin_until(lambda: len(overlays) >= 1, 10)
        assert (overlays[0].width, overlays[0].height, overlays[0].encoding) == (170, 90, "rgb8")
    finally:
        assert proc.stop() in (0, -2), proc.output()
