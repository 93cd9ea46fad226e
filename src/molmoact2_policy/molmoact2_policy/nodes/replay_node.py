"""Replay publisher: plays a rosbag2 (mcap or sqlite3, ours or ``ros2 bag record``'s) into live
topics with its original timing scaled by ``rate``, and publishes ``/clock`` with the bag's time
so that a graph started with ``use_sim_time:=true`` runs on the recorded clock. Messages are
published as the recorded CDR bytes (no decode). Damaged records are skipped and reported.

    ros2 run molmoact2_policy replay_node --ros-args -p bag_path:=/data/run1 -p rate:=0.5
    molmoact2-replay /data/run1 --rate 0.5 --topics /joint_states /cameras/top/image_raw
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from rclpy.node import Node

from molmoact2_common import qos
from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, non_negative, positive

from ..core.evaluation.bagio import BagError, BagReader
from .recorder_node import message_class

NS = 1_000_000_000
LATCHED_TYPES = {"std_msgs/msg/String", "molmoact2_msgs/msg/PolicyStatus", "molmoact2_msgs/msg/DriverStatus"}

PARAMS = [
    ParamSpec("bag_path", str, "", "rosbag2 directory (or one .mcap/.db3 file) to play", lambda v: bool(v), "non-empty"),
    ParamSpec("rate", float, 1.0, "Playback speed factor (2.0: twice as fast)", positive, "> 0"),
    ParamSpec("topics", "str[]", [], "Topics to play; empty: all"),
    ParamSpec("publish_clock", bool, True, "Publish /clock with the bag's time"),
    ParamSpec("clock_hz", float, 100.0, "/clock publication rate between messages", positive, "> 0"),
    ParamSpec("start_delay", float, 0.0, "Seconds to wait before playing (after subscribers are matched)", non_negative, ">= 0"),
    ParamSpec("wait_for_subscribers", int, 0, "Before playing, wait until every played topic has this many subscribers", non_negative, ">= 0"),
    ParamSpec("wait_timeout", float, 10.0, "Longest wait for subscribers, seconds", positive, "> 0"),
    ParamSpec("loop", bool, False, "Play the bag again and again"),
    ParamSpec("exit_when_done", bool, True, "Shut the node down when the bag has been played"),
]


def publisher_qos(msgtype: str):
    return qos.LATCHED if msgtype in LATCHED_TYPES else qos.JOINT_STATE  # reliable: matches every subscriber


class ReplayNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("replay", **kwargs)
        p = declare_parameters(self, PARAMS)
        self.params = p
        try:
            self.reader = BagReader(p["bag_path"])
            available = self.reader.topics()
        except BagError as exc:
            raise ParameterError(f"parameter 'bag_path' = '{p['bag_path']}': {exc}") from None
        wanted = p["topics"] or list(available)
        missing = [t for t in wanted if t not in available]
        if missing:
            raise ParameterError(
                f"parameter 'topics': not in the bag: {', '.join(missing)} (the bag has: {', '.join(sorted(available))})"
            )
        self.topics = wanted
        self.pubs = {}
        for t in wanted:
            msgtype = available[t].msgtype
            try:
                cls = message_class(msgtype)
            except (ImportError, AttributeError, ValueError) as exc:
                if p["topics"]:  # asked for by name: refuse
                    raise ParameterError(f"parameter 'topics': cannot publish '{t}' ({msgtype}): {exc}") from None
                self.get_logger().warning(f"not playing '{t}': message type {msgtype} is not installed here")
                continue
            self.pubs[t] = self.create_publisher(cls, t, publisher_qos(msgtype))
        self.topics = list(self.pubs)
        self.clock_pub = None
        if p["publish_clock"]:
            from rosgraph_msgs.msg import Clock

            self._clock_cls = Clock
            self.clock_pub = self.create_publisher(Clock, "/clock", qos.CLOCK)
        self.published = 0
        self._last_clock = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name="bag-replay", daemon=True)
        self._thread.start()

    def _publish_clock(self, bag_ns: int) -> None:
        if self.clock_pub is not None and bag_ns >= self._last_clock:
            self._last_clock = bag_ns
            msg = self._clock_cls()
            msg.clock.sec, msg.clock.nanosec = int(bag_ns) // NS, int(bag_ns) % NS
            self.clock_pub.publish(msg)

    def _wait_for_subscribers(self) -> None:
        n = self.params["wait_for_subscribers"]
        if n <= 0:
            return
        deadline = time.monotonic() + self.params["wait_timeout"]
        while not self._stop.is_set() and time.monotonic() < deadline:
            if all(pub.get_subscription_count() >= n for pub in self.pubs.values()):
                return
            time.sleep(0.02)
        short = [t for t, pub in self.pubs.items() if pub.get_subscription_count() < n]
        if short:
            self.get_logger().warning(f"playing although these topics have fewer than {n} subscribers: {', '.join(short)}")

    def _play(self) -> None:
        try:
            self._wait_for_subscribers()
            if self._stop.wait(self.params["start_delay"]):
                return
            while not self._stop.is_set():
                self._play_once()
                if not self.params["loop"]:
                    break
            for b in self.reader.broken:
                self.get_logger().warning(f"skipped broken record: {b.file} {b.position}: {b.reason}")
            self.get_logger().info(f"replay finished: {self.published} messages")
        except Exception as exc:  # a failing playback says why and stops the node
            self.get_logger().error(f"replay failed: {exc}")
        if self.params["exit_when_done"] and not self._stop.is_set():
            self.context.try_shutdown()

    def _play_once(self) -> None:
        rate = self.params["rate"]
        clock_period = 1.0 / self.params["clock_hz"]
        bag0 = wall0 = None
        for rec in self.reader.messages(self.topics):
            if bag0 is None:
                bag0, wall0 = rec.timestamp_ns, time.monotonic()
                self._last_clock = 0  # a new loop starts the clock again
                self._publish_clock(bag0)
            due = wall0 + (rec.timestamp_ns - bag0) / NS / rate
            while True:
                now = time.monotonic()
                if now >= due or self._stop.is_set():
                    break
                if self._stop.wait(min(due - now, clock_period)):
                    return
                # between messages: the interpolated bag time, never past the next message's
                self._publish_clock(min(rec.timestamp_ns, bag0 + int((time.monotonic() - wall0) * rate * NS)))
            if self._stop.is_set():
                return
            self._publish_clock(rec.timestamp_ns)
            try:
                self.pubs[rec.topic].publish(rec.data)
                self.published += 1
            except Exception as exc:  # rclpy may refuse one publication under load: count, go on
                self.get_logger().warning(f"could not publish on {rec.topic}: {exc}", throttle_duration_sec=5.0)

    def destroy_node(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(ReplayNode, args)


def cli(argv: list[str] | None = None) -> int:
    """``molmoact2-replay``: the replay node driven by command-line flags."""
    ap = argparse.ArgumentParser(prog="molmoact2-replay", description="Play a rosbag2 into live topics with /clock.")
    ap.add_argument("bag", help="bag directory (or one .mcap/.db3 file)")
    ap.add_argument("-r", "--rate", type=float, default=1.0)
    ap.add_argument("--topics", nargs="*", default=[])
    ap.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    ap.add_argument("--loop", action="store_true")
    ap.add_argument("--start-delay", type=float, default=0.0)
    ap.add_argument("--wait-for-subscribers", type=int, default=0)
    ns, rest = ap.parse_known_args(argv if argv is not None else sys.argv[1:])
    ros_args = ["--ros-args", "-p", f"bag_path:={ns.bag}", "-p", f"rate:={float(ns.rate)}",
                "-p", f"publish_clock:={'false' if ns.no_clock else 'true'}", "-p", f"loop:={'true' if ns.loop else 'false'}",
                "-p", f"start_delay:={float(ns.start_delay)}", "-p", f"wait_for_subscribers:={ns.wait_for_subscribers}"]
    if ns.topics:
        ros_args += ["-p", "topics:=[" + ",".join(f"'{t}'" for t in ns.topics) + "]"]
    return run_node(ReplayNode, [sys.argv[0], *rest, *ros_args])


if __name__ == "__main__":
    sys.exit(main() if len(sys.argv) == 1 or sys.argv[1] == "--ros-args" else cli())
