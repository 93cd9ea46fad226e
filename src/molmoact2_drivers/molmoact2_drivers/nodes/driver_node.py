"""The arm driver: a lifecycle node per arm, a thin wrapper around ``core.driver_core.DriverCore``.

Lifecycle: configure connects the backend and reads the state (joint_states start flowing);
activate turns torque on holding the current position and enables actuation (unless dry-run);
deactivate stops executing and holds with torque on; cleanup / shutdown hold and close.

Topics (relative names: remap or namespace per arm):
  subscribes  action_chunk (molmoact2_msgs/ActionChunk), heartbeat (std_msgs/Empty),
              estop (std_msgs/Bool, volatile; true latches until ~/reset),
              teleop_target (sensor_msgs/JointState, wire units, a leader arm's targets; followed
              only with input:=teleop, through the same arming ramp and safety filter)
  publishes   joint_states (sensor_msgs/JointState, servo rate), driver_status (DriverStatus,
              latched), commanded_joint_states (what was sent, or in shadow mode would have been)
Services (std_srvs/Trigger, private): ~/start, ~/stop, ~/enable (actuation on), ~/disable
(actuation off: shadow mode, torque stays on), ~/disable_torque (explicit; warns: arms without
brakes drop), ~/reset (the operator's: clears the e-stop latch and errors), ~/clear_faults (for
automation such as the simulator's episode reset: clears errors and holds where the arm is, but
is refused while an e-stop is latched, which only ~/reset clears).

The servo loop runs on wall time (by default a dedicated thread ticking at absolute deadlines on
the monotonic clock, decoupled from the executor's callbacks; ``servo_loop:=timer`` uses an rclpy
steady timer instead) and reads the node's clock for chunk timing, so with use_sim_time a
stalled /clock makes the arm hold instead of racing or stopping its loop.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.time import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Empty
from std_srvs.srv import Trigger

from molmoact2_common import qos
from molmoact2_common.lifecycle import StackLifecycleNode
from molmoact2_common.embodiment import EmbodimentError, load_embodiment
from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, non_negative, positive
from molmoact2_msgs.msg import ActionChunk, DriverStatus

from ..core.servo_loop import run_at_deadlines, set_current_thread_realtime
from ..core.backend import BackendError
from ..core.backends import create_backend
from ..core.driver_core import ChunkInput, DriverCore, DriverState
from ..core.factory import build_driver

PARAMS = [
    ParamSpec("embodiment", str, "so101", "embodiment config name (config/embodiments/<name>.yaml) or path"),
    ParamSpec("arm", str, "", "arm name in the embodiment ('' = its only arm)"),
    ParamSpec("backend", str, "", "backend type overriding the config's arms[].backend.type ('' = as configured): kinematic, mujoco, ros2_control, feetech, i2rt, franky"),
    ParamSpec("backend_options", str, "", "JSON object overriding fields of arms[].backend, e.g. '{\"tracking\": 0.5}'"),
    ParamSpec("servo_rate_hz", float, 0.0, "command and joint_states rate; 0 = the embodiment's servo_rate_hz", non_negative, ">= 0"),
    ParamSpec("blending", str, "", "overlapping chunks: replace, crossfade or ensemble ('' = the embodiment's chunk.blending)",
              choices=("", "replace", "crossfade", "ensemble")),
    ParamSpec("crossfade_s", float, 0.2, "cross-fade duration, seconds", non_negative, ">= 0"),
    ParamSpec("ensemble_coeff", float, 0.5, "temporal ensembling: weight exp(-coeff * i), i = 0 oldest chunk", non_negative, ">= 0"),
    ParamSpec("execute_steps", int, -1, "steps of each chunk to execute (-1 = the embodiment's chunk.execute_steps, 0 = all)",
              lambda v: v >= -1, ">= -1"),
    ParamSpec("chunk_timeout_s", float, 1.0, "stale-chunk watchdog: hold when no chunk came for this long (node clock); 0 = off", non_negative, ">= 0"),
    ParamSpec("heartbeat_timeout_s", float, 0.0, "operator deadman: hold when no heartbeat for this long (wall time); 0 = off", non_negative, ">= 0"),
    ParamSpec("mode", str, "auto", "actuate, or shadow (dry run: compute and publish commanded_joint_states without actuating); auto = the embodiment's safety.shadow_by_default",
              choices=("auto", "actuate", "shadow")),
    ParamSpec("require_start", str, "auto", "motion needs an operator ~/start call: always, never, or auto (always unless the backend is simulated)",
              choices=("auto", "always", "never")),
    ParamSpec("arming_speed_scale", float, 0.5, "arming ramp speed as a fraction of each joint's velocity limit", lambda v: 0 < v <= 1, "in (0, 1]"),
    ParamSpec("joint_limit_margin_rad", float, -1.0, "margin inside the joint limits, rad (-1 = the embodiment's safety.joint_limit_margin_rad or 0)", lambda v: v >= -1, ">= -1"),
    ParamSpec("checkpoint", str, "", "local checkpoint directory whose norm stats bound every chunk target (q01/q99 of the "
              "embodiment's norm tag, widened by safety.envelope_margin); '' = no envelope from a checkpoint"),
    ParamSpec("envelope_low", "float[]", [], "envelope (q01 - margin) per joint of this arm, wire units; empty = none"),
    ParamSpec("envelope_high", "float[]", [], "envelope (q99 + margin) per joint of this arm, wire units; empty = none"),
    ParamSpec("workspace_check", bool, True, "check the embodiment's safety.workspace through forward kinematics (when configured)"),
    ParamSpec("peer_commands_topic", str, "", "the other arm's commanded_joint_states, for the minimum arm distance ('' = none: "
              "refused at configure when the embodiment sets safety.min_arm_distance_m, unless min_arm_distance_check is false)"),
    ParamSpec("min_arm_distance_check", bool, True, "check safety.min_arm_distance_m against the other arm (false only for an arm that runs alone)"),
    ParamSpec("input", str, "policy", "what the arm follows: policy (action_chunk) or teleop (teleop_target from a leader arm, "
              "same arming ramp and safety filter; chunks are then refused)", choices=("policy", "teleop")),
    ParamSpec("teleop_timeout_s", float, 0.2, "teleop watchdog: hold when the leader sent no target for this long (wall time); 0 = off",
              non_negative, ">= 0"),
    ParamSpec("status_rate_hz", float, 2.0, "driver_status rate (also published on every change)", positive, "> 0"),
    ParamSpec("autostart", str, "none", "lifecycle transitions to run at start", choices=("none", "configure", "activate")),
    ParamSpec("servo_thread_priority", int, 0, "SCHED_FIFO priority of the servo thread (1-99; 0 = normal scheduling); needs CAP_SYS_NICE or an rtprio limit",
              lambda v: 0 <= v <= 99, "in 0..99"),
    ParamSpec("servo_loop", str, "thread", "servo loop: a dedicated thread with absolute deadlines (lower jitter), or an rclpy steady timer",
              choices=("thread", "timer")),
]


class DriverNode(StackLifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("arm_driver", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        self.core: DriverCore | None = None
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._timer = None
        self._status_timer = None
        self._loop_thread: threading.Thread | None = None
        self._loop_stop = threading.Event()
        self._last_status_key = None
        # joint_states flow from configure on (the arm's state is useful before it may move);
        # commanded_joint_states is a lifecycle publisher: an inactive driver publishes no commands
        self.js_pub = self.create_publisher(JointState, "joint_states", qos.JOINT_STATE)
        self.cmd_pub = self.create_lifecycle_publisher(JointState, "commanded_joint_states", qos.JOINT_STATE)
        self.status_pub = self.create_publisher(DriverStatus, "driver_status", qos.DRIVER_STATUS)
        self.create_subscription(ActionChunk, "action_chunk", self._on_chunk, qos.ACTION_CHUNK)
        self.create_subscription(Empty, "heartbeat", self._on_heartbeat, qos.HEARTBEAT)
        self.create_subscription(Bool, "estop", self._on_estop, qos.ESTOP)
        self.create_subscription(JointState, "teleop_target", self._on_teleop_target, qos.JOINT_STATE)
        for name, fn in (("start", "start"), ("stop", "stop"), ("enable", "enable"), ("disable", "disable"),
                         ("disable_torque", "disable_torque"), ("reset", "reset"),
                         ("clear_faults", "clear_faults")):
            self.create_service(Trigger, f"~/{name}", self._service(fn))
        self._peer_positions: dict[str, float] = {}
        self._peer_received: float | None = None  # time.monotonic() of the newest peer command
        self.backend_name = ""
        self.arm_name = ""
        self.schedule_autostart(self.p["autostart"], clock=self._steady)

    # -- lifecycle --------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            embodiment = load_embodiment(self.p["embodiment"])
            arm_name = self.p["arm"] or ""
            if not arm_name:
                if len(embodiment.arms) != 1:
                    raise ParameterError(f"parameter 'arm' = '': embodiment '{embodiment.name}' has arms "
                                         f"{', '.join(a.name for a in embodiment.arms)}: name one")
                arm_name = embodiment.arms[0].name
            arm = embodiment.arm(arm_name)
            try:
                options = json.loads(self.p["backend_options"]) if self.p["backend_options"] else {}
            except json.JSONDecodeError as exc:
                raise ParameterError(f"parameter 'backend_options': not JSON: {exc}") from None
            if not isinstance(options, dict):
                raise ParameterError("parameter 'backend_options': must be a JSON object")
            backend = create_backend(arm, options, type_name=self.p["backend"] or None, node=self,
                                     embodiment=embodiment, clock=self._now)
            self.backend_name = type(backend).__name__
            if self.p["peer_commands_topic"]:
                self.create_subscription(JointState, self.p["peer_commands_topic"], self._on_peer, qos.JOINT_STATE)
            self.core = build_driver(embodiment, arm, backend, self.p,
                                     self._peer_vector if self.p["peer_commands_topic"] else None)
            self.arm_name = arm.name
            reading = self.core.configure()
        except (EmbodimentError, ParameterError, BackendError, ValueError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self.core = None
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(
            f"configured arm '{arm.name}' of '{embodiment.name}' on backend {self.backend_name}: "
            f"{len(arm.joints)} joints at {self.core.config.servo_rate_hz:g} Hz, at {np.round(reading.positions, 3).tolist()}")
        if self.p["servo_loop"] == "timer":
            self._timer = self.create_timer(1.0 / self.core.config.servo_rate_hz, self._tick, clock=self._steady)
        else:
            self._loop_stop.clear()
            self._loop_thread = threading.Thread(target=self._servo_thread, args=(1.0 / self.core.config.servo_rate_hz,),
                                                 name="servo_loop", daemon=True)
            self._loop_thread.start()
        self._status_timer = self.create_timer(1.0 / self.p["status_rate_hz"], self._publish_status, clock=self._steady)
        self._publish_status()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.core.activate(self._now(), time.monotonic())
        except BackendError as exc:
            self.get_logger().error(f"activate failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._log_events()
        self._publish_status()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.core.deactivate()
        self._log_events()
        self._publish_status()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def _teardown(self) -> None:
        self._loop_stop.set()
        if self._loop_thread is not None and self._loop_thread is not threading.current_thread():
            self._loop_thread.join(timeout=2.0)
        self._loop_thread = None
        for t in (self._timer, self._status_timer):
            if t is not None:
                t.cancel()
                self.destroy_timer(t)
        self._timer = self._status_timer = None
        if self.core is not None:
            self.core.shutdown()
            self._log_events()
            self._publish_status()
            self.core = None

    def destroy_node(self):
        try:
            self._teardown()
        except Exception:  # never mask the shutdown path
            pass
        return super().destroy_node()

    # -- inputs -----------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_chunk(self, msg: ActionChunk) -> None:
        if self.core is None:
            return
        stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        self.core.on_chunk(ChunkInput(list(msg.joint_names), stamp, float(msg.dt), int(msg.horizon),
                                      np.asarray(msg.positions, dtype=np.float64), int(msg.sequence)), self._now())
        self._log_events()

    def _on_teleop_target(self, msg: JointState) -> None:
        if self.core is None:
            return
        self.core.on_teleop_target(list(msg.name), np.asarray(msg.position, dtype=np.float64), self._now(), time.monotonic())
        if self.core.events:
            self._log_events()
            self._publish_status()

    def _on_heartbeat(self, msg: Empty) -> None:
        if self.core is not None:
            self.core.on_heartbeat(time.monotonic())

    def _on_estop(self, msg: Bool) -> None:
        if self.core is None:
            return
        if msg.data:
            self.core.on_estop(self._now())
            self._log_events()
            self._publish_status()
        else:
            self.get_logger().info("estop false received: ignored (call ~/reset to clear a latched e-stop)")

    def _on_peer(self, msg: JointState) -> None:
        self._peer_positions = dict(zip(msg.name, msg.position))
        self._peer_received = time.monotonic()

    def _peer_vector(self, names: list[str]) -> tuple[np.ndarray | None, float]:
        """The other arm's newest commanded positions and their age (wall seconds since received)."""
        positions, received = self._peer_positions, self._peer_received
        if not positions or received is None or not all(n in positions for n in names):
            return None, float("inf")
        return np.array([positions[n] for n in names]), time.monotonic() - received

    def _service(self, name: str):
        def handler(request, response):
            if self.core is None:
                response.success, response.message = False, "driver is not configured"
                return response
            if name == "disable_torque":
                self.get_logger().warning("disable_torque: cutting torque; YAM and SO-101 arms have no brakes and drop under gravity")
            result = getattr(self.core, name)()
            response.success, response.message = result.success, result.message
            self._log_events()
            self._publish_status()
            return response
        return handler

    # -- the servo loop ---------------------------------------------------------------------
    def _servo_thread(self, period: float) -> None:
        """Tick at absolute deadlines on the monotonic clock (real-time priority if configured)."""
        if self.p["servo_thread_priority"] > 0:
            refused = set_current_thread_realtime(self.p["servo_thread_priority"])
            if refused:
                self.get_logger().warning(f"servo loop runs at normal priority: {refused}")
        run_at_deadlines(self._tick, period, self._loop_stop,
                         on_error=lambda exc: self.get_logger().error(f"servo loop: {exc}", throttle_duration_sec=1.0))

    def _tick(self) -> None:
        core = self.core
        if core is None:
            return
        res = core.tick(self._now(), time.monotonic())
        stamp = self.get_clock().now().to_msg()
        if res.measured is not None:
            js = JointState()
            js.header.stamp = stamp
            js.name = core.joint_names
            js.position = np.asarray(res.measured.positions, dtype=np.float64).tolist()
            if res.measured.velocities is not None:
                js.velocity = np.asarray(res.measured.velocities, dtype=np.float64).tolist()
            if res.measured.efforts is not None:
                js.effort = np.asarray(res.measured.efforts, dtype=np.float64).tolist()
            self.js_pub.publish(js)
        if res.command is not None:
            cmd = JointState()
            cmd.header.stamp = stamp
            cmd.name = core.joint_names
            cmd.position = np.asarray(res.command, dtype=np.float64).tolist()
            self.cmd_pub.publish(cmd)
        if core.events:
            self._log_events()
            self._publish_status()

    def _log_events(self) -> None:
        if self.core is None:
            return
        for e in self.core.take_events():
            if any(w in e for w in ("refused", "E-STOP", "fault", "lost", "watchdog", "TORQUE", "workspace", "non-finite",
                                    "stalled", "not advanced", "tracking", "away from", "cannot be checked")):
                self.get_logger().warning(e)
            else:
                self.get_logger().info(e)

    def _publish_status(self) -> None:
        core = self.core
        msg = DriverStatus()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.arm = self.arm_name
        msg.backend = self.backend_name
        if core is None:
            msg.state = DriverStatus.STATE_UNCONFIGURED
        else:
            s = core.status()
            msg.state = int(s["state"]) if core.active or s["state"] in (DriverState.ESTOPPED, DriverState.ERROR) else (
                DriverStatus.STATE_HOLDING if s["state"] != DriverState.UNCONFIGURED else DriverStatus.STATE_UNCONFIGURED)
            msg.actuation_enabled = bool(s["actuation_enabled"])
            msg.dry_run = core.active and not s["actuation_enabled"]
            msg.estop_latched = bool(s["estop_latched"])
            msg.operator_started = bool(s["operator_started"])
            msg.active_chunk_sequence = int(s["active_sequence"])
            msg.steps_remaining = int(s["steps_remaining"])
            for f in core.counters.as_dict():
                setattr(msg, f, int(s[f]))
            msg.last_event = s["last_event"]
        self.status_pub.publish(msg)


def main(args=None) -> int:
    return run_node(DriverNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
