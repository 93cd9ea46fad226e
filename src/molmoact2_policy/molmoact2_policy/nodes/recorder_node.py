"""Recorder node: chosen topics (or all) -> rosbag2 (mcap by default, sqlite3), without
``ros2 bag``. Subscriptions are raw (the CDR bytes go to the bag as received) and callbacks only
enqueue: a writer thread owns the file (``core.evaluation.recorder``). Topics that appear later
are picked up by a discovery timer.

    ros2 run molmoact2_policy recorder_node --ros-args -p bag_path:=/data/run1 -p topics:="['/joint_states']"
    molmoact2-record -o /data/run1 /joint_states /cameras/top/image_raw      # same node, CLI flags
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from molmoact2_common import qos
from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, non_negative, positive

from ..core.evaluation.bagio import STORAGES, BagError, BagWriter, make_typestore
from ..core.evaluation.recorder import Recorder

PARAMS = [
    ParamSpec("bag_path", str, "", "Output bag directory (must not exist); empty: ./rosbag2_<date>-<time>"),
    ParamSpec("storage", str, "mcap", "rosbag2 storage plugin", choices=STORAGES),
    ParamSpec("topics", "str[]", [], "Topics to record; empty: every topic (see all_topics)"),
    ParamSpec("all_topics", bool, False, "Record every topic that appears (topics must then be empty)"),
    ParamSpec("exclude_topics", "str[]", ["/rosout", "/parameter_events"], "Topics never recorded"),
    ParamSpec("split_seconds", float, 60.0, "Start a new bag segment (file) after this many seconds", positive, "> 0"),
    ParamSpec("flush_seconds", float, 1.0, "Make the current segment durable at least this often", positive, "> 0"),
    ParamSpec("max_queue_mb", float, 256.0, "Queue budget; beyond it new messages are dropped and counted", positive, "> 0"),
    ParamSpec("discovery_period", float, 0.5, "Seconds between looks for new topics", positive, "> 0"),
    ParamSpec("stats_period", float, 5.0, "Seconds between statistics logs (0: never)", non_negative, ">= 0"),
]


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        raise ValueError(f"unexpected message type name '{msgtype}'")
    return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])


def subscription_qos(publishers_info) -> object:
    """Match what the publishers offer: best effort when any is best effort (camera drivers),
    transient local when all are (latched status), reliable otherwise."""
    if any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in publishers_info):
        return qos.CAMERA_IMAGE
    if publishers_info and all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers_info):
        return qos.LATCHED
    return qos.ACTION_CHUNK


class RecorderNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("recorder", **kwargs)
        p = declare_parameters(self, PARAMS)
        if p["all_topics"] and p["topics"]:
            raise ParameterError("parameters 'all_topics' and 'topics': give one or the other")
        if not p["all_topics"] and not p["topics"]:
            raise ParameterError("parameter 'topics' is empty: name the topics to record, or set all_topics:=true")
        path = p["bag_path"] or time.strftime("rosbag2_%Y_%m_%d-%H_%M_%S")
        self.params = p
        self.wanted = set(p["topics"])
        self.excluded = set(p["exclude_topics"])
        try:
            writer = BagWriter(path, p["storage"], make_typestore(), split_seconds=p["split_seconds"],
                               flush_seconds=p["flush_seconds"],
                               custom_data={"recorded_by": "molmoact2_policy recorder_node"})
        except BagError as exc:
            raise ParameterError(f"parameter 'bag_path' = '{path}': {exc}") from None
        self.bag_path = Path(path)
        self.recorder = Recorder(writer, int(p["max_queue_mb"] * (1 << 20)))
        self._subs: dict[str, object] = {}
        self._last_drop_log = 0
        self.create_timer(p["discovery_period"], self._discover)
        if p["stats_period"] > 0:
            self.create_timer(p["stats_period"], self._log_stats)
        self.get_logger().info(f"recording {'all topics' if p['all_topics'] else sorted(self.wanted)} to {self.bag_path} ({p['storage']})")
        self._discover()

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self._subs or topic in self.excluded:
                continue
            if not self.params["all_topics"] and topic not in self.wanted:
                continue
            msgtype = types[0]
            try:
                cls = message_class(msgtype)
            except (ImportError, AttributeError, ValueError) as exc:
                self.get_logger().warning(f"cannot record '{topic}' ({msgtype}): {exc}", throttle_duration_sec=30.0)
                continue
            if msgtype not in self.recorder.writer.store.fielddefs:
                self.get_logger().warning(f"cannot record '{topic}': no definition of {msgtype} to embed", throttle_duration_sec=30.0)
                continue
            infos = self.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            self.recorder.add_topic(topic, msgtype)
            self._subs[topic] = self.create_subscription(
                cls, topic, lambda data, t=topic: self._on_message(t, data), subscription_qos(infos), raw=True
            )
            self.get_logger().info(f"recording '{topic}' ({msgtype})")

    def _on_message(self, topic: str, data: bytes) -> None:
        if not self.recorder.put(topic, self.get_clock().now().nanoseconds, data):
            self.get_logger().warning(
                f"recorder queue full ({self.recorder.queued_bytes >> 20} MiB): dropping messages ({self.recorder.stats.dropped} so far)",
                throttle_duration_sec=5.0,
            )

    def _log_stats(self) -> None:
        s = self.recorder.stats
        self.get_logger().info(f"recorded {s.written} messages on {len(self._subs)} topics, dropped {s.dropped}, errors {s.errors}")

    def destroy_node(self) -> None:
        stats = self.recorder.close()
        print(f"[recorder] closed {self.bag_path}: {stats.written} messages written, {stats.dropped} dropped, {stats.errors} errors"
              + (f" (last: {stats.last_error})" if stats.last_error else ""), file=sys.stderr, flush=True)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, args)


def cli(argv: list[str] | None = None) -> int:
    """``molmoact2-record``: the recorder node driven by command-line flags."""
    ap = argparse.ArgumentParser(prog="molmoact2-record", description="Record ROS 2 topics to a rosbag2 (mcap or sqlite3).")
    ap.add_argument("topics", nargs="*", help="topics to record")
    ap.add_argument("-a", "--all", action="store_true", help="record every topic")
    ap.add_argument("-o", "--output", default="", help="bag directory (must not exist)")
    ap.add_argument("-s", "--storage", default="mcap", choices=STORAGES)
    ap.add_argument("--split-seconds", type=float, default=60.0)
    ap.add_argument("--flush-seconds", type=float, default=1.0)
    ap.add_argument("--max-queue-mb", type=float, default=256.0)
    ns, rest = ap.parse_known_args(argv if argv is not None else sys.argv[1:])
    topic_list = "[" + ",".join(f"'{t}'" for t in ns.topics) + "]"
    ros_args = [
        "--ros-args",
        "-p", f"storage:={ns.storage}",
        "-p", f"all_topics:={'true' if ns.all else 'false'}",
        "-p", f"split_seconds:={ns.split_seconds}",
        "-p", f"flush_seconds:={ns.flush_seconds}",
        "-p", f"max_queue_mb:={ns.max_queue_mb}",
    ]
    if ns.output:
        ros_args += ["-p", f"bag_path:={ns.output}"]
    if ns.topics:
        ros_args += ["-p", f"topics:={topic_list}"]
    return run_node(RecorderNode, [sys.argv[0], *rest, *ros_args])


if __name__ == "__main__":
    # `python -m ...recorder_node --ros-args ...` runs the node; flags without --ros-args: the CLI.
    sys.exit(main() if len(sys.argv) == 1 or sys.argv[1] == "--ros-args" else cli())
