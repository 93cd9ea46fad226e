"""Episode manager: segments a demonstration recording into labelled episodes, marked IN THE
BAG (a thin node over ``core.episodes``; the terminal UI ``molmoact2-episodes`` runs it).

    ros2 run molmoact2_policy episode_manager_node --ros-args -p instructions:="['pick up the red block']"

Topics:
  publishes  /episode/event (std_msgs/String, reliable, qos.EPISODE_EVENT; ``event_topic``): one JSON object per change,
             each carrying the whole episode (see ``core.episodes``): record it with the data
             (``molmoact2-record ... /episode/event``) and ``molmoact2-export-lerobot`` cuts the
             bag into the labelled episodes;
             /instruction (std_msgs/String, latched; ``instruction_topic``, '' = none): the current
             instruction, as the policy node and the recorder take it.
  subscribes teleop_status (std_msgs/String JSON, latched; ``teleop_status_topics``): the leader
             node's ``{"state": "connected" | "lost" | ..., "event": ...}``; a "lost" during an
             episode aborts it ("leader lost: ..." in its marks);
             driver_status (DriverStatus; ``driver_status_topics``): an e-stop latched (or the
             driver in ERROR) during an episode aborts it.
Services (std_srvs/Trigger, private): ~/start (refused while nothing subscribes to the event topic, ``require_recorder``), ~/stop, ~/mark_success, ~/mark_failure,
~/rerecord (discard the current or the last episode), ~/next_instruction, ~/reset (ends an
episode as interrupted, then calls each ``policy_nodes``' ~/stop and each ``driver_nodes``'
~/stop and ~/reset); ~/set_instruction (molmoact2_msgs/SetInstruction). A refused action answers
success=false with the reason and changes nothing.

Shutdown (Ctrl-C, SIGTERM): an episode being recorded ends as "interrupted" (never a success),
the event is waited for until every subscriber (the recorder) acknowledged it, and then
``recorder_flush_s`` (the recorder's ``flush_seconds``) so it is in a durable segment.
"""

from __future__ import annotations

import json
import threading
import time

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from molmoact2_common import qos
from molmoact2_common.node_main import run_node
from molmoact2_common.params import ParamSpec, declare_parameters, non_negative, positive
from molmoact2_msgs.msg import DriverStatus
from molmoact2_msgs.srv import SetInstruction

from ..core.episodes import EVENT_TOPIC, EpisodeError, EpisodeManager, leader_lost_reason

PARAMS = [
    ParamSpec("instructions", "str[]", [], "instructions to record, in order (~/next_instruction steps through them)"),
    ParamSpec("event_topic", str, EVENT_TOPIC, "episode event topic (record it with the data)"),
    ParamSpec("instruction_topic", str, "/instruction", "where the current instruction is published ('' = nowhere)"),
    ParamSpec("teleop_status_topics", "str[]", ["teleop_status"], "leader status topics (std_msgs/String JSON, 'state': 'lost' aborts the episode)"),
    ParamSpec("driver_status_topics", "str[]", ["driver_status"], "driver status topics (an e-stop aborts the episode)"),
    ParamSpec("driver_nodes", "str[]", [], "drivers whose ~/stop and ~/reset ~/reset calls (e.g. ['/arm_driver'])"),
    ParamSpec("policy_nodes", "str[]", [], "policy nodes whose ~/stop ~/reset calls"),
    ParamSpec("require_recorder", bool, True, "refuse ~/start while nothing subscribes to the event topic (the episode would not be in any bag)"),
    ParamSpec("service_timeout_s", float, 3.0, "how long ~/reset waits for each driver or policy service", positive, "> 0"),
    ParamSpec("recorder_flush_s", float, 1.0, "on shutdown, wait this long after the last event (the recorder's flush_seconds)", non_negative, ">= 0"),
]


class EpisodeManagerNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("episode_manager", **kwargs)
        self.p = declare_parameters(self, PARAMS)
        self.event_pub = self.create_publisher(String, self.p["event_topic"], qos.EPISODE_EVENT)
        self.instruction_pub = (self.create_publisher(String, self.p["instruction_topic"], qos.INSTRUCTION)
                                if self.p["instruction_topic"] else None)
        self.core = EpisodeManager(lambda: self.get_clock().now().nanoseconds, self._publish_event, self.p["instructions"])
        self.log_lines: list[str] = []  # the newest messages, for the terminal UI
        self.lock = threading.RLock()  # one action at a time: services, status callbacks, the UI thread
        self.group = ReentrantCallbackGroup()  # ~/reset waits for other nodes' services meanwhile
        self.last_event: dict | None = None
        for topic in self.p["teleop_status_topics"]:
            self.create_subscription(String, topic, lambda m, t=topic: self._on_teleop(t, m), qos.LATCHED,
                                     callback_group=self.group)
        for topic in self.p["driver_status_topics"]:
            self.create_subscription(DriverStatus, topic, lambda m, t=topic: self._on_driver(t, m), qos.DRIVER_STATUS,
                                     callback_group=self.group)
        for name in ("start", "stop", "mark_success", "mark_failure", "rerecord", "next_instruction", "reset"):
            self.create_service(Trigger, f"~/{name}", self._trigger(name), callback_group=self.group)
        self.create_service(SetInstruction, "~/set_instruction", self._on_set_instruction, callback_group=self.group)
        # clients made now, not at the first reset: a server answers a client only once it has
        # matched the client's response reader, which takes discovery time after creation
        self._trigger_clients = {name: self.create_client(Trigger, name, callback_group=self.group)
                                 for name in self._reset_services()}
        self._publish_instruction()
        self.get_logger().info(f"episode events on {self.p['event_topic']}; instruction {self.core.instruction!r}")

    # ---- events ----------------------------------------------------------------------------
    def _publish_event(self, ev: dict) -> None:
        self.last_event = ev
        self.event_pub.publish(String(data=json.dumps(ev)))

    def _publish_instruction(self) -> None:
        if self.instruction_pub is not None and self.core.instruction:
            self.instruction_pub.publish(String(data=self.core.instruction))

    def note(self, text: str, warn: bool = False) -> None:
        self.log_lines = (self.log_lines + [text])[-5:]
        (self.get_logger().warning if warn else self.get_logger().info)(text)

    # ---- actions (services and the terminal UI) -------------------------------------------
    def act(self, name: str) -> tuple[bool, str]:
        if name == "reset":  # not under the lock: status callbacks run while it waits for the drivers
            ok, msg = self.reset()
            self.note(msg, warn=not ok)
            return ok, msg
        with self.lock:
            return self._act(name)

    def _act(self, name: str) -> tuple[bool, str]:
        if name == "start" and self.p["require_recorder"] and self.event_pub.get_subscription_count() == 0:
            msg = (f"nothing subscribes to {self.event_pub.topic_name}: the episode would be in no bag; start the "
                   "recorder with that topic (or require_recorder:=false)")
            self.note(f"start refused: {msg}", warn=True)
            return False, msg
        try:
            msg = getattr(self.core, name)()
        except EpisodeError as exc:
            self.note(f"{name} refused: {exc}", warn=True)
            return False, str(exc)
        if name == "next_instruction":
            self._publish_instruction()
        self.note(msg)
        return True, msg

    def _trigger(self, name: str):
        def cb(_request, response):
            response.success, response.message = self.act(name)
            return response
        return cb

    def _on_set_instruction(self, request, response):
        with self.lock:
            return self._set_instruction(request, response)

    def _set_instruction(self, request, response):
        try:
            response.message = self.core.set_instruction(request.instruction)
            response.success = True
            self._publish_instruction()
            self.note(response.message)
        except EpisodeError as exc:
            response.success, response.message = False, str(exc)
            self.note(f"set_instruction refused: {exc}", warn=True)
        return response

    def reset(self) -> tuple[bool, str]:
        """Ends an episode being recorded as interrupted, then stops the policies and stops and
        resets the drivers; False when any of their services failed or did not answer."""
        with self.lock:
            parts = [self.core.interrupt("reset") or "no episode recording"]
        all_ok = True
        for srv in self._reset_services():
            ok, why = self._call(srv)
            all_ok &= ok
            parts.append(f"{srv}: {'ok' if ok else 'FAILED'}{f' ({why})' if why else ''}")
        return all_ok, "reset: " + "; ".join(parts)

    def _reset_services(self) -> list[str]:
        calls = [f"{n.rstrip('/')}/stop" for n in self.p["policy_nodes"]]
        for n in self.p["driver_nodes"]:
            calls += [f"{n.rstrip('/')}/stop", f"{n.rstrip('/')}/reset"]
        return calls

    def _call(self, name: str) -> tuple[bool, str]:
        """Call a Trigger service, waiting at most service_timeout_s (the executor keeps spinning:
        this runs in a service callback or the UI thread, never blocking the node's callbacks)."""
        client = self._trigger_clients[name]
        timeout = self.p["service_timeout_s"]
        if not client.wait_for_service(timeout_sec=timeout):
            return False, f"no service after {timeout:g} s"
        future = client.call_async(Trigger.Request())
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not future.done():
            client.remove_pending_request(future)
            return False, f"no answer after {timeout:g} s"
        res = future.result()
        return bool(res.success), res.message

    # ---- status inputs ---------------------------------------------------------------------
    def _on_teleop(self, topic: str, msg: String) -> None:
        try:
            reason = leader_lost_reason(msg.data)
        except ValueError as exc:
            self.get_logger().warning(f"{topic}: {exc}", throttle_duration_sec=10.0)
            return
        if reason is not None:
            with self.lock:
                done = self.core.abort("leader_lost", reason)
            if done:
                self.note(done, warn=True)

    def _on_driver(self, topic: str, msg: DriverStatus) -> None:
        if msg.estop_latched or msg.state in (DriverStatus.STATE_ESTOPPED, DriverStatus.STATE_ERROR):
            what = "e-stop" if msg.estop_latched or msg.state == DriverStatus.STATE_ESTOPPED else "driver error"
            with self.lock:
                done = self.core.abort("estop", f"{what} on arm '{msg.arm}' ({topic})")
            if done:
                self.note(done, warn=True)

    # ---- shutdown --------------------------------------------------------------------------
    def finish(self) -> str | None:
        """Ctrl-C: the current episode ends as interrupted; wait until the recorder has it."""
        with self.lock:
            done = self.core.interrupt("interrupted (shutdown)")
        if done is None:
            return None
        self.note(done, warn=True)
        try:
            self.event_pub.wait_for_all_acked(timeout=_duration(self.p["service_timeout_s"]))
        except Exception as exc:  # a context already shut down: nothing more to wait for
            self.get_logger().warning(f"could not wait for the event to be acknowledged: {exc}")
        time.sleep(self.p["recorder_flush_s"])  # the recorder makes its segment durable this often
        return done

    def destroy_node(self):
        self.finish()
        return super().destroy_node()


def _duration(seconds: float):
    from rclpy.duration import Duration

    return Duration(nanoseconds=int(seconds * 1e9))


def main(args=None) -> int:
    return run_node(EpisodeManagerNode, args, multithreaded=True)


if __name__ == "__main__":
    raise SystemExit(main())
