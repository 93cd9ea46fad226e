"""The camera driver of the perception benchmark, in its own process: publishes 3 x 640x360 rgb8
frames (top, left, right) and two arms' joint states at 30 Hz, announces the first Observation as
the one the policy consumes (so every later one is masked against it), and times each
``change_mask/top`` from its frame's capture stamp to its arrival here. Prints one JSON line.

    python bench/perception_feeder.py --n 200 [--rate 30] [--timeout 90]

The frames are built once and only restamped, and the Observation is taken raw (its stamp read
from the serialised bytes), so the feeder costs the machine little besides publishing.
"""

from __future__ import annotations

import argparse
import json
import struct
import time

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState

from molmoact2_common import qos
from molmoact2_msgs.msg import ChangeMask, Observation, PolicyStatus
from molmoact2_policy import ros_conversions as rc

CAMERAS = ("top", "left", "right")
ARMS = ("left", "right")


class Feeder(Node):
    def __init__(self, n: int, rate: float) -> None:
        super().__init__("bench_camera_driver")
        self.n = n
        rng = np.random.default_rng(0)
        self.frames = {c: [rc.rgb_to_image_msg(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), 0, f"{c}_optical")
                           for _ in range(4)] for c in CAMERAS}
        self.pubs = {c: self.create_publisher(Image, f"/bench/{c}", qos.CAMERA_IMAGE) for c in CAMERAS}
        self.joints = {a: JointState(name=[f"{a}_joint{i}" for i in range(1, 7)] + [f"{a}_gripper"], position=[0.0] * 7)
                       for a in ARMS}
        self.joint_pubs = {a: self.create_publisher(JointState, f"{a}/joint_states", qos.JOINT_STATE) for a in ARMS}
        self.status = self.create_publisher(PolicyStatus, "policy_status", qos.POLICY_STATUS)
        self.create_subscription(Observation, "observation", self.on_observation, qos.OBSERVATION, raw=True)
        self.create_subscription(ChangeMask, "change_mask/top", self.on_mask, qos.CHANGE_MASK)
        self.latencies: list[float] = []
        self.ticks = 0
        self.observations = 0
        self.referenced = False
        self.create_timer(1.0 / rate, self.tick)

    def tick(self) -> None:
        now = self.get_clock().now().nanoseconds
        stamp = rc.ns_to_time(now)
        for c, pub in self.pubs.items():
            msg = self.frames[c][self.ticks % 4]
            msg.header.stamp = stamp
            pub.publish(msg)
        for a, pub in self.joint_pubs.items():
            self.joints[a].header.stamp = stamp
            pub.publish(self.joints[a])
        self.ticks += 1

    def on_observation(self, raw: bytes) -> None:
        self.observations += 1
        if not self.referenced:  # the policy consumes this one: later observations are masked against it
            self.referenced = True
            sec, nanosec = struct.unpack_from("<iI", raw, 4)  # header.stamp after the CDR encapsulation
            self.status.publish(PolicyStatus(state=PolicyStatus.STATE_RUNNING, consuming_stamp=rc.ns_to_time(sec * rc.NS + nanosec)))

    def on_mask(self, msg: ChangeMask) -> None:
        self.latencies.append((self.get_clock().now().nanoseconds - rc.time_to_ns(msg.header.stamp)) / 1e9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200, help="masks to time after 10 of warm-up")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--timeout", type=float, default=90.0)
    a = ap.parse_args()
    rclpy.init()
    feeder = Feeder(a.n, a.rate)
    ex = SingleThreadedExecutor()
    ex.add_node(feeder)
    deadline = time.monotonic() + a.timeout
    warm = None  # (ticks, observations) when the 10th mask came: the timed window starts
    try:
        while len(feeder.latencies) < a.n + 10 and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
            if warm is None and len(feeder.latencies) >= 10:
                warm = (feeder.ticks, feeder.observations)
                print("WARM", flush=True)  # the bench samples the perception processes' CPU time here
    finally:
        warm = warm or (feeder.ticks, feeder.observations)
        print(json.dumps({"latencies_s": feeder.latencies[10:], "frame_sets": feeder.ticks - warm[0],
                          "observations": feeder.observations - warm[1], "masks": max(0, len(feeder.latencies) - 10)}),
              flush=True)
        feeder.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
