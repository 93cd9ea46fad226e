"""Every interface of molmoact2_msgs crosses a process boundary over real DDS, field-equal."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState

from molmoact2_msgs.msg import ActionChunk, ChangeMask, DepthTokens, DriverStatus, Observation, PolicyStatus
from molmoact2_msgs.srv import SetInstruction
from support.ros_harness import ROOT, ChildProcess

pytestmark = pytest.mark.ros


def _image(h: int, w: int, seed: int) -> Image:
    rng = np.random.default_rng(seed)
    img = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3)
    img.data = rng.integers(0, 256, size=h * w * 3, dtype=np.uint8).tobytes()
    img.header.frame_id = f"cam{seed}"
    img.header.stamp = Time(sec=10 + seed, nanosec=1234)
    return img


def sample_messages() -> dict[str, object]:
    chunk = ActionChunk(joint_names=["left_joint1", "left_gripper"], horizon=3, dt=1 / 30,
                        positions=[0.1, 0.9, 0.2, 0.8, 0.3, 0.7], sequence=42,
                        model_id="tiny-molmoact2", inference_latency=0.061)
    chunk.header.stamp = Time(sec=5, nanosec=500)

    js = JointState(name=["left_joint1", "left_gripper"], position=[0.5, 1.0], velocity=[], effort=[])
    obs = Observation(camera_names=["top", "left", "right"],
                      images=[_image(36, 64, 1), _image(36, 64, 2), _image(36, 64, 3)],
                      capture_stamps=[Time(sec=1), Time(sec=2), Time(sec=3)],
                      camera_stale=[False, True, False], joint_state=js,
                      joint_sources=["left", "right"], joint_source_stamps=[Time(sec=4), Time(sec=4, nanosec=9)],
                      joint_source_stale=[False, False])
    # float32 fields: use values float32 represents exactly, so equality is bit-equality.
    mask = ChangeMask(camera="top", rows=2, cols=2, threshold=float(np.float32(0.996)),
                      similarity=[1.0, 0.5, 0.9999, 0.0], changed=[False, True, False, True],
                      reference_stamp=Time(sec=7))
    depth = DepthTokens(camera="top", rows=2, cols=2, num_codes=128, codes=[0, 127, 5, 64],
                        refreshed=[True, False, False, True], observation_stamp=Time(sec=8))
    status = PolicyStatus(state=PolicyStatus.STATE_RUNNING, model="tiny", backend="hf", mode="continuous",
                          consuming_stamp=Time(sec=9), last_latency=0.05, p99_latency=0.08,
                          achieved_rate=15.0, chunk_count=7, message="ok")
    driver = DriverStatus(arm="left", backend="kinematic", state=DriverStatus.STATE_EXECUTING,
                          actuation_enabled=True, dry_run=False, estop_latched=False, operator_started=True,
                          active_chunk_sequence=3, steps_remaining=4, chunks_received=5, chunks_refused=1,
                          clamps_velocity=2, last_event="velocity clamp on left_joint1")
    return {"ActionChunk": chunk, "Observation": obs, "ChangeMask": mask, "DepthTokens": depth,
            "PolicyStatus": status, "DriverStatus": driver}


def _equal(a, b) -> bool:
    # Generated message classes compare field by field (arrays included).
    return a == b


@pytest.fixture
def echo_process():
    topics = [f"/rt/{name}=molmoact2_msgs/msg/{name}" for name in sample_messages()]
    child = ChildProcess([sys.executable, str(ROOT / "tests/support/echo_node.py"), *topics], name="echo_node")
    yield child
    child.stop()


def test_every_interface_round_trips_across_two_processes(ros, echo_process):
    node = ros.node("round_trip_probe")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    messages = sample_messages()
    received: dict[str, object] = {}
    pubs = {}
    for name, msg in messages.items():
        pubs[name] = node.create_publisher(type(msg), f"/rt/{name}", qos)
        node.create_subscription(type(msg), f"/rt/{name}/echo",
                                 lambda m, name=name: received.setdefault(name, m), qos)
    for name, pub in pubs.items():
        assert ros.wait_for_subscribers(pub, timeout=15.0), f"echo node never subscribed to {name}: {echo_process.output()}"
    # The echo's publisher must be matched too before we publish, or the reply could be lost.
    for sub in node.subscriptions:
        assert ros.wait_for_publishers(sub, timeout=15.0), f"echo publisher for {sub.topic_name} not matched"
    for name, pub in pubs.items():
        assert ros.publish_until(pub, messages[name], lambda name=name: name in received, timeout=15.0), \
            f"no echo of {name}: {echo_process.output()}"
    for name, msg in messages.items():
        assert _equal(received[name], msg), f"{name} changed in transit"


def test_set_instruction_service_answers_across_processes(ros, echo_process):
    node = ros.node("service_probe")
    client = node.create_client(SetInstruction, "/echo/set_instruction")
    assert ros.wait_for_service(client, timeout=15.0), f"service never appeared: {echo_process.output()}"
    reply = ros.call(client, SetInstruction.Request(instruction="fold the towel"))
    assert reply.success is True
    assert reply.message == "echo: fold the towel"
    reply = ros.call(client, SetInstruction.Request(instruction="   "))
    assert reply.success is False


def test_large_observation_crosses_processes_intact(ros, echo_process):
    """A 3-camera 640x360 observation (2 MB) is delivered whole through the shared-memory profile."""
    node = ros.node("big_probe")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Observation, "/rt/Observation", qos)
    got = []
    sub = node.create_subscription(Observation, "/rt/Observation/echo", got.append, qos)
    assert ros.wait_for_subscribers(pub, timeout=15.0)
    assert ros.wait_for_publishers(sub, timeout=15.0)
    obs = Observation(camera_names=["top", "left", "right"], images=[_image(360, 640, i) for i in range(3)])
    assert ros.publish_until(pub, obs, lambda: bool(got), timeout=15.0)
    assert [bytes(i.data) for i in got[0].images] == [bytes(i.data) for i in obs.images]
