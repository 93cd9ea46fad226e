"""The simulation deployment for bimanual YAM, as data: one sim node for both arms, one driver per
arm on its own simulated controller, the camera node fed by every rendered camera and each arm's
joint states; the graph conditions that select those nodes; and the runner giving two nodes that
share a name in different namespaces (/left/driver, /right/driver) their own parameters."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
import yaml

from molmoact2_common.bringup.graph import GraphError, load_deployment
from molmoact2_common.bringup.runner import GraphProcesses


def _description(tmp_path: Path) -> Path:
    desc = {
        "deployment": "conditions",
        "arguments": [
            {"name": "robot", "default": "so101", "description": "robot to run", "choices": ["so101", "yam_bimanual"]},
            {"name": "record", "default": "false", "description": "record a bag"},
        ],
        "nodes": [
            {"name": "single", "package": "p", "executable": "e", "unless": "robot == yam_bimanual"},
            {"name": "pair", "package": "p", "executable": "e", "if": "robot == yam_bimanual"},
            {"name": "not_so101", "package": "p", "executable": "e", "if": "robot != so101"},
            {"name": "recorder", "package": "p", "executable": "e", "if": "!record"},
        ],
    }
    path = tmp_path / "conditions.yaml"
    path.write_text(yaml.safe_dump(desc))
    return path


def test_graph_conditions_compare_an_argument_with_a_literal(tmp_path):
    path = _description(tmp_path)
    assert [n.name for n in load_deployment(path).nodes] == ["single", "recorder"]
    assert [n.name for n in load_deployment(path, {"robot": "yam_bimanual", "record": "true"}).nodes] == ["pair", "not_so101"]
    bad = yaml.safe_load(path.read_text())
    bad["nodes"][0]["if"] = "robt == so101"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(GraphError, match="condition 'if: robt == so101' names no argument"):
        load_deployment(path)


def test_sim_deployment_for_yam_runs_one_sim_node_and_a_driver_per_arm_on_its_own_controller():
    graph = load_deployment("sim", {"robot": "yam_bimanual", "namespace": "yam"})
    sims = [n for n in graph.nodes if n.executable == "mujoco_sim_node"]
    assert len(sims) == 1 and sims[0].parameters["embodiment"] == "yam_bimanual"  # one simulator, one /clock
    assert sims[0].parameters["joint_states_topic"] == "/yam/sim/joint_states"
    drivers = [n for n in graph.nodes if n.executable == "driver_node"]
    assert [d.fully_qualified_name for d in drivers] == ["/yam/left/driver", "/yam/right/driver"]
    for d, other in zip(drivers, ("right", "left")):
        arm = d.parameters["arm"]
        options = json.loads(d.parameters["backend_options"])
        assert d.parameters["backend"] == "ros2_control"
        # the sim node (controller arm_controller, several arms) listens on /<arm>_arm_controller/commands
        assert options["command_topic"] == f"/{arm}_{sims[0].parameters['controller']}/commands"
        assert options["joint_states_topic"] == "/yam/sim/joint_states" and options["simulated"] is True
        assert d.remappings["action_chunk"] == "/yam/action_chunk"
        assert d.parameters["peer_commands_topic"] == f"/yam/{other}/commanded_joint_states"
    assert [d.lifecycle_order for d in drivers] == [20, 21] and all(d.arm_driver for d in drivers)
    cameras = [n for n in graph.nodes if n.executable == "camera_node"]
    assert len(cameras) == 1
    assert cameras[0].parameters["source_overrides"] == [
        f"{c}=topic:/yam/sim/cameras/{c}/image_raw" for c in ("top", "left", "right")]
    assert cameras[0].parameters["joint_state_topics"] == ["/yam/left/joint_states", "/yam/right/joint_states"]


@pytest.mark.parametrize("robot", ["so101", "so100", "franka_droid"])
def test_sim_deployment_for_a_single_arm_keeps_one_driver_on_arm_controller(robot):
    graph = load_deployment("sim", {"robot": robot})
    drivers = [n for n in graph.nodes if n.executable == "driver_node"]
    assert [d.fully_qualified_name for d in drivers] == ["/driver"]
    # the topic follows from the embodiment's command interface: /arm_controller/commands (SO-10x's
    # forward position controller) or /arm_controller/joint_trajectory (Franka's JTC)
    assert json.loads(drivers[0].parameters["backend_options"])["controller"] == "/arm_controller"
    assert len([n for n in graph.nodes if n.executable == "camera_node"]) == 1


def test_runner_gives_each_namespaced_node_its_own_parameters(tmp_path, monkeypatch):
    # an ament prefix with one executable that prints the parameters it was started with
    prefix = tmp_path / "prefix"
    (prefix / "share/ament_index/resource_index/packages").mkdir(parents=True)
    (prefix / "share/ament_index/resource_index/packages/probe_pkg").write_text("")
    exe = prefix / "lib/probe_pkg/echo_params"
    exe.parent.mkdir(parents=True)
    exe.write_text(f"#!{sys.executable}\nimport sys\n"
                   "print(open(sys.argv[sys.argv.index('--params-file') + 1]).read(), flush=True)\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    desc = {"deployment": "pair", "arguments": [{"name": "namespace", "default": "", "description": "namespace of every node"}],
            "nodes": [{"name": "driver", "package": "probe_pkg", "executable": "echo_params", "namespace": arm,
                       "parameters": {"arm": arm}} for arm in ("left", "right")]}
    path = tmp_path / "pair.yaml"
    path.write_text(yaml.safe_dump(desc))
    procs = GraphProcesses(load_deployment(path), tmp_path / "logs")
    procs.start()
    try:
        for p in procs.procs.values():
            p.wait(timeout=30)
    finally:
        procs.stop()
    for arm in ("left", "right"):
        got = yaml.safe_load(procs.logs[f"/{arm}/driver"].read_text())
        assert got == {f"/{arm}/driver": {"ros__parameters": {"arm": arm}}}
