"""The smallest real graph: one process publishes ActionChunks at 30 Hz, another receives them
over DDS and reports rate and latency. (The closed-loop simulation replaces this as the main job.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np


def talker(duration: float) -> None:
    import rclpy
    from molmoact2_common import qos
    from molmoact2_msgs.msg import ActionChunk

    rclpy.init()
    node = rclpy.create_node("smoke_chunk_talker")
    pub = node.create_publisher(ActionChunk, "/smoke/action_chunk", qos.ACTION_CHUNK)
    deadline = time.monotonic() + 20.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    joints = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    seq = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        seq += 1
        msg = ActionChunk(joint_names=joints, horizon=30, dt=1 / 30, sequence=seq, model_id="smoke")
        msg.positions = np.sin(np.arange(30 * 6) * 0.01 + seq).tolist()
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=1 / 30)
    node.destroy_node()
    rclpy.try_shutdown()


def listener(duration: float) -> None:
    import rclpy
    from rclpy.time import Time
    from molmoact2_common import qos
    from molmoact2_msgs.msg import ActionChunk

    rclpy.init()
    node = rclpy.create_node("smoke_chunk_listener")
    latencies: list[float] = []
    first = [None]

    def on_chunk(msg: ActionChunk) -> None:
        now = node.get_clock().now()
        first[0] = first[0] or time.monotonic()
        latencies.append((now - Time.from_msg(msg.header.stamp)).nanoseconds * 1e-9)

    node.create_subscription(ActionChunk, "/smoke/action_chunk", on_chunk, qos.ACTION_CHUNK)
    end = time.monotonic() + duration + 20.0
    while time.monotonic() < end and (first[0] is None or time.monotonic() - first[0] < duration):
        rclpy.spin_once(node, timeout_sec=0.05)
    span = time.monotonic() - first[0] if first[0] else 0.0
    lat = np.array(latencies) * 1e3
    if len(lat) == 0:
        print("smoke graph: FAILED, no ActionChunk received")
        sys.exit(1)
    print(f"smoke graph: received {len(lat)} ActionChunks (30x6) in {span:.1f} s = {len(lat) / span:.1f} Hz; "
          f"latency p50 {np.percentile(lat, 50):.2f} ms p99 {np.percentile(lat, 99):.2f} ms")
    node.destroy_node()
    rclpy.try_shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--role", choices=["graph", "talker", "listener"], default="graph")
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    if args.role == "talker":
        talker(args.duration)
        return 0
    if args.role == "listener":
        listener(args.duration)
        return 0
    procs = [subprocess.Popen([sys.executable, __file__, "--role", role, "--duration", str(args.duration)])
             for role in ("listener", "talker")]
    codes = [p.wait(timeout=args.duration + 60) for p in procs]
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
