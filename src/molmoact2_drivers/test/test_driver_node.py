"""The lifecycle driver node over real DDS: lifecycle, chunks, e-stop, heartbeat, services."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.ros

SO101_JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def _chunk(node, names, rows, dt=1 / 30, seq=1, stamp=None):
    from molmoact2_msgs.msg import ActionChunk

    msg = ActionChunk()
    msg.header.stamp = (stamp if stamp is not None else node.get_clock().now()).to_msg()
    msg.joint_names = list(names)
    rows = np.asarray(rows, dtype=np.float64)
    msg.horizon = rows.shape[0]
    msg.dt = float(dt)
    msg.positions = rows.ravel().tolist()
    msg.sequence = seq
    return msg


class Probe:
    """Publishers and subscribers of one driver's topics."""

    def __init__(self, ros, ns: str = "", driver: str = "arm_driver", **node_kwargs):
        from lifecycle_msgs.srv import ChangeState, GetState
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Empty
        from std_srvs.srv import Trigger

        from molmoact2_common import qos
        from molmoact2_msgs.msg import ActionChunk, DriverStatus

        self.ros = ros
        self.node = ros.node("probe", **node_kwargs)
        self.joint_states: list = []
        self.commanded: list = []
        self.status: list = []
        self.chunk_pub = self.node.create_publisher(ActionChunk, f"{ns}action_chunk", qos.ACTION_CHUNK)
        self.estop_pub = self.node.create_publisher(Bool, f"{ns}estop", qos.ESTOP)
        self.hb_pub = self.node.create_publisher(Empty, f"{ns}heartbeat", qos.HEARTBEAT)
        self.js_sub = self.node.create_subscription(JointState, f"{ns}joint_states", self.joint_states.append, qos.JOINT_STATE)
        self.cmd_sub = self.node.create_subscription(JointState, f"{ns}commanded_joint_states", self.commanded.append, qos.JOINT_STATE)
        self.status_sub = self.node.create_subscription(DriverStatus, f"{ns}driver_status", self.status.append, qos.DRIVER_STATUS)
        self.srv = {n: self.node.create_client(Trigger, f"{ns}{driver}/{n}")
                    for n in ("start", "stop", "enable", "disable", "disable_torque", "reset")}
        self.change_state = self.node.create_client(ChangeState, f"{ns}{driver}/change_state")
        self.get_state = self.node.create_client(GetState, f"{ns}{driver}/get_state")
        self.Trigger = Trigger
        self.ChangeState = ChangeState
        self.GetState = GetState

    def transition(self, transition_id: int) -> bool:
        assert self.ros.wait_for_service(self.change_state, 15)
        req = self.ChangeState.Request()
        req.transition.id = transition_id
        return self.ros.call(self.change_state, req).success

    def lifecycle_label(self) -> str:
        assert self.ros.wait_for_service(self.get_state, 15)
        return self.ros.call(self.get_state, self.GetState.Request()).current_state.label

    def call(self, name: str):
        assert self.ros.wait_for_service(self.srv[name], 15)
        return self.ros.call(self.srv[name], self.Trigger.Request())

    def latest_status(self):
        return self.status[-1] if self.status else None

    def wait_status(self, pred, timeout=10.0) -> bool:
        return self.ros.spin_until(lambda: bool(self.status) and pred(self.status[-1]), timeout)

    def send_chunk(self, rows, seq=1, names=SO101_JOINTS, dt=1 / 30, stamp=None):
        assert self.ros.wait_for_subscribers(self.chunk_pub, 1, 15)
        self.chunk_pub.publish(_chunk(self.node, names, rows, dt, seq, stamp))


def _driver_process(*params: str):
    from support.ros_harness import ChildProcess

    args = ["--ros-args", "-p", "embodiment:=so101", "-p", "backend:=kinematic", "-p", "execute_steps:=0"]
    for p in params:
        args += ["-p", p]
    return ChildProcess.python_module("molmoact2_drivers.nodes.driver_node", *args)


def test_lifecycle_configure_reads_state_activate_enables_deactivate_holds(ros):
    from lifecycle_msgs.msg import Transition

    from molmoact2_msgs.msg import DriverStatus

    proc = _driver_process("chunk_timeout_s:=5.0")
    try:
        probe = Probe(ros)
        assert probe.lifecycle_label() == "unconfigured"
        assert probe.transition(Transition.TRANSITION_CONFIGURE)
        # configure connected and reads: joint states flow, nothing is actuated yet
        assert ros.spin_until(lambda: len(probe.joint_states) > 3, 10), proc.output()
        assert list(probe.joint_states[-1].name) == SO101_JOINTS
        assert not probe.commanded
        assert probe.wait_status(lambda s: not s.actuation_enabled and s.state == DriverStatus.STATE_HOLDING)
        assert probe.transition(Transition.TRANSITION_ACTIVATE)
        assert probe.wait_status(lambda s: s.actuation_enabled and s.state == DriverStatus.STATE_HOLDING), proc.output()
        target = np.array([0.3, -0.2, 0.25, 0.1, -0.1, 0.6])
        rows = np.linspace(np.zeros(6), target, 15)
        probe.send_chunk(rows)
        assert ros.spin_until(lambda: probe.joint_states and np.allclose(probe.joint_states[-1].position, target, atol=1e-6), 10), proc.output()
        assert probe.transition(Transition.TRANSITION_DEACTIVATE)
        assert probe.wait_status(lambda s: not s.actuation_enabled)
        assert probe.lifecycle_label() == "inactive"
        # holding with torque on where it was: the position does not move after deactivation
        n = len(probe.joint_states)
        assert ros.spin_until(lambda: len(probe.joint_states) > n + 10, 10)
        assert np.allclose(probe.joint_states[-1].position, target, atol=1e-6)
    finally:
        proc.stop()


def test_inactive_driver_publishes_no_commanded_joint_states(ros):
    from lifecycle_msgs.msg import Transition

    proc = _driver_process("chunk_timeout_s:=5.0")
    try:
        probe = Probe(ros)
        assert probe.lifecycle_label() == "unconfigured"  # the node is up and answering
        assert probe.transition(Transition.TRANSITION_CONFIGURE)
        assert probe.transition(Transition.TRANSITION_ACTIVATE)
        assert ros.spin_until(lambda: len(probe.commanded) > 5, 10), proc.output()
        assert probe.transition(Transition.TRANSITION_DEACTIVATE)
        assert probe.lifecycle_label() == "inactive"
        # joint_states keep flowing; once the deactivation has gone out, no command follows
        n_js = len(probe.joint_states)
        assert ros.spin_until(lambda: len(probe.joint_states) > n_js + 10, 10)
        n_cmd = len(probe.commanded)
        n_js = len(probe.joint_states)
        assert ros.spin_until(lambda: len(probe.joint_states) > n_js + 30, 10)
        assert len(probe.commanded) == n_cmd, "an inactive driver published commands"
    finally:
        proc.stop()


def test_chunk_runs_out_then_driver_holds_last_commanded_never_zero(ros):
    from molmoact2_msgs.msg import DriverStatus

    proc = _driver_process("autostart:=activate", "chunk_timeout_s:=5.0")
    try:
        probe = Probe(ros)
        assert probe.wait_status(lambda s: s.actuation_enabled, 15), proc.output()
        target = np.array([0.4, 0.3, -0.3, 0.2, 0.5, 0.8])
        probe.send_chunk(np.linspace(np.zeros(6), target, 15), seq=7)  # so101 executes 15 steps
        assert probe.wait_status(lambda s: s.state == DriverStatus.STATE_HOLDING and "ran out" in s.last_event, 10), proc.output()
        assert ros.spin_until(lambda: np.allclose(probe.commanded[-1].position, target, atol=1e-9), 5)
        n = len(probe.commanded)
        assert ros.spin_until(lambda: len(probe.commanded) > n + 20, 10)
        held = np.array([m.position for m in probe.commanded[n:]])
        assert np.allclose(held, target, atol=1e-9), "after the chunk the arm must hold its last target"
        assert probe.latest_status().chunks_received == 1
    finally:
        proc.stop()


def test_chunk_naming_joints_the_arm_lacks_is_refused_with_their_names(ros):
    proc = _driver_process("autostart:=activate")
    try:
        probe = Probe(ros)
        assert probe.wait_status(lambda s: s.actuation_enabled, 15), proc.output()
        names = SO101_JOINTS[:5] + ["left_gripper", "elbow_roll"]
        probe.send_chunk(np.zeros((5, 7)), names=names)
        assert probe.wait_status(lambda s: s.chunks_refused == 1, 10), proc.output()
        event = probe.latest_status().last_event
        assert "left_gripper" in event and "elbow_roll" in event
        probe.send_chunk(np.zeros((5, 5)), names=SO101_JOINTS[:5], seq=2)
        assert probe.wait_status(lambda s: s.chunks_refused == 2, 10)
        assert "gripper" in probe.latest_status().last_event and "missing" in probe.latest_status().last_event
    finally:
        proc.stop()


def test_estop_latches_until_reset_and_chunks_are_refused_meanwhile(ros):
    from std_msgs.msg import Bool

    from molmoact2_msgs.msg import DriverStatus

    proc = _driver_process("autostart:=activate", "chunk_timeout_s:=5.0")
    try:
        probe = Probe(ros)
        assert probe.wait_status(lambda s: s.actuation_enabled, 15), proc.output()
        assert ros.wait_for_subscribers(probe.estop_pub, 1, 10)
        # a slow 3 s chunk: the e-stop comes in the middle of it
        probe.send_chunk(np.linspace(np.zeros(6), np.full(6, 0.8), 90), seq=1)
        assert ros.spin_until(lambda: probe.joint_states and probe.joint_states[-1].position[0] > 0.05, 10)
        probe.estop_pub.publish(Bool(data=True))
        assert probe.wait_status(lambda s: s.estop_latched and s.state == DriverStatus.STATE_ESTOPPED, 5), proc.output()
        n = len(probe.joint_states)
        assert ros.spin_until(lambda: len(probe.joint_states) > n + 30, 10)
        after = np.array([m.position for m in probe.joint_states[n + 2:]])
        assert np.ptp(after, axis=0).max() < 1e-12, "the arm must not move while e-stopped"
        assert after[0][0] < 0.75
        probe.send_chunk(np.full((5, 6), 0.1), seq=2)
        assert probe.wait_status(lambda s: s.chunks_refused == 1 and "e-stop" in s.last_event, 10)
        # still latched after a while: only reset clears it
        assert probe.call("start").success is False
        assert probe.latest_status().estop_latched
        assert probe.call("reset").success
        assert probe.wait_status(lambda s: not s.estop_latched and s.state == DriverStatus.STATE_HOLDING, 5)
        probe.send_chunk(np.linspace(after[-1], np.full(6, 0.2), 10), seq=3)
        assert ros.spin_until(lambda: np.allclose(probe.joint_states[-1].position, 0.2, atol=1e-6), 10), proc.output()
    finally:
        proc.stop()


def test_shadow_mode_publishes_commands_without_actuating(ros):
    proc = _driver_process("autostart:=activate", "mode:=shadow", "chunk_timeout_s:=5.0")
    try:
        probe = Probe(ros)
        assert probe.wait_status(lambda s: s.dry_run and not s.actuation_enabled, 15), proc.output()
        target = np.array([0.2, 0.2, 0.2, 0.2, 0.2, 0.5])
        probe.send_chunk(np.linspace(np.zeros(6), target, 10))
        assert ros.spin_until(lambda: probe.commanded and np.allclose(probe.commanded[-1].position, target, atol=1e-6), 10), proc.output()
        assert np.allclose(probe.joint_states[-1].position, 0.0), "shadow mode must not move the arm"
        # explicit actuation-enable: the arm now holds where it really is (not where the shadow was)
        assert probe.call("enable").success
        assert probe.wait_status(lambda s: s.actuation_enabled and not s.dry_run, 5)
        n = len(probe.commanded)
        assert ros.spin_until(lambda: len(probe.commanded) > n + 5, 5)
        assert np.allclose(probe.commanded[-1].position, 0.0)
    finally:
        proc.stop()


def test_operator_heartbeat_lost_holds_and_is_counted(ros):
    from std_msgs.msg import Empty

    from molmoact2_msgs.msg import DriverStatus

    proc = _driver_process("autostart:=activate", "heartbeat_timeout_s:=0.5", "chunk_timeout_s:=5.0")
    try:
        probe = Probe(ros)
        assert probe.wait_status(lambda s: s.actuation_enabled, 15), proc.output()
        assert ros.wait_for_subscribers(probe.hb_pub, 1, 10)
        beats = probe.node.create_timer(0.05, lambda: probe.hb_pub.publish(Empty()))
        # the deadman runs from activation: a loss before the first beat is counted too
        ros.spin_until(lambda: False, 0.3)
        assert probe.wait_status(lambda s: s.state == DriverStatus.STATE_HOLDING, 5)
        before = probe.latest_status().heartbeat_losses
        probe.send_chunk(np.linspace(np.zeros(6), np.full(6, 0.9), 90))
        assert probe.wait_status(lambda s: s.state == DriverStatus.STATE_EXECUTING, 5), proc.output()
        probe.node.destroy_timer(beats)  # the operator's heartbeat stops
        assert probe.wait_status(lambda s: s.heartbeat_losses == before + 1 and s.state == DriverStatus.STATE_HOLDING, 5), proc.output()
        assert "heartbeat" in probe.latest_status().last_event
        n = len(probe.joint_states)
        assert ros.spin_until(lambda: len(probe.joint_states) > n + 20, 5)
        after = np.array([m.position for m in probe.joint_states[n + 2:]])
        assert np.ptp(after, axis=0).max() < 1e-12
    finally:
        proc.stop()


def test_bad_parameter_refuses_to_configure_with_a_message_naming_it(ros):
    proc = _driver_process("autostart:=activate", "arm:=left")
    try:
        probe = Probe(ros)
        assert ros.spin_until(lambda: "configure failed" in proc.output(), 15), proc.output()
        assert "left" in proc.output()
        assert probe.lifecycle_label() == "unconfigured"
    finally:
        proc.stop()
