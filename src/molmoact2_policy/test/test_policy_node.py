"""The policy lifecycle node over real DDS with the tiny checkpoints."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from rclpy.parameter import Parameter

pytestmark = [pytest.mark.ros, pytest.mark.model]

SO101_JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def _obs_msg(node, cams, images, joints, positions, stamp_ns, stale=None, joint_sources=None):
    """joint_sources: (source, stamp_ns, stale) per arm driver, as the camera node fills them."""
    from molmoact2_msgs.msg import Observation
    from molmoact2_policy.ros_conversions import ns_to_time, rgb_to_image_msg

    msg = Observation()
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.camera_names = list(cams)
    msg.images = [rgb_to_image_msg(im, stamp_ns) for im in images]
    msg.capture_stamps = [ns_to_time(stamp_ns) for _ in cams]
    msg.camera_stale = list(stale or [False] * len(cams))
    msg.joint_state.name = list(joints)
    msg.joint_state.position = [float(x) for x in positions]
    for source, source_stamp, source_stale in joint_sources or []:
        msg.joint_sources.append(source)
        msg.joint_source_stamps.append(ns_to_time(source_stamp))
        msg.joint_source_stale.append(bool(source_stale))
    return msg


def _policy(ros, ckpt, **params):
    from molmoact2_policy.nodes.policy_node import PolicyNode

    overrides = [Parameter("checkpoint", value=str(ckpt)), Parameter("max_age_s", value=0.0),
                 Parameter("num_threads", value=2)]
    overrides += [Parameter(k, value=v) for k, v in params.items()]
    node = PolicyNode(context=ros.context, parameter_overrides=overrides)
    ros.add(node)
    return node


class Probe:
    def __init__(self, ros):
        from molmoact2_common import qos
        from molmoact2_msgs.msg import ActionChunk, DepthTokens, Observation, PolicyStatus
        from std_msgs.msg import String

        self.ros = ros
        self.node = ros.node("probe")
        self.chunks, self.depth, self.status = [], [], []
        self.node.create_subscription(ActionChunk, "action_chunk", self.chunks.append, qos.ACTION_CHUNK)
        self.node.create_subscription(DepthTokens, "depth_tokens", self.depth.append, qos.DEPTH_TOKENS)
        self.node.create_subscription(PolicyStatus, "policy_status", self.status.append, qos.POLICY_STATUS)
        self.obs_pub = self.node.create_publisher(Observation, "observation", qos.OBSERVATION)
        self.instr_pub = self.node.create_publisher(String, "instruction", qos.INSTRUCTION)

    def send(self, *args, **kwargs):
        assert self.ros.wait_for_subscribers(self.obs_pub, timeout=10)
        self.obs_pub.publish(_obs_msg(self.node, *args, **kwargs))

    def wait_chunks(self, n, timeout=30.0):
        return self.ros.spin_until(lambda: len(self.chunks) >= n, timeout)


def _so101_images(seed=0):
    rng = np.random.default_rng(seed)
    return {"front": rng.integers(0, 255, (96, 128, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)}


def test_policy_node_chunk_equals_direct_predict_action_by_name_and_units(ros, tiny_checkpoint_dir):
    """Parity: same inputs and seed -> the node's chunk equals predict_action (CPU), with cameras and
    joints arriving in another order and SO-101 model units (degrees, signs, offsets, gripper 0..100)."""
    import torch

    from molmoact2_policy.core.backends.hf import load_hf_model, load_processor

    node = _policy(ros, tiny_checkpoint_dir, embodiment="so101", seed=5, instruction="pick up the cube")
    probe = Probe(ros)
    node.trigger_configure()
    node.trigger_activate()
    imgs = _so101_images()
    wire = {"shoulder_pan": 0.1, "shoulder_lift": -0.4, "elbow_flex": 0.7, "wrist_flex": -0.2, "wrist_roll": 0.3, "gripper": 0.25}
    order = ["gripper", "wrist_roll", "elbow_flex", "shoulder_pan", "wrist_flex", "shoulder_lift"]
    probe.send(["wrist", "front"], [imgs["wrist"], imgs["front"]], order, [wire[j] for j in order], 1_700_000_000_123_000_000)
    assert probe.wait_chunks(1), "no ActionChunk"
    chunk = probe.chunks[0]

    # direct call, conversion written out by hand from the SO-101 config (deg, sign -1 / +90, +90, 0..100)
    deg = np.degrees
    state = np.array([deg(0.1), -deg(-0.4) + 90, deg(0.7) + 90, deg(-0.2), deg(0.3), 25.0], np.float32)
    model = load_hf_model(tiny_checkpoint_dir)
    out = model.predict_action(processor=load_processor(tiny_checkpoint_dir), images=[imgs["front"], imgs["wrist"]],
                               task="pick up the cube", state=state, norm_tag="so100_so101_molmoact2",
                               inference_action_mode="continuous", generator=torch.Generator().manual_seed(5),
                               enable_cuda_graph=False).actions[0].numpy().astype(np.float64)
    expected = out.copy()
    expected[:, [0, 3, 4]] = np.radians(out[:, [0, 3, 4]])
    expected[:, 1] = np.radians(-(out[:, 1] - 90))
    expected[:, 2] = np.radians(out[:, 2] - 90)
    expected[:, 5] = out[:, 5] / 100.0
    assert list(chunk.joint_names) == SO101_JOINTS
    assert chunk.horizon == 30 and abs(chunk.dt - 1 / 30) < 1e-12
    got = np.asarray(chunk.positions).reshape(chunk.horizon, len(chunk.joint_names))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert chunk.header.stamp.sec == 1_700_000_000 and chunk.header.stamp.nanosec == 123_000_000
    assert chunk.sequence == 1 and chunk.model_id == tiny_checkpoint_dir.name
    assert ros.spin_until(lambda: any(s.consuming_stamp.nanosec == 123_000_000 for s in probe.status), 5)


def test_policy_node_configure_fails_naming_the_missing_checkpoint_file(ros, tiny_checkpoint_dir, tmp_path):
    from lifecycle_msgs.msg import State

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint_dir, ckpt)
    (ckpt / "norm_stats.json").unlink()
    node = _policy(ros, ckpt, embodiment="so101")
    probe = Probe(ros)
    node.trigger_configure()
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    assert ros.spin_until(lambda: any("norm_stats.json" in s.message and s.state == s.STATE_ERROR for s in probe.status), 5)


def test_policy_node_refuses_a_checkpoint_tag_of_another_state_size(ros, tiny_checkpoint_dir):
    from lifecycle_msgs.msg import State

    node = _policy(ros, tiny_checkpoint_dir, embodiment="so101", norm_tag="yam_dual_molmoact2")
    probe = Probe(ros)
    node.trigger_configure()
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
    assert ros.spin_until(lambda: any("state size mismatch" in s.message and "6" in s.message and "14" in s.message
                                      for s in probe.status), 5)


def test_policy_node_think_publishes_depth_tokens_and_a_new_instruction_resets_the_depth_cache(ros, tiny_think_checkpoint_dir):
    from molmoact2_msgs.srv import SetInstruction

    node = _policy(ros, tiny_think_checkpoint_dir, embodiment="so101", think=True, seed=0)
    probe = Probe(ros)
    node.trigger_configure()
    node.trigger_activate()
    probe.instr_pub.publish(__import__("std_msgs.msg", fromlist=["String"]).String(data="stack the blocks"))
    imgs = _so101_images()
    joints = SO101_JOINTS
    pos = [0.0, 0.0, 0.0, 0.0, 0.0, 0.5]
    assert ros.spin_until(lambda: node.runtime.instruction == "stack the blocks", 10)
    probe.send(["front", "wrist"], [imgs["front"], imgs["wrist"]], joints, pos, 1_000)
    assert probe.wait_chunks(1)
    probe.send(["front", "wrist"], [imgs["front"], imgs["wrist"]], joints, pos, 2_000)
    assert probe.wait_chunks(2) and ros.spin_until(lambda: len(probe.depth) >= 2, 5)
    d0, d1 = probe.depth[0], probe.depth[1]
    assert (d0.rows, d0.cols, d0.num_codes, d0.camera) == (10, 10, 128, "front")
    assert all(d0.refreshed) and not any(d1.refreshed)
    assert bytes(d0.codes) == bytes(d1.codes)
    assert d1.observation_stamp.nanosec == 2_000
    client = probe.node.create_client(SetInstruction, "set_instruction")
    assert ros.wait_for_service(client)
    resp = ros.call(client, SetInstruction.Request(instruction="unstack the blocks"))
    assert resp.success
    probe.send(["front", "wrist"], [imgs["front"], imgs["wrist"]], joints, pos, 3_000)
    assert ros.spin_until(lambda: len(probe.depth) >= 3, 30)
    assert all(probe.depth[2].refreshed)  # new episode: nothing replayed from the previous one


def test_policy_node_stale_observation_is_refused_and_deactivate_stops_publishing(ros, tiny_checkpoint_dir):
    node = _policy(ros, tiny_checkpoint_dir, embodiment="so101", instruction="wave")
    probe = Probe(ros)
    node.trigger_configure()
    node.trigger_activate()
    imgs = _so101_images()
    pos = [0.0] * 5 + [0.5]
    probe.send(["front", "wrist"], [imgs["front"], imgs["wrist"]], SO101_JOINTS, pos, 1_000, stale=[False, True])
    assert ros.spin_until(lambda: node._refusals >= 1, 10)
    probe.send(["front", "wrist"], [imgs["front"], imgs["wrist"]], SO101_JOINTS, pos, 2_000)
    assert probe.wait_chunks(1)
    assert probe.chunks[0].header.stamp.nanosec == 2_000  # the stale one was never used
    node.trigger_deactivate()
    n = len(probe.chunks)
    probe.send(["front", "wrist"], [imgs["front"], imgs["wrist"]], SO101_JOINTS, pos, 3_000)
    ros.spin_until(lambda: False, 1.0)
    assert len(probe.chunks) == n
    assert ros.spin_until(lambda: probe.status[-1].state == probe.status[-1].STATE_PAUSED, 5), \
        [(s.state, s.message) for s in probe.status[-5:]]


def test_policy_node_refuses_an_observation_whose_joint_state_is_stale(ros, tiny_checkpoint_dir):
    """The per-arm joint-state stamps and stale flags of the Observation reach the runtime: a stale or
    too old joint state is refused (the arm keeps holding), a fresh one is used."""
    node = _policy(ros, tiny_checkpoint_dir, embodiment="so101", instruction="wave", warmup=False,
                   joint_state_max_age_s=0.5)
    probe = Probe(ros)
    node.trigger_configure()
    node.trigger_activate()
    imgs = _so101_images()
    pos = [0.0] * 5 + [0.5]
    now = lambda: node.get_clock().now().nanoseconds  # noqa: E731
    cams = (["front", "wrist"], [imgs["front"], imgs["wrist"]], SO101_JOINTS, pos)
    probe.send(*cams, 1_000, joint_sources=[("joint_states", now(), True)])  # flagged stale by the camera node
    assert ros.spin_until(lambda: node._refusals >= 1, 10)
    probe.send(*cams, 2_000, joint_sources=[("joint_states", now() - 3_000_000_000, False)])  # 3 s old
    assert ros.spin_until(lambda: node._refusals >= 2, 10)
    probe.send(*cams, 3_000, joint_sources=[("joint_states", now(), False)])
    assert probe.wait_chunks(1)
    assert [c.header.stamp.nanosec for c in probe.chunks] == [3_000]  # neither stale one was used


def test_inactive_policy_node_cannot_publish_chunks(ros, tiny_checkpoint_dir):
    """action_chunk is a lifecycle publisher: whatever calls it while the node is inactive (an
    inference finishing as the node deactivates), nothing goes out."""
    from molmoact2_policy.core.policy_runtime import ChunkOutput

    node = _policy(ros, tiny_checkpoint_dir, embodiment="so101", warmup=False)
    probe = Probe(ros)
    node.trigger_configure()

    def chunk(seq):
        node._publish_chunk(ChunkOutput(stamp_ns=seq, joint_names=list(SO101_JOINTS), positions=np.zeros((2, 6)),
                                        dt=1 / 30, sequence=seq, latency_s=0.0))

    assert ros.wait_for_subscribers(node.chunk_pub, timeout=10)
    chunk(1)  # inactive (configured): not published
    node.trigger_activate()
    chunk(2)
    assert probe.wait_chunks(1)
    node.trigger_deactivate()
    chunk(3)  # deactivated: not published
    node.trigger_activate()
    chunk(4)
    assert probe.wait_chunks(2)
    assert [c.sequence for c in probe.chunks] == [2, 4]  # reliable, in order: 1 and 3 never went out
    node.trigger_deactivate()
    assert not node.chunk_pub.is_activated and not node.depth_pub.is_activated


def test_policy_node_runs_as_its_own_process(ros, tiny_checkpoint_dir):
    from support.ros_harness import ChildProcess

    child = ChildProcess.python_module(
        "molmoact2_policy.nodes.policy_node", "--ros-args", "-p", "embodiment:=so101",
        "-p", f"checkpoint:={tiny_checkpoint_dir}", "-p", "autostart:=activate", "-p", "instruction:=wave",
        "-p", "max_age_s:=0.0", "-p", "num_threads:=1")
    try:
        probe = Probe(ros)
        assert ros.spin_until(lambda: any(s.state == s.STATE_RUNNING for s in probe.status), 60), child.output()
        imgs = _so101_images()
        probe.send(["front", "wrist"], [imgs["front"], imgs["wrist"]], SO101_JOINTS, [0.0] * 5 + [0.5], 5_000)
        assert probe.wait_chunks(1, 60), child.output()
        assert probe.chunks[0].horizon == 30
    finally:
        child.stop()
