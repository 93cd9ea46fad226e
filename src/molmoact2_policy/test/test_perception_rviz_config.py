"""config/rviz: every topic an RViz config names exists, with the display's message type, in the
perception graph it belongs to, and its fixed frame is the frame those messages are stamped in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from molmoact2_common import qos
from molmoact2_msgs.msg import DepthTokens
from molmoact2_policy import ros_conversions as rc
from molmoact2_policy.core import image_codec
from support.ros_harness import ROOT, ChildProcess

pytestmark = pytest.mark.ros

DISPLAY_TYPES = {
    "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
    "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
}


def _configs():
    return sorted((ROOT / "config" / "rviz").glob("*.rviz"))


def _topics(cfg: dict) -> dict[str, str]:
    out = {}
    for d in cfg["Visualization Manager"]["Displays"]:
        if d["Class"] in DISPLAY_TYPES:
            out[d["Topic"]["Value"]] = DISPLAY_TYPES[d["Class"]]
        elif "Topic" in d:
            raise AssertionError(f"display {d['Name']} ({d['Class']}) has a topic but no known type")
    return out


def test_rviz_configs_parse_and_name_topics_and_a_fixed_frame():
    assert _configs()
    for path in _configs():
        cfg = yaml.safe_load(path.read_text())
        assert _topics(cfg), path
        assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"], path


def test_every_topic_and_the_fixed_frame_of_the_rviz_config_exist_in_the_perception_graph(ros, tmp_path):
    cfg = yaml.safe_load((ROOT / "config/rviz/depth_tokens.rviz").read_text())
    wanted = _topics(cfg)
    fixed_frame = cfg["Visualization Manager"]["Global Options"]["Fixed Frame"]
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "0.png").write_bytes(image_codec.encode_compressed(np.full((36, 64, 3), 90, np.uint8), "png"))
    src = [f"{c}=folder:{folder}" for c in ("top", "left", "right")]
    procs = [
        ChildProcess.python_module("molmoact2_policy.nodes.camera_node", "--ros-args", "-p", "embodiment:=yam_bimanual",
                                   "-p", f"source_overrides:={src!r}".replace('"', "'"), "-p", "publish_rate_hz:=5.0"),
        ChildProcess.python_module("molmoact2_policy.nodes.masking_node", "--ros-args", "-p", "cameras:=['top']"),
        ChildProcess.python_module("molmoact2_policy.nodes.depth_viz_node", "--ros-args", "-p", "embodiment:=yam_bimanual"),
    ]
    try:
        node = ros.node("rviz_check")

        def graph():
            return {name: types for name, types in node.get_topic_names_and_types()}

        def all_present():
            g = graph()
            return all(t in g and wanted[t] in g[t] for t in wanted)

        assert ros.spin_until(all_present, 30), (
            f"missing: {[t for t in wanted if t not in graph()]}\n" + "\n".join(p.output() for p in procs)
        )
        # the fixed frame: the depth-token markers are stamped in it
        markers = []
        node.create_subscription(MarkerArray, "/depth_viz/top/markers", markers.append, qos.VISUALISATION)
        tok = node.create_publisher(DepthTokens, "/depth_tokens", qos.DEPTH_TOKENS)
        assert ros.wait_for_subscribers(tok, timeout=10)
        msg = DepthTokens(header=Header(), camera="top", rows=10, cols=10, num_codes=128, codes=[5] * 100,
                          refreshed=[True] * 100, observation_stamp=rc.ns_to_time(1))

        def send():
            tok.publish(msg)
            return ros.spin_until(lambda: bool(markers), 0.3)

        assert ros.spin_until(send, 10)
        assert {m.header.frame_id for m in markers[-1].markers} == {fixed_frame}
    finally:
        for p in procs:
            p.stop()
