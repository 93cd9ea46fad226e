"""Camera node across processes: relay (raw bgr8 + compressed) and image-folder sources, frames
converted to RGB8 at the embodiment resolution, synchronised Observation with joints merged
across two arm drivers, staleness of a camera that disappears, resumption when it returns."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image, JointState

from molmoact2_common import qos
from molmoact2_msgs.msg import Observation
from molmoact2_policy import ros_conversions as rc
from molmoact2_policy.core import image_codec
from support.ros_harness import ChildProcess

pytestmark = pytest.mark.ros

MODULE = "molmoact2_policy.nodes.camera_node"


def _start(tmp_path, *extra):
    folder = tmp_path / "top"
    folder.mkdir()
    rgb = np.zeros((36, 64, 3), np.uint8)
    rgb[..., 1] = 200  # green
    (folder / "0.png").write_bytes(image_codec.encode_compressed(rgb, "png"))
    return ChildProcess.python_module(
        MODULE, "--ros-args",
        "-p", "embodiment:=yam_bimanual",
        "-p", f"source_overrides:=['top=folder:{folder}', 'left=topic:/test_cam/left', 'right=compressed:/test_cam/right']",
        "-p", "publish_rate_hz:=10.0", "-p", "camera_max_age:=0.6", "-p", "camera_max_skew:=0.5",
        "-p", "joint_max_age:=0.6", "-p", "stale_report_period:=0.2",
        *extra,
    )


class _Feeder:
    def __init__(self, ros):
        self.node = ros.node("feeder")
        self.left = self.node.create_publisher(Image, "/test_cam/left", qos.CAMERA_IMAGE)
        self.right = self.node.create_publisher(CompressedImage, "/test_cam/right", qos.CAMERA_IMAGE)
        self.jl = self.node.create_publisher(JointState, "left/joint_states", qos.JOINT_STATE)
        self.jr = self.node.create_publisher(JointState, "right/joint_states", qos.JOINT_STATE)
        self.left_on = True
        self.left_encoding = "bgr8"
        red = np.zeros((36, 64, 3), np.uint8)
        red[..., 0] = 220
        self.red = red
        blue = np.zeros((18, 32, 3), np.uint8)
        blue[..., 2] = 220
        self.blue_png = image_codec.encode_compressed(blue, "png")
        self.timer = self.node.create_timer(0.05, self.tick)

    def tick(self):
        now = self.node.get_clock().now().nanoseconds
        if self.left_on:
            msg = rc.rgb_to_image_msg(self.red, now, "left_optical", encoding="bgr8")
            msg.encoding = self.left_encoding
            self.left.publish(msg)
        c = CompressedImage(format="png", data=self.blue_png)
        c.header.stamp = rc.ns_to_time(now)
        self.right.publish(c)
        for pub, arm in ((self.jl, "left"), (self.jr, "right")):
            js = JointState(name=[f"{arm}_joint{i}" for i in range(1, 7)] + [f"{arm}_gripper"],
                            position=[0.1 * i for i in range(1, 8)])
            js.header.stamp = rc.ns_to_time(now)
            pub.publish(js)


def test_camera_node_publishes_synchronised_rgb8_observations_and_marks_a_vanished_camera_stale(ros, tmp_path):
    proc = _start(tmp_path)
    try:
        feeder = _Feeder(ros)
        got: list[Observation] = []
        sub = ros.node("listener").create_subscription(Observation, "observation", got.append, qos.OBSERVATION)
        assert ros.wait_for_publishers(sub, timeout=20), proc.output()
        assert ros.spin_until(lambda: got and not any(got[-1].camera_stale), 20), proc.output()
        o = rc.observation_msg_to_arrays(got[-1])
        assert o.camera_names == ["top", "left", "right"]
        for im in got[-1].images:
            assert (im.width, im.height, im.encoding) == (640, 360, "rgb8")
        assert tuple(o.image("top")[180, 320]) == (0, 200, 0)  # folder frame, resized
        assert tuple(o.image("left")[180, 320]) == (220, 0, 0)  # bgr8 relay -> RGB
        assert tuple(o.image("right")[180, 320]) == (0, 0, 220)  # compressed relay
        assert got[-1].images[1].header.frame_id == "left_optical"
        assert o.joints.names[:7] == [f"left_joint{i}" for i in range(1, 7)] + ["left_gripper"]
        assert o.joints.names[7:] == [f"right_joint{i}" for i in range(1, 7)] + ["right_gripper"]
        assert o.joint_sources == ["left/joint_states", "right/joint_states"] and not any(o.joint_source_stale)

        # the left camera disappears: marked stale within max-age, named in a warning
        feeder.left_on = False
        assert ros.spin_until(lambda: list(got[-1].camera_stale) == [False, True, False], 10), proc.output()
        assert ros.spin_until(lambda: "camera:left" in proc.output(), 5)
        # it returns: fresh again without a restart
        feeder.left_on = True
        assert ros.spin_until(lambda: not any(got[-1].camera_stale), 10), proc.output()

        # unsupported encoding: one clear error for the camera, frames skipped -> stale
        feeder.left_encoding = "bayer_rggb8"
        assert ros.spin_until(lambda: list(got[-1].camera_stale) == [False, True, False], 10), proc.output()
        out = proc.output()
        assert out.count("unsupported image encoding 'bayer_rggb8'") == 1, out
        assert "camera 'left'" in out
    finally:
        assert proc.stop() in (0, -2), proc.output()


class _SimClockFeeder(_Feeder):
    """The same inputs stamped with a simulated clock it publishes on /clock, as molmoact2-replay does."""

    def __init__(self, ros, start_ns):
        from rosgraph_msgs.msg import Clock

        self.sim_ns = start_ns
        self._clock_msg = Clock
        super().__init__(ros)
        self.clock_pub = self.node.create_publisher(Clock, "/clock", qos.CLOCK)

    def tick(self):
        self.sim_ns += 50_000_000
        if hasattr(self, "clock_pub"):  # the timer may fire before __init__ made the publisher
            self.clock_pub.publish(self._clock_msg(clock=rc.ns_to_time(self.sim_ns)))
        now = self.sim_ns  # the feeder's own clock is wall time: stamps come from the simulated one
        msg = rc.rgb_to_image_msg(self.red, now, "left_optical", encoding="bgr8")
        self.left.publish(msg)
        c = CompressedImage(format="png", data=self.blue_png)
        c.header.stamp = rc.ns_to_time(now)
        self.right.publish(c)
        for pub, arm in ((self.jl, "left"), (self.jr, "right")):
            js = JointState(name=[f"{arm}_joint{i}" for i in range(1, 7)] + [f"{arm}_gripper"],
                            position=[0.1 * i for i in range(1, 8)])
            js.header.stamp = rc.ns_to_time(now)
            pub.publish(js)


def test_clock_jumping_back_resets_the_camera_nodes_synchroniser(ros, tmp_path):
    """molmoact2-replay --loop restarts /clock: the camera node takes the new loop's frames and
    joint states (stamped earlier than the last ones it kept) instead of dropping every one."""
    proc = _start(tmp_path, "-p", "use_sim_time:=true")
    try:
        feeder = _SimClockFeeder(ros, start_ns=100_000_000_000)
        got: list[Observation] = []
        sub = ros.node("listener").create_subscription(Observation, "observation", got.append, qos.OBSERVATION)
        assert ros.wait_for_publishers(sub, timeout=20), proc.output()

        def fresh_before(limit_ns):
            if not got or any(got[-1].camera_stale) or any(got[-1].joint_source_stale):
                return False
            o = rc.observation_msg_to_arrays(got[-1])
            return o.stamp_ns < limit_ns and all(s < limit_ns for s in o.capture_stamps_ns + o.joint_source_stamps_ns)

        assert ros.spin_until(lambda: got and rc.time_to_ns(got[-1].header.stamp) > 100_000_000_000
                              and not any(got[-1].camera_stale), 20), proc.output()
        feeder.sim_ns = 5_000_000_000  # the replay loops: the clock goes back 95 s
        assert ros.spin_until(lambda: fresh_before(50_000_000_000), 20), proc.output()
        assert "synchroniser reset" in proc.output()
    finally:
        assert proc.stop() in (0, -2), proc.output()


def test_camera_node_refuses_an_unknown_camera_naming_the_parameter(tmp_path):
    proc = ChildProcess.python_module(MODULE, "--ros-args", "-p", "embodiment:=yam_bimanual", "-p", "cameras:=['top', 'belly']")
    try:
        proc.proc.wait(timeout=30)
        out = proc.output()
    finally:
        proc.stop()
    assert proc.proc.returncode == 1, out
    assert "parameter 'cameras'" in out and "belly" in out


def test_frame_size_publishes_every_camera_at_that_size_instead_of_the_embodiments(ros, tmp_path):
    # a simulator renders 64x36 frames: published as rendered, not upscaled to the real 640x360
    proc = _start(tmp_path, "-p", "frame_size:=64x36")
    try:
        _Feeder(ros)
        got: list[Observation] = []
        sub = ros.node("listener").create_subscription(Observation, "observation", got.append, qos.OBSERVATION)
        assert ros.wait_for_publishers(sub, timeout=20), proc.output()
        assert ros.spin_until(lambda: got and not any(got[-1].camera_stale), 20), proc.output()
        assert [(im.width, im.height) for im in got[-1].images] == [(64, 36)] * 3
        o = rc.observation_msg_to_arrays(got[-1])
        assert tuple(o.image("left")[18, 32]) == (220, 0, 0)
    finally:
        assert proc.stop() in (0, -2), proc.output()


@pytest.mark.parametrize("bad", ["64", "64x", "x36", "0x36", "wide"])
def test_a_bad_frame_size_is_refused_naming_the_parameter(tmp_path, bad):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", MODULE, "--ros-args", "-p", "embodiment:=yam_bimanual",
                           "-p", f"frame_size:={bad}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "frame_size" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_observation_trigger_frames_sends_each_complete_frame_set_and_the_timer_covers_a_silent_camera(ros):
    """observation_trigger:=frames: an Observation as soon as every camera has a new frame, carrying
    exactly that set (the timer, at 0.5 Hz here, would have sent one or two for the six sets); when a
    camera falls silent the timer still sends them, flagged stale."""
    cams = ("top", "left", "right")
    proc = ChildProcess.python_module(
        MODULE, "--ros-args", "-p", "embodiment:=yam_bimanual",
        "-p", f"source_overrides:={[f'{c}=topic:/trigger_cam/{c}' for c in cams]}",
        "-p", "publish_rate_hz:=0.5", "-p", "observation_trigger:=frames", "-p", "camera_max_age:=1.0",
        "-p", "camera_max_skew:=1.0", "-p", "joint_max_age:=30.0", "-p", "joint_max_skew:=30.0",
        "-p", "publish_camera_images:=false")
    try:
        node = ros.node("trigger_feeder")
        pubs = {c: node.create_publisher(Image, f"/trigger_cam/{c}", qos.CAMERA_IMAGE) for c in cams}
        joints = {a: node.create_publisher(JointState, f"{a}/joint_states", qos.JOINT_STATE) for a in ("left", "right")}
        got: list[Observation] = []
        sub = node.create_subscription(Observation, "observation", got.append, qos.OBSERVATION)
        assert ros.wait_for_publishers(sub, timeout=20), proc.output()
        for pub in pubs.values():
            assert ros.wait_for_subscribers(pub, timeout=20), proc.output()
        frame = np.zeros((360, 640, 3), np.uint8)

        def send(stamp_ns, which=cams):
            for a, pub in joints.items():
                js = JointState(name=[f"{a}_joint{i}" for i in range(1, 7)] + [f"{a}_gripper"], position=[0.0] * 7)
                js.header.stamp = rc.ns_to_time(stamp_ns)
                pub.publish(js)
            for i, c in enumerate(which):
                pubs[c].publish(rc.rgb_to_image_msg(frame, stamp_ns + i, c))

        def sets_seen():
            return {tuple(rc.time_to_ns(t) for t in o.capture_stamps) for o in got}

        start = node.get_clock().now().nanoseconds
        stamps = [start + k * 100_000_000 for k in range(6)]
        for s in stamps:  # each set sent until its Observation is back (frames are best effort), for at
            want = (s, s + 1, s + 2)  # most 0.5 s: a quarter of the timer's period
            for _ in range(5):
                send(s)
                if ros.spin_until(lambda: want in sets_seen(), 0.1):
                    break
        assert {(s, s + 1, s + 2) for s in stamps} <= sets_seen(), proc.output()
        assert all(not any(o.camera_stale) for o in got)

        # the right camera falls silent: the timer still sends Observations, right flagged stale
        n = len(got)

        def right_stale():
            return len(got) > n and list(got[-1].camera_stale) == [False, False, True]

        for _ in range(60):
            send(node.get_clock().now().nanoseconds, which=("top", "left"))
            if ros.spin_until(right_stale, 0.2):
                break
        assert right_stale(), proc.output()
    finally:
        assert proc.stop() in (0, -2), proc.output()
