"""The recorder node over real DDS: chosen topics -> a bag that rosbags and the mcap reader
open, our interfaces included; the CLI; refusals with clear messages."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import JointState
from support.ros_harness import ChildProcess

from molmoact2_common import qos
from molmoact2_msgs.msg import ActionChunk
from molmoact2_policy.core.evaluation.bagio import BagReader

pytestmark = pytest.mark.ros
MOD = "molmoact2_policy.nodes.recorder_node"


def _publish_and_stop(ros, child, n=20):
    node = ros.node("record_source")
    js = node.create_publisher(JointState, "/rec/joint_states", qos.JOINT_STATE)
    ch = node.create_publisher(ActionChunk, "/rec/action_chunk", qos.ACTION_CHUNK)
    noise = node.create_publisher(JointState, "/rec/not_recorded", qos.JOINT_STATE)
    assert ros.wait_for_subscribers(js, timeout=15.0), child.output()
    assert ros.wait_for_subscribers(ch, timeout=15.0), child.output()
    for i in range(n):
        m = JointState(name=["a", "b"], position=[float(i), -float(i)])
        m.header.stamp.sec = i
        js.publish(m)
        c = ActionChunk(joint_names=["a"], horizon=2, dt=0.1, positions=[0.0, float(i)], sequence=i + 1, model_id="m")
        ch.publish(c)
        noise.publish(m)
        ros.spin_until(lambda: False, 0.005)
    # the recorder never blocks; give it the last messages, then stop it (SIGINT)
    ros.spin_until(lambda: False, 0.5)
    assert child.stop() == 0, child.output()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_recorder_node_records_chosen_topics_to_a_standard_bag(ros, tmp_path, storage):
    from rosbags.rosbag2 import Reader

    bag = tmp_path / "run"
    child = ChildProcess.python_module(
        MOD, "--ros-args", "-p", f"bag_path:={bag}", "-p", f"storage:={storage}",
        "-p", "topics:=['/rec/joint_states','/rec/action_chunk']",
    )
    _publish_and_stop(ros, child)
    with Reader(bag) as r:
        topics = {c.topic: c.msgcount for c in r.connections}
    assert topics == {"/rec/joint_states": 20, "/rec/action_chunk": 20}
    reader = BagReader(bag)
    chunks = [reader.decode(x) for x in reader.messages(["/rec/action_chunk"])]
    assert [c.sequence for c in chunks] == list(range(1, 21))
    np.testing.assert_allclose(chunks[-1].positions, [0.0, 19.0])
    if storage == "mcap":
        from mcap.reader import make_reader

        with open(bag / "run_0.mcap", "rb") as f:
            assert sum(1 for _ in make_reader(f).iter_messages()) == 40


def test_record_cli_records_all_topics_but_the_excluded(ros, tmp_path):
    bag = tmp_path / "cli"
    child = ChildProcess.python_module(MOD, "-o", str(bag), "--all")
    _publish_and_stop(ros, child, n=5)
    topics = BagReader(bag).topics()
    assert {"/rec/joint_states", "/rec/action_chunk", "/rec/not_recorded"} <= set(topics)
    assert "/rosout" not in topics


def test_recorder_refuses_an_existing_bag_path_naming_the_parameter(tmp_path):
    (tmp_path / "exists").mkdir()
    child = ChildProcess.python_module(MOD, "--ros-args", "-p", f"bag_path:={tmp_path / 'exists'}", "-p", "topics:=['/x']")
    rc = child.proc.wait(30)
    out = child.output()
    child.stop()
    assert rc == 1 and "bag_path" in out and "exists already" in out
