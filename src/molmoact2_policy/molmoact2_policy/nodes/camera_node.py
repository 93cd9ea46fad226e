"""Camera ingestion node: per-camera sources -> RGB8 at the embodiment's resolution ->
``cameras/<camera>/image_raw``, and the synchronised ``observation`` at a fixed rate.

Sources per camera come from the embodiment config (``cameras[].source``) or the
``source_overrides`` parameter: a V4L2/OpenCV device, a relay of an image topic (raw or
compressed, any encoding ``image_codec`` converts), a video file or an image folder. Pull sources
run in a thread each and are reconnected with back-off; topic relays resume by themselves.
Joint states are merged by name across ``joint_state_topics`` (one per arm driver). A clock that
jumps back (``molmoact2-replay --loop`` restarting /clock) resets the synchroniser, so the new loop's
frames are taken instead of being dropped as older than the last ones.

``observation_trigger``: ``timer`` sends the Observation at ``publish_rate_hz`` (a frame waits up to
one period for it); ``frames`` sends it as soon as every camera has delivered a frame since the
last one, and the timer only covers a camera that fell silent (nothing sent for 1.5 periods: the
Observation goes out flagged stale, as with ``timer``). In-process listeners
(``observation_listeners``, the composed perception process's masker) get each Observation sent
as arrays, without a round trip through the middleware.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState

from molmoact2_common import qos
from molmoact2_common.embodiment import load_embodiment
from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, non_negative, positive
from molmoact2_msgs.msg import Observation

from .. import ros_conversions as rc
from .. import wire
from ..core import camera_sources as cs
from ..core import image_codec
from ..core.observation_sync import ObservationSynchronizer, SyncedObservation, SyncError

OBSERVATION_TRIGGERS = ("timer", "frames")

PARAMS = [
    ParamSpec("embodiment", str, "", "Embodiment config name (config/embodiments/<name>.yaml) or path", check=bool, requirement="non-empty"),
    ParamSpec("cameras", "str[]", [], "Cameras to ingest, in model order (empty: the embodiment's model.camera_order)"),
    ParamSpec("source_overrides", "str[]", [], "Per-camera source overrides 'camera=type:target' (type: device, topic, compressed, video, folder)"),
    ParamSpec("publish_rate_hz", float, 0.0, "Observation rate (0: the embodiment's control_rate_hz)", check=non_negative, requirement=">= 0"),
    ParamSpec("observation_trigger", str, "timer", "timer: an Observation every 1/publish_rate_hz; frames: one as soon as every "
              "camera has a new frame (the timer then only covers a silent camera)", choices=OBSERVATION_TRIGGERS),
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
    def __init__(self, node_name: str = "camera_node", params: list[ParamSpec] = PARAMS, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        p = declare_parameters(self, params)
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
        # frames read in place from the middleware's bytes and Observations sent as bytes (wire.py),
        # each only where it reads / writes exactly what the middleware does
        self.raw_images = wire.image_codec_matches_rmw()
        self.raw_observation = wire.observation_codec_matches_rmw()
        if not (self.raw_images and self.raw_observation):
            self.get_logger().warning("this middleware's serialisation differs from wire.py's: frames and observations "
                                      "go through messages (slower)")
        self.subs = []
        for c, spec in self.specs.items():
            if spec.type == "topic" and self.raw_images:
                self.subs.append(self.create_subscription(Image, spec.target, lambda b, c=c: self._on_raw_image(c, b),
                                                          qos.CAMERA_IMAGE, raw=True))
            elif spec.type == "topic":
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
        self.period_s = 1.0 / rate
        self.on_frames = p["observation_trigger"] == "frames"
        self.fresh: set[str] = set()  # cameras with a frame since the last Observation (trigger frames)
        self.last_sent = time.monotonic()
        #: called with each Observation sent, in the sending thread (in-process consumers)
        self.observation_listeners: list[Callable[[SyncedObservation], None]] = []
        self.timer = self.create_timer(self.period_s, self._on_timer)
        self.published = 0
        for th, _ in self.threads:
            th.start()
        self.get_logger().info(
            f"cameras {', '.join(f'{c} <- {s.type}:{s.target}' for c, s in self.specs.items())}; "
            f"joint states from {', '.join(topics)}; observation "
            + ("on every complete set of new frames" if self.on_frames else f"at {rate:g} Hz")
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
            self.fresh.add(camera)
            complete_set = self.on_frames and len(self.fresh) == len(self.cameras)
            if complete_set:
                self.fresh.clear()  # claimed here: a pull thread finishing another set at once sends its own
        pub = self.img_pubs.get(camera)
        if pub is not None:
            pub.publish(rc.rgb_to_image_msg(rgb, stamp_ns, frame_id))
        if complete_set:
            self._publish_observation()

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

    def _on_raw_image(self, camera: str, raw: bytes) -> None:
        try:
            img = wire.decode_image(raw)
            rgb = img.to_rgb()
        except (wire.WireError, image_codec.ImageCodecError) as exc:
            self._refuse(camera, "raw", exc)
            return
        self._ingest(camera, rgb, img.stamp_ns if img.stamp_ns > 0 else self._now_ns(), img.frame_id)

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

    def _on_timer(self) -> None:
        # trigger frames: only when no set of new frames came for 1.5 periods (a silent camera)
        if not self.on_frames or time.monotonic() - self.last_sent > 1.5 * self.period_s:
            self._publish_observation()

    def _publish_observation(self) -> None:
        with self.lock:
            self._note_time_locked()
            obs = self.sync.assemble(self._now_ns())
            self.fresh.clear()
            self.last_sent = time.monotonic()
        reasons = obs.stale_reasons()
        if reasons:
            self.get_logger().warning(
                "stale or missing inputs: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()),
                throttle_duration_sec=self.p["stale_report_period"],
            )
        if not obs.complete:
            return
        self.obs_pub.publish(wire.encode_observation(obs) if self.raw_observation else rc.synced_to_observation_msg(obs))
        self.published += 1
        for listener in self.observation_listeners:
            listener(obs)

    def destroy_node(self):
        self.stop_event.set()
        for th, _ in self.threads:
            th.join(timeout=2.0)
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
