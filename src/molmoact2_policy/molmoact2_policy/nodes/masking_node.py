"""Masking node: MolmoAct2-Think's depth-change mask (eq. 6) as its own stage of the graph.

Subscribes ``observation`` and the policy's latched ``policy_status``. The reference frame is the
observation the policy consumed before the current one: when the policy announces the
observation it is consuming (``PolicyStatus.consuming_stamp``), that observation becomes the
reference and every newer observation gets its mask against it on arrival, so the mask is ready
before the policy's next step (the policy never waits for it). Publishes ``change_mask/<camera>``
(``ChangeMask``) and ``change_mask/<camera>/overlay`` (changed cells highlighted, for RViz).

In the composed perception process (``perception_node``) the camera node hands each Observation
to ``mask_observation`` as arrays instead (``subscribe_observation=False``): the same masks,
without serialising and taking back three frames.
"""

from __future__ import annotations

import threading

from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from molmoact2_common import qos
from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, positive
from molmoact2_msgs.msg import ChangeMask, Observation, PolicyStatus

from .. import ros_conversions as rc
from ..core import change_mask as cm
from ..core.image_codec import ImageCodecError

PARAMS = [
    ParamSpec("cameras", "str[]", [], "Cameras to mask (empty: every camera of the observation; the model itself masks only its first)"),
    ParamSpec("rows", int, cm.GRID, "Grid rows (MolmoAct2-Think: 10)", check=positive, requirement="> 0"),
    ParamSpec("cols", int, cm.GRID, "Grid columns (MolmoAct2-Think: 10)", check=positive, requirement="> 0"),
    ParamSpec("patch_size", int, cm.PATCH_SIZE, "Patch side in pixels after resizing (MolmoAct2: 32)", check=positive, requirement="> 0"),
    ParamSpec("threshold", float, cm.THRESHOLD, "A cell changed when its cosine similarity is strictly below this",
              check=lambda v: 0.0 < v <= 1.0, requirement="in (0, 1]"),
    ParamSpec("history", int, 16, "Observations kept to find the one the policy consumes", check=lambda v: v >= 2, requirement=">= 2"),
    ParamSpec("publish_overlay", bool, True, "Publish change_mask/<camera>/overlay images"),
]


class MaskingNode(Node):
    def __init__(self, node_name: str = "masking_node", subscribe_observation: bool = True, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.p = p = declare_parameters(self, PARAMS)
        # observations may come from another thread (the composed process's camera sources)
        # while a policy status is handled here
        self.lock = threading.Lock()
        self.frame_ids: dict[str, str] = {}
        self.seen_first = False
        self.tracker: cm.ChangeMaskTracker | None = None
        self.pending_reference: int | None = None
        self.mask_pubs: dict[str, object] = {}
        self.overlay_pubs: dict[str, object] = {}
        self.published = 0
        if p["cameras"]:
            self._make_tracker(p["cameras"])
        # status first: when a status and an observation are ready together, the executor takes
        # them in creation order, and the reference must move before the next observation is masked
        self.create_subscription(PolicyStatus, "policy_status", self._on_status, qos.POLICY_STATUS)
        if subscribe_observation:
            self.create_subscription(Observation, "observation", self._on_observation, qos.OBSERVATION)
        self.get_logger().info(
            f"eq. (6) mask on {', '.join(p['cameras']) or 'every camera'}: {p['rows']}x{p['cols']} grid of "
            f"{p['patch_size']} px, threshold {p['threshold']}"
        )

    def _make_tracker(self, cameras: list[str]) -> None:
        try:
            self.tracker = cm.ChangeMaskTracker(cameras, self.p["rows"], self.p["cols"], self.p["threshold"],
                                                self.p["patch_size"], self.p["history"])
        except cm.ChangeMaskError as exc:
            raise ParameterError(str(exc)) from exc
        for c in cameras:
            self.mask_pubs[c] = self.create_publisher(ChangeMask, f"change_mask/{c}", qos.CHANGE_MASK)
            if self.p["publish_overlay"]:
                self.overlay_pubs[c] = self.create_publisher(Image, f"change_mask/{c}/overlay", qos.VISUALISATION)

    def _on_observation(self, msg: Observation) -> None:
        cameras = self.tracker.cameras if self.tracker is not None else list(msg.camera_names)
        images, stamps, frame_ids = {}, {}, {}
        for name, img, stamp in zip(msg.camera_names, msg.images, msg.capture_stamps):
            if name not in cameras:
                continue
            try:
                images[name] = rc.image_msg_to_rgb(img)
            except ImageCodecError as exc:
                self.get_logger().error(f"camera '{name}': frame skipped: {exc}", throttle_duration_sec=5.0)
                continue
            stamps[name] = rc.time_to_ns(stamp)
            frame_ids[name] = img.header.frame_id
        self.mask_observation(rc.time_to_ns(msg.header.stamp), list(msg.camera_names), images, stamps, frame_ids)

    def mask_observation(self, stamp_ns: int, camera_names: list[str], images: dict, capture_stamps_ns: dict[str, int],
                         frame_ids: dict[str, str]) -> None:
        """One Observation as arrays (from the subscription, or handed over in-process): buffered,
        and masked when a reference older than it is set."""
        if not self.seen_first:
            self.seen_first = True
            self.get_logger().info("first observation received")
        with self.lock:
            if self.tracker is None:
                self._make_tracker(list(camera_names))
            self.frame_ids.update(frame_ids)
            results = self.tracker.add_observation(stamp_ns, images, capture_stamps_ns)
            if self.pending_reference is not None:
                more = self.tracker.set_reference(self.pending_reference)
                if more is not None:
                    self.pending_reference = None
                    results = results + more
            self._publish(results)

    def _on_status(self, msg: PolicyStatus) -> None:
        stamp = rc.time_to_ns(msg.consuming_stamp)
        with self.lock:
            if stamp == 0 or self.tracker is None:
                self.pending_reference = stamp or None
                return
            results = self.tracker.set_reference(stamp)
            if results is None:  # not received yet (status overtook the observation)
                self.pending_reference = stamp
                return
            self.pending_reference = None
            self._publish(results)

    def _publish(self, results: list[cm.MaskResult]) -> None:
        for r in results:
            header = Header(stamp=rc.ns_to_time(r.stamp_ns), frame_id=self.frame_ids.get(r.camera, ""))
            m = ChangeMask(header=header, camera=r.camera, rows=int(r.changed.shape[0]), cols=int(r.changed.shape[1]),
                           threshold=float(self.p["threshold"]),
                           similarity=[float(x) for x in r.similarity.reshape(-1)],
                           changed=[bool(x) for x in r.changed.reshape(-1)],
                           reference_stamp=rc.ns_to_time(r.reference_stamp_ns))
            self.mask_pubs[r.camera].publish(m)
            self.published += 1
            pub = self.overlay_pubs.get(r.camera)
            if pub is not None and pub.get_subscription_count() > 0:
                pub.publish(rc.rgb_to_image_msg(cm.overlay_changed_cells(r.image, r.changed), r.stamp_ns, header.frame_id))


def main(args=None) -> int:
    return run_node(MaskingNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
