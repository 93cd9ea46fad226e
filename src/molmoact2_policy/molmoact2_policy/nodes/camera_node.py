"""Camera ingestion node: per-camera sources -> RGB8 at the embodiment's resolution ->
``cameras/<camera>/image_raw``, and the synchronised ``observation`` at a fixed rate.

Sources per camera come from the embodiment config (``cameras[].source``) or the
``source_overrides`` parameter: a V4L2/OpenCV device, a relay of an image topic (raw or
compressed, any encoding ``image_codec`` converts), a video file or an image folder. Pull sources
run in a thread each and are reconnected with back-off; topic relays resume by themselves.
Joint states are merged by name across ``joint_state_topics`` (one per arm driver). A clock that
jumps back (``molmoact2-replay --loop`` restarting /clock) resets the synchroniser, so the new loop's
frames are taken instead of being dropped as older than the last ones.
"""

from __future__ import annotations

import threading
import time

from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState

from molmoact2_common import qos
from molmoact2_common.embodiment import load_embodiment
from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, non_negative, positive
from molmoact2_msgs.msg import Observation

from .. import ros_conversions as rc
from ..core import camera_sources as cs
from ..core import image_codec
from ..core.observation_sync import ObservationSynchronizer, SyncError

PARAMS = [
    ParamSpec("embodiment", str, "", "Embodiment config name (config/embodiments/<name>.yaml) or path", check=bool, requirement="non-empty"),
    ParamSpec("cameras", "str[]", [], "Cameras to ingest, in model order (empty: the embodiment's model.camera_order)"),
    ParamSpec("source_overrides", "str[]", [], "Per-camera source overrides 'camera=type:target' (type: device, topic, compressed, video, folder)"),
    ParamSpec("publish_rate_hz", float, 0.0, "Observation rate (0: the embodiment's control_rate_hz)", check=non_negative, requirement=">= 0"),
    ParamSpec("camera_max_age", float, 0.2, "Seconds after which a camera frame is stale", check=positive, requirement="> 0"),
    ParamSpec("camera_max_skew", float, 0.1, "Seconds a camera may lag the newest camera before it is stale", check=positive, requirement="> 0"),
    ParamSpec("joint_max_age", float, 0.2, "Seconds after which a joint-state source is stale", check=positive, requirement="> 0"),
    ParamSpec("joint_max_skew", float, 0.1, "Seconds a joint-state source may lag the newest one before it is stale", check=positive, requirement="> 0"),
    ParamSpec("joint_state_topics", "str[]", [], "JointState topics, one per arm driver (empty: 'joint_states' for one arm, '<arm>/joint_states' for several)"),
    ParamSpec("resize_mode", str, "stretch", "How frames are fitted to the embodiment resolution", choices=image_codec.RESIZE_MODES),
    ParamSpec("frame_size", str, "", "WIDTHxHEIGHT every camera is published at instead of the embodiment's resolution "
              "(a simulator rendering small frames: no upscaling); '' = the embodiment's",
              check=lambda v: v == "" or _frame_size(v) is not None, requirement="'' or WIDTHxHEIGHT with both > 0"),
    ParamSpec("publish_camera_images", bool, True, "Publish each camera's converted frame on cameras/<camera>/image_raw"),
    ParamSpec("stale_report_period", float, 2.0, "Seconds between repeated staleness warnings", check=positive, requirement="> 0"),
    ParamSpec("max_backoff", float, 5.0, "Longest wait between reconnect attempts of a pull source (s)", check=positive, requirement="> 0"),
]


def _frame_size(text: str) -> tuple[int, int] | None:
    w, x, h = text.strip().lower().partition("x")
    try:
        size = (int(w), int(h))
    except ValueError:
        return None
    return size if x and min(size) > 0 else None


class CameraNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("camera_node", **kwargs)
        p = declare_parameters(self, PARAMS)
        self.p = p
        try:
            self.emb = load_embodiment(p["embodiment"])
        except Exception as exc:
            raise ParameterError(f"parameter 'embodiment' = {p['embodiment']!r}: {exc}") from exc
        cams = p["cameras"] or list(self.emb.model.camera_order)
        known = [c.name for c in self.emb.cameras]
        unknown = [c for c in cams if c not in known]
        if unknown:
            raise ParameterError(f"parameter 'cameras' names cameras the embodiment lacks: {', '.join(unknown)} (has: {', '.join(known)})")
        self.cameras = cams
        self.frame_size = _frame_size(p["frame_size"]) if p["frame_size"] else None
        try:
            overrides = cs.parse_overrides(p["source_overrides"], cams)
            self.specs = {c: overrides.get(c) or cs.parse_source(self.emb.camera(c).source, c) for c in cams}
        except ValueError as exc:
            raise ParameterError(f"parameter 'source_overrides' / embodiment camera source: {exc}") from exc
        rate = p["publish_rate_hz"] or self.emb.control_rate_hz
        topics = p["joint_state_topics"] or (
            ["joint_states"] if len(self.emb.arms) == 1 else [f"{a.name}/joint_states" for a in self.emb.arms]
        )
        self.sync = ObservationSynchronizer(
            cams, joint_sources=topics, joint_order=self.emb.joint_names,
            camera_max_age=p["camera_max_age"], camera_max_skew=p["camera_max_skew"],
            joint_max_age=p["joint_max_age"], joint_max_skew=p["joint_max_skew"],
        )
        self.lock = threading.Lock()
        self.reported_errors: set[tuple[str, str]] = set()
        self.obs_pub = self.create_publisher(Observation, "observation", qos.OBSERVATION)
        self.img_pubs = {
            c: self.create_publisher(Image, f"cameras/{c}/image_raw", qos.CAMERA_IMAGE) for c in cams
        } if p["publish_camera_images"] else {}
        self.subs = []
        for c, spec in self.specs.items():
            if spec.type == "topic":
                self.subs.append(self.create_subscription(Image, spec.target, lambda m, c=c: self._on_image(c, m), qos.CAMERA_IMAGE))
            elif spec.type == "compressed":
                self.subs.append(self.create_subscription(CompressedImage, spec.target, lambda m, c=c: self._on_compressed(c, m), qos.CAMERA_IMAGE))
        for t in topics:
            self.subs.append(self.create_subscription(JointState, t, lambda m, t=t: self._on_joints(t, m), qos.JOINT_STATE))
        self.stop_event = threading.Event()
        self.threads = []
        for c, spec in self.specs.items():
            if not spec.is_topic:
                src = cs.RetryingSource(c, cs.make_pull_source(spec), self._report, max_backoff=p["max_backoff"])
                th = threading.Thread(target=self._pull_loop, args=(c, src), name=f"camera-{c}", daemon=True)
                self.threads.append((th, src))
        self.timer = self.create_timer(1.0 / rate, self._publish_observation)
        self.published = 0
        for th, _ in self.threads:
            th.start()
        self.get_logger().info(
            f"cameras {', '.join(f'{c} <- {s.type}:{s.target}' for c, s in self.specs.items())}; "
            f"joint states from {', '.join(topics)}; observation at {rate:g} Hz"
        )

    # --- inputs -------------------------------------------------------------------------------

    def _report(self, msg: str) -> None:
        (self.get_logger().info if "connected" in msg and "disconnected" not in msg else self.get_logger().warning)(msg)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _refuse(self, camera: str, kind: str, exc: Exception) -> None:
        key = (camera, str(exc).split(" (")[0][:80])
        if key not in self.reported_errors:  # one clear error per camera and cause
            self.reported_errors.add(key)
            self.get_logger().error(f"camera '{camera}': {kind} frame skipped: {exc}")

    def _ingest(self, camera: str, rgb, stamp_ns: int, frame_id: str) -> None:
        cfg = self.emb.camera(camera)
        width, height = self.frame_size or (cfg.width, cfg.height)
        try:
            rgb = image_codec.resize_rgb(rgb, width, height, self.p["resize_mode"])
        except image_codec.ImageCodecError as exc:
            self._refuse(camera, "resize", exc)
            return
        frame_id = frame_id or cfg.frame_id
        with self.lock:
            self._note_time_locked()
            self.sync.add_frame(camera, rgb, stamp_ns, frame_id)
        pub = self.img_pubs.get(camera)
        if pub is not None:
            pub.publish(rc.rgb_to_image_msg(rgb, stamp_ns, frame_id))

    def _stamp(self, msg) -> int:
        ns = rc.time_to_ns(msg.header.stamp)
        return ns if ns > 0 else self._now_ns()

    def _on_image(self, camera: str, msg: Image) -> None:
        try:
            rgb = rc.image_msg_to_rgb(msg)
        except image_codec.ImageCodecError as exc:
            self._refuse(camera, "raw", exc)
            return
        self._ingest(camera, rgb, self._stamp(msg), msg.header.frame_id)

    def _on_compressed(self, camera: str, msg: CompressedImage) -> None:
        try:
            rgb = rc.compressed_msg_to_rgb(msg)
        except image_codec.ImageCodecError as exc:
            self._refuse(camera, "compressed", exc)
            return
        self._ingest(camera, rgb, self._stamp(msg), msg.header.frame_id)

    def _on_joints(self, topic: str, msg: JointState) -> None:
        j = rc.joint_state_to_arrays(msg)
        stamp = j.stamp_ns if j.stamp_ns > 0 else self._now_ns()
        try:
            with self.lock:
                self._note_time_locked()
                self.sync.add_joint_state(topic, j.names, j.positions, stamp, j.velocities, j.efforts)
        except SyncError as exc:
            self.get_logger().error(f"joint states on '{topic}' refused: {exc}", throttle_duration_sec=self.p["stale_report_period"])

    def _pull_loop(self, camera: str, src: cs.RetryingSource) -> None:
        while not self.stop_event.is_set():
            frame = src.poll(time.monotonic())
            if frame is None:
                self.stop_event.wait(0.05)
                continue
            # stamped at capture, not after decoding (camera_sources: ``last_capture``)
            captured_ago_ns = int(max(0.0, time.monotonic() - src.last_capture) * 1e9)
            try:
                self._ingest(camera, image_codec.as_rgb8(frame), self._now_ns() - captured_ago_ns, "")
            except image_codec.ImageCodecError as exc:
                self._refuse(camera, "pulled", exc)
        src.close()

    # --- output -------------------------------------------------------------------------------

    def _note_time_locked(self) -> None:
        """Under self.lock (the clock is read there too, so threads never note times out of order): a
        clock that jumped back resets the synchroniser before the new input is added."""
        if self.sync.note_time(self._now_ns()):
            self.get_logger().info("clock jumped back (a replay looping?): synchroniser reset, waiting for every "
                                   "camera and joint-state source again")

    def _publish_observation(self) -> None:
        with self.lock:
            self._note_time_locked()
            obs = self.sync.assemble(self._now_ns())
        reasons = obs.stale_reasons()
        if reasons:
            self.get_logger().warning(
                "stale or missing inputs: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()),
                throttle_duration_sec=self.p["stale_report_period"],
            )
        if not obs.complete:
            return
        self.obs_pub.publish(rc.synced_to_observation_msg(obs))
        self.published += 1

    def destroy_node(self):
        self.stop_event.set()
        for th, _ in self.threads:
            th.join(timeout=2.0)
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
