"""Depth-token visualisation node: ``depth_tokens`` (+ ``change_mask/<camera>``) ->
``depth_viz/<camera>/overlay`` (codes colour-mapped and blended over the camera image, refreshed
cells outlined) and ``depth_viz/<camera>/markers`` (a MarkerArray of the grid as bars in the
camera's optical frame), for RViz (config/rviz/depth_tokens.rviz).
"""

from __future__ import annotations

from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from molmoact2_common import qos
from molmoact2_common.embodiment import load_embodiment
from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, positive
from molmoact2_msgs.msg import ChangeMask, DepthTokens

from .. import ros_conversions as rc
from ..core import depth_viz as dv
from ..core.image_codec import ImageCodecError

PARAMS = [
    ParamSpec("camera", str, "", "Camera whose depth tokens are shown (empty: the embodiment's first camera in model order)"),
    ParamSpec("embodiment", str, "", "Embodiment config, used for the default camera and its optical frame"),
    ParamSpec("frame_id", str, "", "Frame of the markers (empty: the DepthTokens header's frame, else the camera's optical frame)"),
    ParamSpec("alpha", float, 0.5, "Blend of the colour-mapped codes over the camera image", check=lambda v: 0.0 <= v <= 1.0, requirement="in [0, 1]"),
    ParamSpec("grid_distance", float, 1.0, "Distance of the marker grid in front of the camera (m)", check=positive, requirement="> 0"),
    ParamSpec("hfov_deg", float, 70.0, "Horizontal field of view the marker grid spans (degrees)", check=lambda v: 0 < v < 180, requirement="in (0, 180)"),
    ParamSpec("max_bar_height", float, 0.3, "Bar height of the largest code (m)", check=positive, requirement="> 0"),
]


class DepthVizNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("depth_viz_node", **kwargs)
        self.p = p = declare_parameters(self, PARAMS)
        camera, default_frame = p["camera"], ""
        if p["embodiment"]:
            try:
                emb = load_embodiment(p["embodiment"])
            except Exception as exc:
                raise ParameterError(f"parameter 'embodiment' = {p['embodiment']!r}: {exc}") from exc
            camera = camera or emb.model.camera_order[0]
            if camera in [c.name for c in emb.cameras]:
                default_frame = emb.camera(camera).frame_id
        if not camera:
            raise ParameterError("parameter 'camera' is empty and no 'embodiment' names a default camera")
        self.camera = camera
        self.default_frame = p["frame_id"] or default_frame or f"{camera}_camera_optical_frame"
        self.image = None
        self.changed = None
        self.published = 0
        self.overlay_pub = self.create_publisher(Image, f"depth_viz/{camera}/overlay", qos.VISUALISATION)
        self.marker_pub = self.create_publisher(MarkerArray, f"depth_viz/{camera}/markers", qos.VISUALISATION)
        self.create_subscription(DepthTokens, "depth_tokens", self._on_tokens, qos.DEPTH_TOKENS)
        self.create_subscription(ChangeMask, f"change_mask/{camera}", self._on_mask, qos.CHANGE_MASK)
        self.create_subscription(Image, f"cameras/{camera}/image_raw", self._on_image, qos.CAMERA_IMAGE)
        self.get_logger().info(f"depth tokens of camera '{camera}' -> depth_viz/{camera}/overlay, markers in '{self.default_frame}'")

    def _on_image(self, msg: Image) -> None:
        try:
            self.image = rc.image_msg_to_rgb(msg)
        except ImageCodecError as exc:
            self.get_logger().error(f"camera '{self.camera}': image skipped: {exc}", throttle_duration_sec=5.0)

    def _on_mask(self, msg: ChangeMask) -> None:
        self.changed = (int(msg.rows), int(msg.cols), list(msg.changed))

    def _on_tokens(self, msg: DepthTokens) -> None:
        if msg.camera and msg.camera != self.camera:
            return
        try:
            grid = dv.codes_to_grid(list(msg.codes), int(msg.rows), int(msg.cols), int(msg.num_codes))
        except dv.DepthVizError as exc:
            self.get_logger().error(f"depth tokens refused: {exc}", throttle_duration_sec=5.0)
            return
        rows, cols = grid.shape
        refreshed = list(msg.refreshed) if len(msg.refreshed) == rows * cols else None
        if refreshed is None and self.changed and self.changed[:2] == (rows, cols):
            refreshed = self.changed[2]  # no per-cell flags in the tokens: outline the change mask
        frame = msg.header.frame_id or self.default_frame
        stamp = msg.observation_stamp if rc.time_to_ns(msg.observation_stamp) else msg.header.stamp
        img = self.image
        ov = dv.overlay(img, grid, int(msg.num_codes), refreshed, self.p["alpha"])
        self.overlay_pub.publish(rc.rgb_to_image_msg(ov, rc.time_to_ns(stamp), frame))
        aspect = (img.shape[1] / img.shape[0]) if img is not None else cols / rows
        bars = dv.grid_bars(grid, int(msg.num_codes), refreshed, aspect, self.p["grid_distance"],
                            self.p["hfov_deg"], self.p["max_bar_height"])
        header = Header(stamp=stamp, frame_id=frame)
        arr = MarkerArray()
        for b in bars:
            m = Marker(header=header, ns=f"depth_tokens/{self.camera}", id=b.index, type=Marker.CUBE, action=Marker.ADD)
            m.pose = Pose(position=Point(x=b.position[0], y=b.position[1], z=b.position[2]), orientation=Quaternion(w=1.0))
            m.scale = Vector3(x=b.scale[0], y=b.scale[1], z=b.scale[2])
            m.color = ColorRGBA(r=b.colour[0], g=b.colour[1], b=b.colour[2], a=b.colour[3])
            m.lifetime = Duration(seconds=0).to_msg()
            m.frame_locked = True
            arr.markers.append(m)
        self.marker_pub.publish(arr)
        self.published += 1


def main(args=None) -> int:
    return run_node(DepthVizNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
