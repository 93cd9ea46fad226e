"""The policy node: MolmoAct2 behind a lifecycle node (thin wrapper around ``core.policy_runtime``).

Lifecycle: configure loads the backend (hf / lerobot / remote), checks the checkpoint's norm tag,
camera set, state size and action space against the embodiment config, and runs a warm-up call
(excluded from statistics); activate starts inferring (a new episode); deactivate stops publishing
(``action_chunk`` and ``depth_tokens`` are lifecycle publishers: an inactive node cannot publish);
cleanup releases the model.

An observation is refused, naming what is wrong, when a camera or an arm's joint state is flagged
stale, or older than ``max_age_s`` / ``joint_state_max_age_s``, or one arm's joint state lags the
other's by more than ``joint_state_max_skew_s``.

Topics (relative names; namespace per robot):
  subscribes  observation (molmoact2_msgs/Observation, newest wins), instruction (std_msgs/String,
              latched), chunk_request (std_msgs/Empty: on_demand mode, the executor asks for a chunk)
  publishes   action_chunk (ActionChunk, wire units), depth_tokens (DepthTokens, Think only),
              policy_status (PolicyStatus, latched; consuming_stamp = capture stamp of the main camera
              of the observation whose inference just started), /diagnostics
  also subscribes estop (std_msgs/Bool): true starts a new episode (nothing computed before it is published)

chunk_mode rtc: each request carries the previous chunk's not-yet-executed steps (model units, re-timed
to the new observation's stamp) and the inference delay in steps (a high percentile of recent
capture -> publish latencies), with LeRobot's RTC parameters (``rtc.*``); see ``core.rtc``.
Services: set_instruction (SetInstruction; a new instruction starts a new episode), ~/start, ~/stop,
~/reset, ~/request_chunk (std_srvs/Trigger).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.serialization import deserialize_message
from std_msgs.msg import Bool, Empty, String
from std_srvs.srv import Trigger

from molmoact2_common import qos
from molmoact2_common.lifecycle import StackLifecycleNode
from molmoact2_common.embodiment import EmbodimentError, load_embodiment
from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, non_negative, positive
from molmoact2_msgs.msg import ActionChunk, DepthTokens, Observation, PolicyStatus
from molmoact2_msgs.srv import SetInstruction

from ..core.backends import BACKEND_KINDS, BackendError, BackendUnavailable, PolicyRequest, make_backend
from ..core.policy_io import PolicyIO, PolicyIOError
from ..core.backends.base import RTC_SCHEDULES
from ..core.policy_runtime import (ERROR, IDLE, PAUSED, RATE_MODES, RUNNING, WARMING, ChunkOutput,
                                   ObservationInput, PolicyRuntime, RuntimeConfig)
from ..core.rtc import CHUNK_MODES, RtcSettings
from ..ros_conversions import ActionChunkSerializer, ns_to_time, observation_msg_to_arrays

STATE_CODES = {IDLE: PolicyStatus.STATE_IDLE, WARMING: PolicyStatus.STATE_WARMING, RUNNING: PolicyStatus.STATE_RUNNING,
               PAUSED: PolicyStatus.STATE_PAUSED, ERROR: PolicyStatus.STATE_ERROR}

PARAMS = [
    ParamSpec("embodiment", str, "so101", "embodiment config name (config/embodiments/<name>.yaml) or path"),
    ParamSpec("norm_tag", str, "", "norm tag ('' = the embodiment's model.norm_tag)"),
    ParamSpec("backend", str, "hf", "how the model runs", choices=BACKEND_KINDS),
    ParamSpec("checkpoint", str, "", "hf: local HF checkpoint directory; lerobot: local LeRobot policy directory"),
    ParamSpec("device", str, "cpu", "torch device (cpu, cuda, cuda:0)"),
    ParamSpec("dtype", str, "float32", "model dtype", choices=("float32", "bfloat16", "float16")),
    ParamSpec("action_mode", str, "continuous", "flow-matching expert or OpenFAST tokens", choices=("continuous", "discrete")),
    ParamSpec("think", bool, False, "MolmoAct2-Think depth reasoning (needs a Think checkpoint)"),
    ParamSpec("adaptive_depth", bool, True, "Think: re-predict only the depth cells whose image patch changed (eq. 6)"),
    ParamSpec("num_steps", int, 0, "flow-matching steps (0 = the checkpoint's default)", non_negative, ">= 0"),
    ParamSpec("n_action_steps", int, 0, "steps per chunk (0 = the norm tag's n_action_steps)", non_negative, ">= 0"),
    ParamSpec("cuda_graph", bool, False, "CUDA graphs for the flow loop and depth decoding (CUDA only)"),
    ParamSpec("action_tokenizer", str, "", "discrete mode: local OpenFAST tokenizer directory ('' = <checkpoint>/action_tokenizer)"),
    ParamSpec("num_threads", int, 0, "torch CPU threads (0 = torch's default)", non_negative, ">= 0"),
    ParamSpec("remote_url", str, "http://127.0.0.1:8000", "remote: base URL of an /act server"),
    ParamSpec("remote_protocol", str, "auto", "remote: request keys (droid: external_cam/wrist_cam; yam: top_cam/left_cam/right_cam; generic: <camera>_cam)",
              choices=("auto", "droid", "yam", "generic")),
    ParamSpec("remote_encoding", str, "json", "remote: json (json_numpy), jpeg (images_jpeg) or binary (our server's faster encoding)",
              choices=("json", "jpeg", "binary")),
    ParamSpec("remote_timeout_s", float, 2.0, "remote: request timeout, seconds", positive, "> 0"),
    ParamSpec("remote_token", str, "", "remote: bearer token for a server bound beyond localhost (empty: the MOLMOACT2_ACT_TOKEN environment variable)"),
    ParamSpec("backend_options", str, "", "JSON object of extra backend options"),
    ParamSpec("rate_mode", str, "max", "max: as fast as possible; fixed: at most rate_hz; on_demand: one chunk per request", choices=RATE_MODES),
    ParamSpec("rate_hz", float, 10.0, "fixed rate mode: chunks per second", positive, "> 0"),
    ParamSpec("max_age_s", float, 0.5, "refuse observations whose camera frames are older than this (0 = no check)", non_negative, ">= 0"),
    ParamSpec("joint_state_max_age_s", float, 0.2,
              "refuse observations whose joint state from any arm's driver is older than this, naming the source "
              "(0 = no check; 0.2 s = 6 periods at 30 Hz)", non_negative, ">= 0"),
    ParamSpec("joint_state_max_skew_s", float, 0.1,
              "refuse observations where one arm's joint state lags the other arm's by more than this, naming the "
              "source (0 = no check)", non_negative, ">= 0"),
    ParamSpec("episode_gap_s", float, 2.0, "a gap in observations longer than this starts a new episode (0 = never)", non_negative, ">= 0"),
    ParamSpec("max_episode_s", float, 0.0, "stop inferring after an episode this long (0 = unlimited)", non_negative, ">= 0"),
    ParamSpec("seed", int, -1, "flow noise seed for every call (-1 = random); for parity tests and replay", lambda v: v >= -1, ">= -1"),
    ParamSpec("warmup", bool, True, "run one warm-up inference at configure (excluded from statistics)"),
    ParamSpec("retry_initial_s", float, 0.2, "backoff after a failed inference, first delay", positive, "> 0"),
    ParamSpec("retry_max_s", float, 5.0, "backoff after failed inferences, largest delay", positive, "> 0"),
    ParamSpec("status_rate_hz", float, 1.0, "policy_status and /diagnostics rate (status is also published on every change)", positive, "> 0"),
    ParamSpec("chunk_mode", str, "independent",
              "independent: every chunk on its own (the driver blends them: replace, crossfade, ensemble); rtc: "
              "real-time chunking, each chunk generated as the continuation of the one being executed (run the "
              "driver with blending:=replace)", choices=CHUNK_MODES),
    ParamSpec("rtc.execution_horizon", int, 10, "rtc: LeRobot RTCConfig.execution_horizon, steps of the previous chunk "
              "that guide the new one (the first inference_delay frozen, then decaying weights)", positive, "> 0"),
    ParamSpec("rtc.max_guidance_weight", float, 10.0, "rtc: LeRobot RTCConfig.max_guidance_weight", positive, "> 0"),
    ParamSpec("rtc.prefix_attention_schedule", str, "LINEAR", "rtc: LeRobot RTCConfig.prefix_attention_schedule",
              choices=RTC_SCHEDULES),
    ParamSpec("rtc.latency_window", int, 30, "rtc: chunks over which the inference delay is estimated", positive, "> 0"),
    ParamSpec("rtc.latency_percentile", float, 95.0, "rtc: the delay is this percentile of the window's latencies "
              "(observation capture -> chunk published), in control steps rounded up",
              lambda v: 0 < v <= 100, "in (0, 100]"),
    ParamSpec("rtc.prefix_blend", bool, False, "rtc (ours, not LeRobot's): blend the generated chunk onto the prefix "
              "with the guidance's weights, so the frozen steps are the prefix exactly and the guided ones join it"),
    ParamSpec("instruction", str, "", "initial instruction ('' = wait for the instruction topic or set_instruction)"),
    ParamSpec("autostart", str, "none", "lifecycle transitions to run at start", choices=("none", "configure", "activate")),
]


class _Sink:
    """RuntimeSink: publishes from the inference thread."""

    def __init__(self, node: "PolicyNode") -> None:
        self.node = node

    def consuming(self, stamp_ns: int) -> None:
        self.node._consuming_ns = stamp_ns
        self.node._status_thread.kick()

    def chunk(self, out: ChunkOutput) -> None:
        self.node._publish_chunk(out)

    def status(self, state: str, message: str) -> None:
        if state == ERROR:
            self.node.get_logger().error(message, throttle_duration_sec=2.0)
        self.node._publish_status()

    def warn(self, key: str, message: str) -> None:
        self.node._refusals += 1
        if key == "stale":
            self.node.get_logger().warning(message, throttle_duration_sec=2.0)
        else:
            self.node.get_logger().warning(message, throttle_duration_sec=1.0)


class _StatusThread:
    """Publishes the consuming status beside the model call instead of before it.

    The masking node needs ``consuming_stamp`` before the policy's *next* inference, not before
    this one's model call: publishing it from here takes its ~0.1-0.2 ms off the path from
    observation to chunk (the inference thread only sets an event; this thread gets the GIL while
    the model runs in torch).
    """

    def __init__(self, publish, on_error) -> None:
        self._publish = publish
        self._on_error = on_error
        self._event = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="policy-status", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._event.set()

    def _run(self) -> None:
        while True:
            self._event.wait()
            self._event.clear()
            if self._stop:
                return
            try:
                self._publish()
            except Exception as exc:  # noqa: BLE001 - one failed publish must not end status publishing
                if self._stop:
                    return
                self._on_error(exc)

    def stop(self) -> None:
        self._stop = True
        self._event.set()
        self._thread.join(2.0)


class PolicyNode(StackLifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("policy", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        self.backend = None
        self.io: PolicyIO | None = None
        self.runtime: PolicyRuntime | None = None
        self.model_id = ""
        self.mode = ""
        self._consuming_ns = 0
        self._refusals = 0
        # per chunk: stage timings, the publish call, and the node's overhead (callback entry -> publish
        # returned, minus the model call); read by bench/bench_inference.py
        self.timing_log: deque[dict] = deque(maxlen=2000)
        self._main_frame = ""
        self._chunk_wire: ActionChunkSerializer | None = None
        # status is published from three threads (inference, status, executor timer): one at a time,
        # so the latched message is always the newest state
        self._status_lock = threading.Lock()
        self._status_thread = _StatusThread(self._publish_status, lambda exc: self.get_logger().error(
            f"policy_status publish failed: {exc}", throttle_duration_sec=2.0))
        self.status_pub = self.create_publisher(PolicyStatus, "policy_status", qos.POLICY_STATUS)
        # lifecycle publishers: enabled by on_activate, disabled by on_deactivate, so an inactive node
        # cannot publish a chunk whatever its inference thread does
        self.chunk_pub = self.create_lifecycle_publisher(ActionChunk, "action_chunk", qos.ACTION_CHUNK)
        self.depth_pub = self.create_lifecycle_publisher(DepthTokens, "depth_tokens", qos.DEPTH_TOKENS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self.create_subscription(Observation, "observation", self._on_observation, qos.OBSERVATION, raw=True)
        self.create_subscription(String, "instruction", self._on_instruction_topic, qos.INSTRUCTION)
        # an e-stop starts a new episode: the arm held, so no chunk computed before it (nor an RTC
        # prefix from it) is published after it
        self.create_subscription(Bool, "estop", self._on_estop, qos.ESTOP)
        self.create_subscription(Empty, "chunk_request", lambda _m: self.runtime and self.runtime.request_chunk(), qos.ACTION_CHUNK)
        self.create_service(SetInstruction, "set_instruction", self._on_set_instruction)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(Trigger, "~/stop", self._on_stop)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(Trigger, "~/request_chunk", self._on_request_chunk)
        self._pending_instruction = self.p["instruction"]
        self.create_timer(1.0 / self.p["status_rate_hz"], self._periodic)
        self._publish_status()
        self.schedule_autostart(self.p["autostart"])

    # ------------------------------------------------------------------ lifecycle
    def _backend_options(self, io: PolicyIO) -> dict:
        p = self.p
        kind = p["backend"]
        if kind == "remote":
            opts = dict(url=p["remote_url"], protocol=p["remote_protocol"], encoding=p["remote_encoding"],
                        timeout_s=p["remote_timeout_s"],
                        # the token may come from the environment, so it never shows in a parameter dump
                        token=p["remote_token"] or os.environ.get("MOLMOACT2_ACT_TOKEN") or None)
        else:
            opts = dict(checkpoint=p["checkpoint"], device=p["device"], dtype=p["dtype"], action_mode=p["action_mode"],
                        num_steps=p["num_steps"] or None, n_action_steps=p["n_action_steps"] or None,
                        cuda_graph=p["cuda_graph"], num_threads=p["num_threads"] or None)
            if kind == "hf":
                opts.update(think=p["think"], adaptive_depth=p["adaptive_depth"],
                            action_tokenizer=p["action_tokenizer"] or None)
            elif p["think"]:
                raise ParameterError("parameter 'think' = True: the lerobot backend does not support Think; use backend 'hf'")
            else:
                opts.update(norm_tag=io.norm_tag, camera_names=list(io.camera_order),
                            action_tokenizer=p["action_tokenizer"] or None)
        if p["backend_options"]:
            try:
                extra = json.loads(p["backend_options"])
            except json.JSONDecodeError as exc:
                raise ParameterError(f"parameter 'backend_options' is not JSON: {exc}") from None
            if not isinstance(extra, dict):
                raise ParameterError("parameter 'backend_options' must be a JSON object")
            opts.update(extra)
        return opts

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        log = self.get_logger()
        self._set_static_status(WARMING, "loading the model")
        try:
            self.p = declare_parameters(self, PARAMS)
            emb = load_embodiment(self.p["embodiment"])
            io = PolicyIO(emb, self.p["norm_tag"] or None)
            self._main_frame = emb.camera(io.camera_order[0]).frame_id
            opts = self._backend_options(io)
            if self.p["backend"] in ("hf", "lerobot") and not self.p["checkpoint"]:
                raise ParameterError("parameter 'checkpoint' is empty: give the local checkpoint directory")
            t0 = time.perf_counter()
            backend = make_backend(self.p["backend"], **opts)
            info = backend.info()
            io.check_backend(info)
            if self.p["chunk_mode"] == "rtc" and not info.rtc:
                raise ParameterError(self._rtc_refusal(info))
            self.model_id = info.model_id
            self.mode = info.mode
            log.info(f"loaded {info.kind} backend '{info.model_id}' ({info.mode}) in {time.perf_counter() - t0:.2f} s; "
                     f"norm tag '{io.norm_tag}', cameras {io.camera_order}, {len(io.state_joints)} state / "
                     f"{len(io.action_joints)} action joints")
            if self.p["warmup"]:
                self._warmup(backend, io, emb)
        except (EmbodimentError, ParameterError, PolicyIOError, BackendError, ValueError) as exc:
            log.error(f"configure failed: {exc}")
            self._set_static_status(ERROR, f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.backend, self.io = backend, io
        wire = ActionChunkSerializer(io.action_joints, self.model_id)
        self._chunk_wire = wire if wire.matches_rmw() else None
        if self._chunk_wire is None:
            log.warning("this middleware serialises ActionChunk differently: chunks are published as messages")
        cfg = RuntimeConfig(rate_mode=self.p["rate_mode"], rate_hz=self.p["rate_hz"], max_age_s=self.p["max_age_s"],
                            joint_state_max_age_s=self.p["joint_state_max_age_s"],
                            joint_state_max_skew_s=self.p["joint_state_max_skew_s"],
                            episode_gap_s=self.p["episode_gap_s"], max_episode_s=self.p["max_episode_s"],
                            seed=None if self.p["seed"] < 0 else self.p["seed"],
                            retry_initial_s=self.p["retry_initial_s"], retry_max_s=self.p["retry_max_s"],
                            chunk_mode=self.p["chunk_mode"], execute_steps=int(emb.chunk.get("execute_steps", 0) or 0),
                            rtc=RtcSettings(execution_horizon=self.p["rtc.execution_horizon"],
                                            max_guidance_weight=self.p["rtc.max_guidance_weight"],
                                            prefix_attention_schedule=self.p["rtc.prefix_attention_schedule"],
                                            latency_window=self.p["rtc.latency_window"],
                                            latency_percentile=self.p["rtc.latency_percentile"],
                                            prefix_blend=self.p["rtc.prefix_blend"]))
        self.runtime = PolicyRuntime(backend, io, cfg, _Sink(self), now_ns=lambda: self.get_clock().now().nanoseconds)
        self.runtime.state = IDLE
        if self._pending_instruction:
            self.runtime.set_instruction(self._pending_instruction)
        self.runtime.start_thread()
        self._set_static_status(IDLE, "configured")
        return TransitionCallbackReturn.SUCCESS

    def _rtc_refusal(self, info) -> str:
        p = self.p
        head = "parameter 'chunk_mode' = rtc: "
        if info.action_mode == "discrete":
            return (head + "action_mode 'discrete' decodes tokens, there is no flow to guide (LeRobot: RTC is only "
                    "supported for continuous MolmoAct2 inference); use action_mode continuous or chunk_mode independent")
        if p["backend"] == "remote":
            return (head + f"the /act server at {p['remote_url']} does not take real-time chunking inputs (its health "
                    "check has no \"rtc\": true; allenai's servers have none): serve the model with "
                    "molmoact2-act-server, or use chunk_mode independent")
        why = info.extra.get("rtc_refusal") or "this backend does not take real-time chunking inputs"
        return head + why

    def _warmup(self, backend, io: PolicyIO, emb) -> None:
        """One call on a synthetic observation: excluded from statistics (cold latency made arms jump)."""
        images = [np.zeros((c.height, c.width, 3), np.uint8) for c in emb.cameras_in_model_order()]
        mid = []
        for j in io.state_joints:
            arm = next(a for a in emb.arms if j in a.joints)
            lo, hi = arm.position_limits[j]
            mid.append((lo + hi) / 2.0)
        state = io.state_to_model(io.state_joints, mid)
        t0 = time.perf_counter()
        try:
            backend.predict(PolicyRequest(images=images, state=state, instruction="warm up", norm_tag=io.norm_tag,
                                          camera_names=list(io.camera_order), seed=0))
        except BackendUnavailable as exc:  # a remote server may come up later: the loop retries
            self.get_logger().warning(f"warm-up call failed ({exc}); inference will retry with backoff")
            return
        finally:
            backend.reset()
        self.get_logger().info(f"warm-up inference took {time.perf_counter() - t0:.3f} s (excluded from statistics)")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enable the lifecycle publishers before the first chunk can come
        self.runtime.activate()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.runtime.deactivate("deactivated")
        return super().on_deactivate(state)

    def _teardown(self) -> None:
        if self.runtime is not None:
            self.runtime.shutdown()
            self.runtime = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        self._set_static_status(IDLE, "cleaned up")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self):
        self._teardown()
        self._status_thread.stop()
        return super().destroy_node()

    # ------------------------------------------------------------------ inputs
    def _on_observation(self, data: bytes) -> None:
        t0 = time.perf_counter()
        try:
            msg = deserialize_message(data, Observation)
        except Exception as exc:  # a malformed message never kills the node
            self.get_logger().warning(f"cannot deserialise an Observation: {exc}", throttle_duration_sec=2.0)
            return
        t1 = time.perf_counter()
        if self.runtime is None or not self.runtime.active:
            return
        try:
            arr = observation_msg_to_arrays(msg)
        except ValueError as exc:
            self._refusals += 1
            self.get_logger().warning(f"observation refused: {exc}", throttle_duration_sec=2.0)
            return
        names = arr.camera_names
        n_cams = len(names)
        captures = arr.capture_stamps_ns
        if len(captures) != n_cams:
            captures = [arr.stamp_ns] * n_cams
        main = self.io.camera_order[0]
        stamp = captures[names.index(main)] if main in names else arr.stamp_ns
        stale = arr.camera_stale
        if len(stale) < n_cams:
            stale = stale + [False] * (n_cams - len(stale))
        sources, source_stamps = arr.joint_sources, arr.joint_source_stamps_ns
        if len(source_stamps) != len(sources):
            self._refusals += 1
            self.get_logger().warning(f"observation refused: {len(sources)} joint-state sources "
                                   f"({', '.join(sources)}) but {len(source_stamps)} stamps", throttle_duration_sec=2.0)
            return
        if not sources and arr.joints.stamp_ns > 0:  # not from the camera node: the merged state's own stamp
            sources, source_stamps = ["joint_state"], [arr.joints.stamp_ns]
        source_stale = arr.joint_source_stale[:len(sources)]
        if len(source_stale) < len(sources):
            source_stale = source_stale + [False] * (len(sources) - len(source_stale))
        # the arrays' lists are fresh per message: handed over as they are, no copies
        handoff = self.runtime.offer_observation(ObservationInput(
            stamp_ns=stamp, camera_names=names, images=arr.images, capture_stamps_ns=captures,
            camera_stale=stale, joint_names=arr.joints.names, positions=arr.joints.positions,
            received_mono=t1, deserialise_s=t1 - t0, joint_sources=sources, joint_source_stamps_ns=source_stamps,
            joint_source_stale=source_stale))
        if handoff:
            # Park this (executor) thread until the woken inference thread reaches the model call
            # (at most 2 ms): it then has the GIL to itself on the way, instead of waiting for the
            # executor's own bookkeeping (before: time.sleep(0), which yields only if the worker
            # is already waiting for the GIL).
            self.runtime.wait_handoff(0.002)

    def _apply_instruction(self, text: str) -> None:
        self._pending_instruction = text
        if self.runtime is not None:
            self.runtime.set_instruction(text)
        self.get_logger().info(f"instruction: {text!r} (new episode)")

    def _on_estop(self, msg: Bool) -> None:
        if msg.data and self.runtime is not None:
            self.runtime.reset()
            self.get_logger().warning("e-stop: new episode (a chunk under way is discarded, no RTC prefix carried over)")

    def _on_instruction_topic(self, msg: String) -> None:
        self._apply_instruction(msg.data)

    def _on_set_instruction(self, request, response):
        text = request.instruction.strip()
        if not text:
            response.success, response.message = False, "empty instruction refused"
            return response
        self._apply_instruction(text)
        response.success, response.message = True, "instruction set; new episode"
        return response

    def _lifecycle_active(self) -> bool:
        return self.runtime is not None and self._state_machine.current_state[1] == "active"

    def _on_start(self, request, response):
        if not self._lifecycle_active():
            response.success, response.message = False, "node is not active (configure and activate it first)"
            return response
        self.runtime.activate()
        response.success, response.message = True, "inference started (new episode)"
        return response

    def _on_stop(self, request, response):
        if self.runtime is None:
            response.success, response.message = False, "node is not configured"
            return response
        self.runtime.deactivate("stopped by ~/stop")
        response.success, response.message = True, "inference stopped; nothing is published"
        return response

    def _on_reset(self, request, response):
        if self.runtime is None:
            response.success, response.message = False, "node is not configured"
            return response
        self.runtime.reset()
        response.success, response.message = True, "new episode: depth cache dropped"
        return response

    def _on_request_chunk(self, request, response):
        if self.runtime is None:
            response.success, response.message = False, "node is not configured"
            return response
        self.runtime.request_chunk()
        response.success, response.message = True, "chunk requested"
        return response

    # ------------------------------------------------------------------ outputs
    def _publish_chunk(self, out: ChunkOutput) -> None:
        t0 = time.perf_counter()
        wire = self._chunk_wire
        if wire is not None and list(out.joint_names) == wire.joint_names:
            self.chunk_pub.publish(wire.serialize(out.stamp_ns, out.positions, out.dt, out.sequence, out.latency_s))
        else:
            wire = ActionChunkSerializer(out.joint_names, self.model_id)
            self.chunk_pub.publish(wire.message(out.stamp_ns, out.positions, out.dt, out.sequence, out.latency_s))
        if out.depth_codes is not None:
            d = DepthTokens()
            d.header.stamp = self.get_clock().now().to_msg()
            d.header.frame_id = self._main_frame
            d.camera = self.io.camera_order[0]
            d.rows, d.cols, d.num_codes = int(out.depth_rows), int(out.depth_cols), int(out.num_depth_codes)
            d.codes = out.depth_codes.astype(np.uint8).tobytes()
            d.refreshed = [bool(x) for x in out.depth_refreshed]
            d.observation_stamp = ns_to_time(out.stamp_ns)
            self.depth_pub.publish(d)
        t1 = time.perf_counter()
        self.timing_log.append({**out.timings, "publish": t1 - t0,
                                "overhead": (t1 - out.received_mono) - out.timings.get("model", 0.0)})

    def _status_msg(self, state: str, message: str) -> PolicyStatus:
        msg = PolicyStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.state = STATE_CODES.get(state, PolicyStatus.STATE_IDLE)
        msg.model = self.model_id
        msg.backend = self.p["backend"]
        msg.mode = self.mode or ("think" if self.p["think"] else self.p["action_mode"])
        msg.consuming_stamp = ns_to_time(self._consuming_ns)
        r = self.runtime
        if r is not None:
            msg.last_latency, msg.p99_latency = float(r.stats.last), float(r.stats.p99)
            msg.achieved_rate, msg.chunk_count = float(r.stats.rate), int(r.stats.count)
        msg.message = message
        return msg

    def _publish_status(self) -> None:
        with self._status_lock:
            r = self.runtime
            if r is not None:
                self.status_pub.publish(self._status_msg(r.state, r.message))

    def _set_static_status(self, state: str, message: str) -> None:
        with self._status_lock:
            self._static = (state, message)
            if self.runtime is not None:
                self.runtime.state, self.runtime.message = state, message
            self.status_pub.publish(self._status_msg(state, message))

    def _periodic(self) -> None:
        r = self.runtime
        with self._status_lock:
            state, message = (r.state, r.message) if r is not None else getattr(self, "_static", (IDLE, "unconfigured"))
            self.status_pub.publish(self._status_msg(state, message))
        st = DiagnosticStatus()
        st.name = f"{self.get_fully_qualified_name()}: policy"
        st.hardware_id = self.model_id
        st.level = {ERROR: DiagnosticStatus.ERROR, PAUSED: DiagnosticStatus.WARN}.get(state, DiagnosticStatus.OK)
        st.message = message or state
        vals = {"state": state, "backend": self.p["backend"], "mode": self.mode, "refused_observations": self._refusals}
        if r is not None:
            vals.update(chunks=r.stats.count, last_latency_s=f"{r.stats.last:.4f}", p99_latency_s=f"{r.stats.p99:.4f}",
                        achieved_rate_hz=f"{r.stats.rate:.2f}", episode=r.episode)
        st.values = [KeyValue(key=k, value=str(v)) for k, v in vals.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        self.diag_pub.publish(arr)


def main(args=None) -> int:
    return run_node(PolicyNode, args, multithreaded=False)


if __name__ == "__main__":
    raise SystemExit(main())
