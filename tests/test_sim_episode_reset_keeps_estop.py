"""The simulator's episode reset never clears an operator's e-stop: the sim deployment's own graph
(its mujoco_sim_node and its real driver node, with the parameters config/deployments/sim.yaml
gives them) is brought up, the driver e-stopped, and ~/reset_episode called as the episode
supervisor calls it between episodes. The driver stays latched and holding; only the operator's
~/reset re-arms it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("mujoco")


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize("robot,task", [("so101", "touch_cube"), ("yam_bimanual", "reach_targets")])
def test_sim_episode_reset_after_an_estop_leaves_the_driver_latched_and_holding(ros, tmp_path, robot, task):
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Bool, String
    from std_srvs.srv import Trigger

    from molmoact2_common import qos
    from molmoact2_common.bringup.graph import load_deployment
    from molmoact2_common.bringup.lifecycle_manager import LifecycleManager
    from molmoact2_common.bringup.runner import GraphProcesses
    from molmoact2_msgs.msg import DriverStatus

    full = load_deployment("sim", {"robot": robot, "task": task, "task_seed": "3", "camera_rate_hz": "0.0"})
    graph = dataclasses.replace(full, nodes=[full.node("robot"), *full.arm_drivers])
    drivers = [d.fully_qualified_name for d in graph.arm_drivers]  # /driver, or /left/driver and /right/driver
    procs = GraphProcesses(graph, tmp_path / "logs", use_sim_time=True, echo=lambda _: None)
    node = ros.node("estop_probe")
    status: dict[str, list] = {d: [] for d in drivers}
    commanded: dict[str, list] = {d: [] for d in drivers}
    states: list = []
    for d in drivers:
        ns = d.rsplit("/", 1)[0]
        node.create_subscription(DriverStatus, f"{ns}/driver_status", status[d].append, qos.DRIVER_STATUS)
        node.create_subscription(JointState, f"{ns}/commanded_joint_states", commanded[d].append, qos.JOINT_STATE)
    node.create_subscription(String, "/sim/robot/task/state", lambda m: states.append(json.loads(m.data)), qos.LATCHED)
    estop = node.create_publisher(Bool, "/estop", qos.ESTOP)
    reset_episode = node.create_client(Trigger, "/sim/robot/reset_episode")
    operator = {(d, n): node.create_client(Trigger, f"{d}/{n}") for d in drivers for n in ("reset", "start")}

    def every(pred) -> bool:
        return all(status[d] and pred(status[d][-1]) for d in drivers)

    def logs() -> str:
        return "\n".join(f"--- {fqn}\n{procs.log_tail(fqn, 20)}" for fqn in procs.logs)

    try:
        procs.start()
        manager = LifecycleManager(node, ros.spin_until, reason_for=procs.log_tail, log=lambda _: None)
        lifecycle = graph.lifecycle_nodes()
        manager.bring_up(lifecycle)
        assert graph.autostart_arms and manager.start_arms(lifecycle), logs()
        assert ros.spin_until(lambda: every(lambda s: s.actuation_enabled) and states, 30), logs()

        assert ros.wait_for_subscribers(estop, len(drivers), 10)
        assert ros.publish_until(estop, Bool(data=True), lambda: every(lambda s: s.estop_latched), timeout=10), logs()
        assert every(lambda s: s.state == DriverStatus.STATE_ESTOPPED)

        assert ros.wait_for_service(reset_episode, 10)
        episode = states[-1]["episode"]
        assert ros.call(reset_episode, Trigger.Request()).success
        # the sim homes the arms, calls each driver's clear_faults (refused: e-stop), then runs again
        assert ros.spin_until(lambda: states[-1]["episode"] == episode + 1 and states[-1]["phase"] == "running", 20), logs()
        n = {d: len(commanded[d]) for d in drivers}
        assert ros.spin_until(lambda: all(len(commanded[d]) > n[d] + 50 for d in drivers), 10), logs()
        for d in drivers:
            latest = status[d][-1]
            assert latest.estop_latched and latest.state == DriverStatus.STATE_ESTOPPED, (d, latest.state, latest.last_event)
            # held: the command does not move while the e-stop stays latched
            held = np.array([m.position for m in commanded[d][n[d]:]])
            assert np.ptp(held, axis=0).max() < 1e-9, (d, np.ptp(held, axis=0))
            assert not ros.call(operator[(d, "start")], Trigger.Request()).success

        # the operator's reset clears it, and each driver holds where its arm is
        for d in drivers:
            assert ros.call(operator[(d, "reset")], Trigger.Request()).success
        assert ros.spin_until(lambda: every(lambda s: not s.estop_latched and s.state == DriverStatus.STATE_HOLDING), 10), logs()
    finally:
        procs.stop()
