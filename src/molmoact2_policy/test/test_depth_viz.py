"""Depth-token visualisation: colour-mapped overlay with refreshed cells outlined, 3-D bars in
the optical frame, and the node across processes (Image + MarkerArray)."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from molmoact2_common import qos
from molmoact2_msgs.msg import DepthTokens
from molmoact2_policy import ros_conversions as rc
from molmoact2_policy.core import depth_viz as dv
from support.ros_harness import ChildProcess


def _grid():
    return (np.arange(100).reshape(10, 10) * 127 // 99).astype(np.int64)


def test_codes_are_colour_mapped_monotonically_distinct():
    g = _grid()
    col = dv.colour_codes(g, 128)
    assert col.shape == (10, 10, 3) and col.dtype == np.uint8
    assert not np.array_equal(col[0, 0], col[9, 9])


def test_overlay_blends_codes_over_the_image_and_outlines_refreshed_cells():
    img = np.full((90, 160, 3), 100, np.uint8)
    refreshed = np.zeros((10, 10), bool)
    refreshed[4, 4] = True
    out = dv.overlay(img, _grid(), 128, refreshed, alpha=0.5)
    assert out.shape == img.shape
    want = np.round(0.5 * 100 + 0.5 * dv.colour_codes(_grid(), 128)[0, 0].astype(np.float32)).astype(np.uint8)
    np.testing.assert_array_equal(out[4, 8], want)  # centre of cell (0, 0)
    assert (out[36, 64:80] == 255).all()  # top edge of cell (4, 4) outlined
    assert not (out[45, 8] == 255).all()  # an unrefreshed cell has no outline


def test_overlay_without_an_image_uses_a_canvas_and_bad_tokens_are_refused():
    assert dv.overlay(None, _grid(), 128).shape == (320, 320, 3)
    with pytest.raises(dv.DepthVizError, match="99 codes"):
        dv.codes_to_grid([0] * 99, 10, 10, 128)
    with pytest.raises(dv.DepthVizError, match=r"\[0, 128\)"):
        dv.codes_to_grid([200] * 100, 10, 10, 128)


def test_bars_lie_in_the_optical_frame_with_height_from_the_code():
    bars = dv.grid_bars(_grid(), 128, aspect=16 / 9, distance=1.0, hfov_deg=90.0, max_height=0.5)
    assert len(bars) == 100
    b0, b99 = bars[0], bars[99]
    assert b0.position[0] < 0 and b0.position[1] < 0  # top-left cell: left (-x) and up (-y)
    assert b99.position[0] > 0 and b99.position[1] > 0
    assert b99.scale[2] == pytest.approx(0.5) and b0.scale[2] < 0.01
    assert b99.position[2] + b99.scale[2] / 2 == pytest.approx(1.0)  # bars stand on the plane
    assert abs(b99.position[0] + b0.position[0]) < 1e-9  # symmetric about the optical axis


@pytest.mark.ros
def test_depth_viz_node_publishes_overlay_and_markers_in_the_camera_frame(ros):
    proc = ChildProcess.python_module("molmoact2_policy.nodes.depth_viz_node", "--ros-args",
                                      "-p", "embodiment:=yam_bimanual")
    try:
        node = ros.node("think_standin")
        tok_pub = node.create_publisher(DepthTokens, "depth_tokens", qos.DEPTH_TOKENS)
        img_pub = node.create_publisher(Image, "cameras/top/image_raw", qos.CAMERA_IMAGE)
        overlays, markers = [], []
        s1 = node.create_subscription(Image, "depth_viz/top/overlay", overlays.append, qos.VISUALISATION)
        s2 = node.create_subscription(MarkerArray, "depth_viz/top/markers", markers.append, qos.VISUALISATION)
        for s in (s1, s2):
            assert ros.wait_for_publishers(s, timeout=20), proc.output()
        assert ros.wait_for_subscribers(tok_pub, timeout=10) and ros.wait_for_subscribers(img_pub, timeout=10)
        refreshed = [i % 7 == 0 for i in range(100)]
        tokens = DepthTokens(header=Header(frame_id="top_camera_optical_frame"), camera="top", rows=10, cols=10,
                             num_codes=128, codes=[int(c) for c in _grid().reshape(-1)], refreshed=refreshed,
                             observation_stamp=rc.ns_to_time(42_000_000_000))
        frame = np.full((36, 64, 3), 80, np.uint8)

        def send():
            img_pub.publish(rc.rgb_to_image_msg(frame, 1, "top_camera_optical_frame"))
            tok_pub.publish(tokens)
            return ros.spin_until(lambda: overlays and overlays[-1].width == 64, 0.3)

        assert ros.spin_until(send, 20), proc.output()
        assert ros.spin_until(lambda: markers, 5)
        ov = overlays[-1]
        assert (ov.height, ov.encoding, ov.header.frame_id) == (36, "rgb8", "top_camera_optical_frame")
        assert rc.time_to_ns(ov.header.stamp) == 42_000_000_000
        want = dv.overlay(frame, _grid(), 128, np.array(refreshed).reshape(10, 10), 0.5)
        np.testing.assert_array_equal(rc.image_msg_to_rgb(ov), want)
        m = markers[-1].markers
        assert len(m) == 100 and all(x.header.frame_id == "top_camera_optical_frame" for x in m)
        assert m[99].scale.z > m[0].scale.z and m[0].color.a == 1.0 and m[1].color.a == 0.5
    finally:
        assert proc.stop() in (0, -2), proc.output()
