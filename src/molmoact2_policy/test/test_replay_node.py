"""The replay publisher over real DDS: every message in order, original timing scaled by the
rate factor, /clock carrying the bag's time; a topic the bag lacks is refused with a list."""

from __future__ import annotations

import time

import pytest
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from support.ros_harness import ChildProcess

from molmoact2_common import qos
from molmoact2_policy.core.evaluation import synthetic

pytestmark = pytest.mark.ros
MOD = "molmoact2_policy.nodes.replay_node"
NS = 1_000_000_000


@pytest.fixture
def demo_bag(tmp_path):
    spec = synthetic.SyntheticSpec(cameras={"top": "/rp/top/image_raw"}, joint_topic="/rp/joint_states",
                                   joint_names=["j1", "j2", "gripper"], seconds=1.0, camera_hz=10, joint_hz=20)
    synthetic.write_synthetic_bag(tmp_path / "demo", spec)
    return tmp_path / "demo", spec


def test_replay_publishes_every_message_with_original_timing_scaled_and_clock(ros, demo_bag):
    bag, spec = demo_bag
    node = ros.node("replay_sink")
    joints, images, clocks = [], [], []
    node.create_subscription(JointState, "/rp/joint_states", lambda m: joints.append((time.monotonic(), m)), qos.JOINT_STATE)
    node.create_subscription(Image, "/rp/top/image_raw", images.append, qos.CAMERA_IMAGE)
    node.create_subscription(Clock, "/clock", lambda m: clocks.append(m.clock.sec * NS + m.clock.nanosec), qos.CLOCK)
    rate = 2.0
    child = ChildProcess.python_module(MOD, "--ros-args", "-p", f"bag_path:={bag}", "-p", f"rate:={rate}",
                                       "-p", "wait_for_subscribers:=1", "-p", "start_delay:=0.3")
    try:
        assert ros.spin_until(lambda: len(joints) == 20 and len(images) == 10, 20.0), child.output()
        assert ros.spin_until(lambda: child.proc.poll() is not None, 10.0), "replay did not exit when done"
    finally:
        child.stop()
    stamps = [m.header.stamp.sec * NS + m.header.stamp.nanosec for _, m in joints]
    assert stamps == sorted(stamps) and stamps[0] == spec.start_ns
    # original spacing / rate: a sleep-based player can only be late, never early
    played = joints[-1][0] - joints[0][0]
    assert played >= 0.9 * (stamps[-1] - stamps[0]) / NS / rate
    assert clocks and min(clocks) >= spec.start_ns and max(clocks) <= stamps[-1] + NS
    assert clocks == sorted(clocks)


def test_replay_refuses_topics_the_bag_does_not_have_and_lists_what_it_has(demo_bag):
    bag, _ = demo_bag
    child = ChildProcess.python_module(MOD, "--ros-args", "-p", f"bag_path:={bag}", "-p", "topics:=['/nope']")
    rc = child.proc.wait(30)
    out = child.output()
    child.stop()
    assert rc == 1 and "/nope" in out and "/rp/joint_states" in out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_replay_publishes_in_timestamp_order_whatever_the_file_order(ros, tmp_path, storage):
    """0.25 s blocks of the timeline written in a shuffled order: played in time order (one
    topic, so DDS keeps the publication order on the wire)."""
    spec = synthetic.SyntheticSpec(cameras={}, joint_topic="/rpo/joint_states", joint_names=["j1", "gripper"], seconds=2.0,
                                   joint_hz=20, storage=storage, file_order="interleaved_chunks")
    synthetic.write_synthetic_bag(tmp_path / "shuffled", spec)
    node = ros.node("replay_order_sink")
    joints = []
    node.create_subscription(JointState, "/rpo/joint_states", joints.append, qos.JOINT_STATE)
    child = ChildProcess.python_module(MOD, "--ros-args", "-p", f"bag_path:={tmp_path / 'shuffled'}", "-p", "rate:=4.0",
                                       "-p", "publish_clock:=false", "-p", "wait_for_subscribers:=1")
    try:
        assert ros.spin_until(lambda: len(joints) == 40, 20.0), child.output()
    finally:
        child.stop()
    stamps = [m.header.stamp.sec * NS + m.header.stamp.nanosec for m in joints]
    assert stamps == [spec.start_ns + i * NS // 20 for i in range(40)]
