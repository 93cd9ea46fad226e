"""In a MolmoAct2-Think run (tiny Think checkpoint, the real lerobot code), the cells the policy
re-predicts (``DepthTokens.refreshed``) equal the masking node's ``ChangeMask`` of the same
observation."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.parameter import Parameter
from std_msgs.msg import String
from std_srvs.srv import Trigger

from molmoact2_common import qos
from molmoact2_msgs.msg import ChangeMask, DepthTokens, Observation
from molmoact2_policy import ros_conversions as rc
from support.ros_harness import ChildProcess

pytestmark = [pytest.mark.ros, pytest.mark.model]

JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def _obs(stamp_ns, front, wrist):
    msg = Observation()
    msg.header.stamp = rc.ns_to_time(stamp_ns)
    msg.camera_names = ["front", "wrist"]
    msg.images = [rc.rgb_to_image_msg(front, stamp_ns, "front_optical"), rc.rgb_to_image_msg(wrist, stamp_ns, "wrist_optical")]
    msg.capture_stamps = [rc.ns_to_time(stamp_ns)] * 2
    msg.camera_stale = [False, False]
    msg.joint_state.name = JOINTS
    msg.joint_state.position = [0.0] * 5 + [0.5]
    return msg


def test_refreshed_cells_of_a_think_run_equal_the_change_mask_of_the_same_observation(ros, tiny_think_checkpoint_dir):
    from molmoact2_policy.nodes.policy_node import PolicyNode

    masker = ChildProcess.python_module("molmoact2_policy.nodes.masking_node", "--ros-args", "-p", "cameras:=['front']")
    try:
        policy = PolicyNode(context=ros.context, parameter_overrides=[
            Parameter("checkpoint", value=str(tiny_think_checkpoint_dir)), Parameter("embodiment", value="so101"),
            Parameter("think", value=True), Parameter("adaptive_depth", value=True), Parameter("seed", value=0),
            Parameter("max_age_s", value=0.0), Parameter("num_threads", value=2), Parameter("instruction", value="stack the blocks"),
        ])
        ros.add(policy)
        node = ros.node("think_probe")
        masks: dict[int, ChangeMask] = {}
        tokens: dict[int, DepthTokens] = {}
        node.create_subscription(ChangeMask, "change_mask/front", lambda m: masks.__setitem__(rc.time_to_ns(m.header.stamp), m), qos.CHANGE_MASK)
        node.create_subscription(DepthTokens, "depth_tokens", lambda m: tokens.__setitem__(rc.time_to_ns(m.observation_stamp), m), qos.DEPTH_TOKENS)
        obs_pub = node.create_publisher(Observation, "observation", qos.OBSERVATION)
        policy.trigger_configure()
        policy.trigger_activate()
        assert ros.wait_for_subscribers(obs_pub, count=2, timeout=30), masker.output()

        rng = np.random.default_rng(5)
        front = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        wrist = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)

        # A reliable volatile reader drops samples of a writer it has not matched yet, even when the
        # writer already counts it: prime until the masking node has really received one, then
        # start a fresh episode (empty depth cache) for the sequence under test.
        primer = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        primed = {"n": 0}

        def masker_primed() -> bool:
            if "first observation received" in masker.output():
                return True
            primed["n"] += 1
            obs_pub.publish(_obs(primed["n"] * 1_000, primer, wrist))
            return False

        assert ros.spin_until(masker_primed, 30, step=0.2), masker.output()
        reset = node.create_client(Trigger, "policy/reset")
        assert ros.wait_for_service(reset, 10)
        assert ros.call(reset, Trigger.Request()).success
        stamps = [1_000_000_000 * (k + 1) for k in range(4)]
        frames = [front]
        for k in range(1, 4):  # each step changes a different region; the rest is unchanged
            f = frames[-1].copy()
            y, x = 20 * k, 30 * (k - 1)
            f[y:y + 25, x:x + 40] = rng.integers(0, 255, (25, 40, 3), dtype=np.uint8)
            frames.append(f)
        for k, f in enumerate(frames):
            obs_pub.publish(_obs(stamps[k], f, wrist))
            assert ros.spin_until(lambda: stamps[k] in tokens, 60), masker.output()
        for k in range(1, 4):  # the mask of observation k (against k-1) may follow its tokens
            assert ros.spin_until(lambda: stamps[k] in masks and rc.time_to_ns(masks[stamps[k]].reference_stamp) == stamps[k - 1], 10), (
                {s: rc.time_to_ns(m.reference_stamp) for s, m in masks.items()}, masker.output())

        assert all(tokens[stamps[0]].refreshed)  # first step: no cache, everything predicted
        for k in range(1, 4):
            m, t = masks[stamps[k]], tokens[stamps[k]]
            assert rc.time_to_ns(m.reference_stamp) == stamps[k - 1]
            assert (m.rows, m.cols) == (t.rows, t.cols) == (10, 10)
            assert list(t.refreshed) == list(m.changed), f"step {k}"
            assert any(m.changed) and not all(m.changed)
    finally:
        masker.stop()
