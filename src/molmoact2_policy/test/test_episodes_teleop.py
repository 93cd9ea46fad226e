"""Episodes during real teleoperation (our leader_node on an emulated STS3215 leader bus, our
driver_node with input:=teleop on an emulated follower bus, over real DDS): a leader unplugged
mid-episode and an e-stop mid-episode mark the episode in the bag the recorder writes."""

from __future__ import annotations

import json

import pytest
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger
from support.ros_harness import ChildProcess

from emulators.feetech_sts3215 import FeetechBusEmulator
from molmoact2_common import qos
from molmoact2_drivers.core.backends.feetech import LEROBOT_MOTOR_NAMES, MotorCalibration, save_calibration
from molmoact2_msgs.msg import DriverStatus
from molmoact2_policy.core.episodes import EVENT_TOPIC, episodes_from_events
from molmoact2_policy.core.evaluation.bagio import BagReader

pytestmark = [pytest.mark.ros, pytest.mark.slow]
CAL = {n: MotorCalibration(i + 1, 0, 0, 700, 3400) for i, n in enumerate(LEROBOT_MOTOR_NAMES)}


def test_leader_unplugged_and_estop_mid_episode_mark_the_episodes_in_the_bag(ros, tmp_path):
    bag = tmp_path / "session"
    with FeetechBusEmulator() as leader, FeetechBusEmulator() as follower:
        lopts = json.dumps({"port": leader.port, "calibration": str(save_calibration(tmp_path / "l.json", CAL))})
        fopts = json.dumps({"port": follower.port, "calibration": str(save_calibration(tmp_path / "f.json", CAL))})
        procs = [
            ChildProcess.python_module(
                "molmoact2_drivers.nodes.driver_node", "--ros-args", "-p", "embodiment:=so101",
                "-p", f"backend_options:='{fopts}'", "-p", "autostart:=activate", "-p", "require_start:=never",
                "-p", "mode:=actuate", "-p", "input:=teleop", "-p", "teleop_timeout_s:=0.2"),
            ChildProcess.python_module(
                "molmoact2_drivers.nodes.leader_node", "--ros-args", "-p", "embodiment:=so101",
                "-p", "leader_type:=feetech", "-p", f"leader_options:='{lopts}'"),
            ChildProcess.python_module(
                "molmoact2_policy.nodes.recorder_node", "--ros-args", "-p", f"bag_path:={bag}",
                "-p", f"topics:=['{EVENT_TOPIC}','/joint_states','/teleop_status']", "-p", "flush_seconds:=0.2"),
            ChildProcess.python_module(
                "molmoact2_policy.nodes.episode_manager_node", "--ros-args",
                "-p", "instructions:=['pick up the red block']", "-p", "teleop_status_topics:=['/teleop_status']",
                "-p", "driver_status_topics:=['/driver_status']", "-p", "driver_nodes:=['/arm_driver']",
                "-p", "recorder_flush_s:=0.3"),
        ]
        out = lambda: "\n".join(p.output() for p in procs)  # noqa: E731
        try:
            node = ros.node("episodes_teleop_probe")
            events, teleop, status = [], [], []
            node.create_subscription(String, EVENT_TOPIC, lambda m: events.append(json.loads(m.data)), qos.EPISODE_EVENT)
            node.create_subscription(String, "/teleop_status", lambda m: teleop.append(json.loads(m.data)), qos.LATCHED)
            node.create_subscription(DriverStatus, "/driver_status", status.append, qos.DRIVER_STATUS)
            estop = node.create_publisher(Bool, "/estop", qos.ESTOP)
            calls = {n: node.create_client(Trigger, f"/episode_manager/{n}") for n in ("start", "reset")}

            def call(name):
                assert ros.wait_for_service(calls[name], 30), out()
                return ros.call(calls[name], Trigger.Request(), timeout=20)

            def wait(pred, timeout=20.0):
                return ros.spin_until(pred, timeout)

            assert wait(lambda: status and status[-1].state == DriverStatus.STATE_EXECUTING, 40), out()
            assert wait(lambda: node.count_subscribers(EVENT_TOPIC) >= 2, 30), out()  # the probe and the recorder

            # episode 1: the leader's cable is pulled mid-episode
            assert call("start").success, out()
            leader.pull_cable()
            assert wait(lambda: any(e["event"] == "leader_lost" and e["episode"] == 1 for e in events)), out()
            leader.replug()
            assert wait(lambda: teleop and teleop[-1]["state"] == "connected", 30), out()
            assert wait(lambda: status[-1].state == DriverStatus.STATE_EXECUTING, 30), out()

            # episode 2: an e-stop mid-episode; ~/reset then clears the driver's latch
            assert call("start").success, out()
            assert ros.wait_for_subscribers(estop, 1, 10)
            estop.publish(Bool(data=True))
            assert wait(lambda: any(e["event"] == "estop" and e["episode"] == 2 for e in events)), out()
            res = call("reset")
            assert res.success and "/arm_driver/reset: ok" in res.message, res.message + out()
            assert wait(lambda: not status[-1].estop_latched), out()
        finally:
            for p in reversed(procs):
                p.stop(timeout=20)
    reader = BagReader(bag)
    eps, problems = episodes_from_events(str(reader.decode(m).data) for m in reader.messages([EVENT_TOPIC]))
    assert not problems
    assert [(e.index, e.outcome) for e in eps] == [(1, "aborted"), (2, "aborted")]
    assert eps[0].marks[0].startswith("leader lost (/leader)") and "serial port" in eps[0].marks[0], eps[0].marks
    assert eps[1].marks[0].startswith("e-stop on arm"), eps[1].marks
