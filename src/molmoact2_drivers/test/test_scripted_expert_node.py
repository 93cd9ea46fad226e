"""The scripted expert node over DDS (no simulator: the test plays the sim, the driver and the
episode supervisor): it publishes chunks only while every driver is ready, none once the
supervisor says done, and in servo mode each chunk continues the last from where it commands the
arm now, towards the goal pose (press_depth_m below the goal when set)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mujoco")

HOME = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
GOAL = [0.25, 0.05, 0.04]  # a cube top in touch_cube's region


def _start_expert(mode: str, press_depth_m: float = 0.0):
    from support.ros_harness import ChildProcess

    return ChildProcess.python_module(
        "molmoact2_drivers.nodes.scripted_expert_node", "--ros-args", "-p", "embodiment:=so101", "-p", f"mode:={mode}",
        "-p", "task_state_topic:=/expert_test/task_state", "-p", "joint_states_topic:=/expert_test/joint_states",
        "-p", "driver_status_topics:=['/expert_test/driver_status']",
        "-p", "supervisor_status_topic:=/expert_test/supervisor_status", "-p", "start_delay_s:=0.0",
        "-p", "approach_height_m:=0.0", "-p", f"press_depth_m:={press_depth_m}", "-r", "action_chunk:=/expert_test/action_chunk")


class _Rig:
    """The test's side of the graph: task state, joint states, driver and supervisor status."""

    def __init__(self, ros) -> None:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String

        from molmoact2_common import qos
        from molmoact2_msgs.msg import ActionChunk, DriverStatus

        self.ros, self.String, self.DriverStatus, self.JointState = ros, String, DriverStatus, JointState
        self.node = ros.node("expert_probe")
        self.chunks: list = []
        self.node.create_subscription(ActionChunk, "/expert_test/action_chunk", self.chunks.append, qos.ACTION_CHUNK)
        self.state_pub = self.node.create_publisher(String, "/expert_test/task_state", qos.LATCHED)
        self.super_pub = self.node.create_publisher(String, "/expert_test/supervisor_status", qos.LATCHED)
        self.joints_pub = self.node.create_publisher(JointState, "/expert_test/joint_states", qos.JOINT_STATE)
        self.driver_pub = self.node.create_publisher(DriverStatus, "/expert_test/driver_status", qos.DRIVER_STATUS)
        self.joints = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
        self.driver_state = DriverStatus.STATE_ERROR
        self.node.create_timer(0.05, self._publish_periodic)
        self.task_state(phase="running")
        self.super_pub.publish(String(data=json.dumps({"done": False, "results": []})))

    def task_state(self, phase: str, episode: int = 0) -> None:
        self.state_pub.publish(self.String(data=json.dumps({
            "task": "touch_cube", "episode": episode, "seed": 3, "phase": phase, "episode_time": 1.0,
            "goals": {"arm": GOAL}})))

    def _publish_periodic(self) -> None:
        js = self.JointState(name=self.joints, position=HOME)
        js.header.stamp = self.node.get_clock().now().to_msg()
        self.joints_pub.publish(js)
        st = self.DriverStatus(arm="arm", state=self.driver_state, actuation_enabled=True, operator_started=True)
        self.driver_pub.publish(st)

    def quiet_for(self, n_status: int) -> bool:
        """No chunk while ``n_status`` more driver statuses go out (spun, not slept)."""
        before, ticks = len(self.chunks), [0]
        self.node.create_timer(0.05, lambda: ticks.__setitem__(0, ticks[0] + 1))
        self.ros.spin_until(lambda: ticks[0] >= n_status, 30)
        return len(self.chunks) == before


@pytest.mark.ros
def test_expert_publishes_only_while_the_driver_is_ready_and_never_once_the_supervisor_is_done(ros):
    from molmoact2_msgs.msg import DriverStatus

    expert = _start_expert("plan")
    try:
        rig = _Rig(ros)
        assert ros.wait_for_subscribers(rig.driver_pub, 1, 30), expert.output()
        assert rig.quiet_for(20), "a chunk reached a driver in error"  # 1 s of the driver in error: nothing
        rig.driver_state = DriverStatus.STATE_HOLDING
        assert ros.spin_until(lambda: len(rig.chunks) >= 3, 30), expert.output()
        rig.driver_state = DriverStatus.STATE_ESTOPPED  # ready no more: it stops at once
        ros.spin_until(lambda: False, 0.3)  # the status in flight lands
        assert rig.quiet_for(20), "a chunk reached an e-stopped driver"
        rig.driver_state = DriverStatus.STATE_HOLDING
        n = len(rig.chunks)
        assert ros.spin_until(lambda: len(rig.chunks) > n + 2, 30), expert.output()
        rig.super_pub.publish(rig.String(data=json.dumps({"done": True, "results": []})))
        ros.spin_until(lambda: False, 0.3)
        assert rig.quiet_for(20), "a chunk after the supervisor said done"
        assert expert.alive(), expert.output()
    finally:
        expert.stop()


@pytest.mark.ros
@pytest.mark.parametrize("press_depth_m", [0.0, 0.03])
def test_servo_expert_chunks_continue_each_other_from_the_command_and_head_onto_the_goal(ros, press_depth_m):
    from molmoact2_drivers.core.expert import ScriptedExpert
    from molmoact2_common.embodiment import load_embodiment
    from molmoact2_msgs.msg import DriverStatus

    expert = _start_expert("servo", press_depth_m)
    try:
        rig = _Rig(ros)
        rig.driver_state = DriverStatus.STATE_HOLDING
        assert ros.spin_until(lambda: len(rig.chunks) >= 6, 30), expert.output()
        tables = [(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9, np.reshape(m.positions, (m.horizon, -1)), m.dt)
                  for m in rig.chunks[:6]]
        np.testing.assert_allclose(tables[0][1][0], HOME, atol=1e-9)  # the first from where the arm is
        for (t0, a, dt), (t1, b, _) in zip(tables, tables[1:]):
            k = (t1 - t0) / dt  # the next chunk starts where the last commands the arm at its stamp
            i = int(k)
            at_stamp = a[i] + (k - i) * (a[i + 1] - a[i])
            np.testing.assert_allclose(b[0], at_stamp, atol=1e-6)
            assert np.abs(b[0] - HOME).max() > np.abs(a[0] - HOME).max()  # on its way, though the arm never moved
        # every chunk lies on the straight line to the goal pose, whose tool point is on the cube
        # (press_depth_m below it: into the cube)
        emb = load_embodiment("so101")
        aim = np.array(GOAL) - np.array([0.0, 0.0, press_depth_m])
        goal = ScriptedExpert(emb).reach_pose(np.array(HOME), {"arm": aim})
        last = tables[-1][1]
        direction = (goal - np.array(HOME)) / np.abs(goal - np.array(HOME)).max()
        frac = (last - np.array(HOME)) @ direction / (direction @ direction)
        np.testing.assert_allclose(last, np.array(HOME) + np.outer(frac, direction), atol=1e-6)
        np.testing.assert_allclose(ScriptedExpert(emb).tool_points(goal)["arm"], aim, atol=0.01)
    finally:
        expert.stop()
