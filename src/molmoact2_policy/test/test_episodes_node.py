"""The episode manager over real DDS: its services publish episode events that the recorder node
records in the bag; a leader lost (teleop_status) and an e-stop (driver_status) during an episode
mark it; ~/reset calls the drivers' services; Ctrl-C ends an episode as interrupted; the terminal
UI drives the same node from keys in a pty."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading

import pytest
from std_msgs.msg import String
from std_srvs.srv import Trigger
from support.ros_harness import ROOT, ChildProcess

from molmoact2_common import qos
from molmoact2_msgs.msg import DriverStatus
from molmoact2_msgs.srv import SetInstruction
from molmoact2_policy.core.episodes import EVENT_TOPIC, episodes_from_events
from molmoact2_policy.core.evaluation.bagio import BagReader

pytestmark = pytest.mark.ros
MOD = "molmoact2_policy.nodes.episode_manager_node"


class Probe:
    """The test's side of the graph: the event topic, the manager's services, a leader's status,
    a driver's status and a driver's ~/stop and ~/reset (counted)."""

    def __init__(self, ros, manager="/episode_manager"):
        self.ros = ros
        self.node = ros.node("episodes_probe")
        self.events: list[dict] = []
        self.sub = self.node.create_subscription(String, EVENT_TOPIC, lambda m: self.events.append(json.loads(m.data)),
                                                qos.EPISODE_EVENT)
        self.teleop = self.node.create_publisher(String, "/teleop_status", qos.LATCHED)
        self.driver = self.node.create_publisher(DriverStatus, "/driver_status", qos.DRIVER_STATUS)
        self.driver_calls: list[str] = []
        for name in ("stop", "reset"):
            self.node.create_service(Trigger, f"/probe_driver/{name}", self._driver_service(name))
        self.clients = {n: self.node.create_client(Trigger, f"{manager}/{n}") for n in
                        ("start", "stop", "mark_success", "mark_failure", "rerecord", "next_instruction", "reset")}
        self.set_instruction = self.node.create_client(SetInstruction, f"{manager}/set_instruction")

    def _driver_service(self, name):
        def cb(_req, res):
            self.driver_calls.append(name)
            res.success, res.message = True, name
            return res
        return cb

    def call(self, name):
        client = self.clients[name]
        assert self.ros.wait_for_service(client, 20), f"{client.srv_name} not offered"
        return self.ros.call(client, Trigger.Request(), timeout=20)

    def wait_event(self, pred, timeout=15.0):
        return self.ros.spin_until(lambda: any(pred(e) for e in self.events), timeout)


def _manager(*params):
    return ChildProcess.python_module(MOD, "--ros-args", "-p", "instructions:=['pick up the red block','put it back']",
                                      "-p", "teleop_status_topics:=['/teleop_status']",
                                      "-p", "driver_status_topics:=['/driver_status']",
                                      "-p", "driver_nodes:=['/probe_driver']", "-p", "recorder_flush_s:=0.3", *params)


def test_services_publish_episode_events_that_the_recorder_records_and_statuses_mark_them(ros, tmp_path):
    bag = tmp_path / "session"
    recorder = ChildProcess.python_module("molmoact2_policy.nodes.recorder_node", "--ros-args", "-p", f"bag_path:={bag}",
                                          "-p", f"topics:=['{EVENT_TOPIC}']", "-p", "flush_seconds:=0.2")
    manager = _manager()
    probe = Probe(ros)
    out = lambda: manager.output() + recorder.output()  # noqa: E731
    # the recorder subscribes to the event topic once it sees the manager's publisher
    assert ros.spin_until(lambda: probe.node.count_subscribers(EVENT_TOPIC) >= 2, 30), out()

    assert probe.call("start").success, out()
    assert probe.wait_event(lambda e: e["event"] == "start" and e["episode"] == 1)
    assert probe.call("stop").success
    res = probe.call("mark_success")
    assert res.success and "success" in res.message
    assert probe.call("next_instruction").success

    # episode 2: the leader goes away -> aborted, and it cannot become a success
    assert probe.call("start").success
    probe.teleop.publish(String(data=json.dumps({"leader": "/leader", "arm": "arm", "state": "lost",
                                                 "event": "serial port /dev/ttyACM1 gone", "losses": 1, "stamp": 0.0})))
    assert probe.wait_event(lambda e: e["event"] == "leader_lost" and e["episode"] == 2), out()
    res = probe.call("mark_success")
    assert not res.success and "aborted" in res.message

    # episode 3: an e-stop -> aborted; ~/reset calls the driver's stop and reset
    probe.teleop.publish(String(data=json.dumps({"leader": "/leader", "arm": "arm", "state": "connected", "event": "back"})))
    assert probe.call("start").success
    probe.driver.publish(DriverStatus(arm="arm", state=DriverStatus.STATE_ESTOPPED, estop_latched=True))
    assert probe.wait_event(lambda e: e["event"] == "estop" and e["episode"] == 3), out()
    try:
        res = probe.call("reset")
    except TimeoutError as exc:
        raise AssertionError(out()) from exc
    assert res.success and "/probe_driver/reset: ok" in res.message, res.message
    assert probe.driver_calls == ["stop", "reset"]
    probe.driver.publish(DriverStatus(arm="arm", state=DriverStatus.STATE_HOLDING))

    # episode 4: Ctrl-C while recording -> interrupted, acknowledged before the manager exits
    assert probe.call("start").success
    assert probe.wait_event(lambda e: e["event"] == "start" and e["episode"] == 4)
    assert manager.stop(timeout=20) == 0, manager.output()
    assert probe.wait_event(lambda e: e["event"] == "interrupted" and e["episode"] == 4), manager.output()
    assert recorder.stop(timeout=20) == 0, recorder.output()

    reader = BagReader(bag)
    recorded = [str(reader.decode(m).data) for m in reader.messages([EVENT_TOPIC])]
    assert [json.loads(t)["event"] for t in recorded] == [e["event"] for e in probe.events] == [
        "start", "stop", "success", "start", "leader_lost", "start", "estop", "start", "interrupted"]
    eps, problems = episodes_from_events(recorded)
    assert not problems
    assert [(e.index, e.instruction, e.outcome) for e in eps] == [
        (1, "pick up the red block", "success"), (2, "put it back", "aborted"), (3, "put it back", "aborted"),
        (4, "put it back", "interrupted")]
    assert "leader lost (/leader)" in eps[1].marks[0] and "e-stop on arm 'arm'" in eps[2].marks[0]
    assert all(e.stop_ns > e.start_ns for e in eps)


def test_set_instruction_service_publishes_the_instruction_and_refuses_empty_text(ros):
    manager = _manager()
    probe = Probe(ros)
    seen = []
    probe.node.create_subscription(String, "/instruction", lambda m: seen.append(m.data), qos.INSTRUCTION)
    assert ros.spin_until(lambda: seen[-1:] == ["pick up the red block"], 30), manager.output()
    assert ros.wait_for_service(probe.set_instruction, 20)
    res = ros.call(probe.set_instruction, SetInstruction.Request(instruction="  "))
    assert not res.success and "empty" in res.message
    res = ros.call(probe.set_instruction, SetInstruction.Request(instruction="stack the cups"))
    assert res.success
    assert ros.spin_until(lambda: seen[-1:] == ["stack the cups"], 10)
    assert probe.call("start").success
    assert probe.wait_event(lambda e: e["event"] == "start" and e["instruction"] == "stack the cups")
    assert manager.stop(timeout=20) == 0, manager.output()


def test_terminal_ui_keys_drive_episodes_and_ctrl_c_ends_one_interrupted(ros):
    probe = Probe(ros)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "molmoact2_policy.episodes_tui", "--ros-args",
                             "-p", "instructions:=['pick up the red block']", "-p", "recorder_flush_s:=0.1"],
                            stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, start_new_session=True)
    os.close(slave)
    screen: list[bytes] = []

    def drain():  # the UI redraws; keep reading so it never blocks on a full pty
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            if not data:
                return
            screen.append(data)

    threading.Thread(target=drain, daemon=True).start()
    text = lambda: b"".join(screen).decode(errors="replace")  # noqa: E731
    try:
        assert ros.spin_until(lambda: "[s] start episode" in text(), 30), text()
        # the manager's publisher has matched the probe (the screen says so): its events reach it
        assert ros.spin_until(lambda: "event subscribers 1" in text(), 30), text()
        os.write(master, b"s")
        assert probe.wait_event(lambda e: e["event"] == "start" and e["episode"] == 1), text()
        assert ros.spin_until(lambda: "RECORDING episode 1" in text(), 10), text()
        os.write(master, b"y")
        assert probe.wait_event(lambda e: e["event"] == "success" and e["episode"] == 1), text()
        assert ros.spin_until(lambda: "episodes 1   successes 1   failures 0" in text(), 10), text()
        os.write(master, b"s")
        assert probe.wait_event(lambda e: e["event"] == "start" and e["episode"] == 2), text()
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert probe.wait_event(lambda e: e["event"] == "interrupted" and e["episode"] == 2), text()
        assert proc.wait(timeout=20) == 0, text()
        assert ros.spin_until(lambda: "episode 2 interrupted" in text() and "bye" in text(), 5), text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        os.close(master)


def test_reset_fails_naming_the_driver_service_that_did_not_answer(ros):
    manager = ChildProcess.python_module(MOD, "--ros-args", "-p", "instructions:=['x']", "-p", "driver_nodes:=['/no_driver']",
                                         "-p", "service_timeout_s:=0.5")
    probe = Probe(ros)
    res = probe.call("reset")
    assert not res.success and "/no_driver/stop: FAILED (no service after 0.5 s)" in res.message, res.message
    assert manager.stop(timeout=20) == 0, manager.output()


def test_start_is_refused_while_nothing_records_the_event_topic(ros):
    manager = ChildProcess.python_module(MOD, "--ros-args", "-p", "instructions:=['x']")
    node = ros.node("no_recorder_probe")
    client = node.create_client(Trigger, "/episode_manager/start")
    assert ros.wait_for_service(client, 20), manager.output()
    res = ros.call(client, Trigger.Request(), timeout=20)
    assert not res.success and "nothing subscribes to /episode/event" in res.message, res.message
    assert manager.stop(timeout=20) == 0, manager.output()
