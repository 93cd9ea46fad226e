"""Launch files and deployment descriptions, tested as data: every launch file maps an existing
description, every executable, parameter file and RViz config they name exists, and every knob is
a described argument."""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest

from molmoact2_common.bringup.graph import declared_arguments, deployments_dir, load_deployment
from molmoact2_common.bringup.launch_mapping import launch_entities
from molmoact2_common.embodiment import load_embodiment
from support.ros_harness import ROOT

DEPLOYMENTS = sorted(p.stem for p in deployments_dir().glob("*.yaml"))
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
REQUIRED_KNOBS = {"namespace", "config", "sim", "use_sim_time", "rviz", "record"}


def console_scripts(package: str) -> set[str]:
    setup = (ROOT / "src" / package / "setup.py").read_text()
    return set(re.findall(r'"([\w\-]+)\s*=\s*[\w\.]+:\w+"', setup))


def launch_file_deployment(path: Path) -> str:
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "DEPLOYMENT" for t in node.targets):
            return node.value.value
    raise AssertionError(f"{path.name} defines no DEPLOYMENT")


def test_every_launch_file_maps_an_existing_deployment_and_back():
    mapped = {launch_file_deployment(p) for p in LAUNCH_FILES}
    assert mapped == set(DEPLOYMENTS)
    for p in LAUNCH_FILES:
        assert p.name == f"{launch_file_deployment(p)}.launch.py"
        assert "generate_launch_description" in p.read_text()


def test_issue_launch_files_exist():
    names = {p.name for p in LAUNCH_FILES}
    assert {"yam_bimanual.launch.py", "so101.launch.py", "franka_droid.launch.py", "sim.launch.py",
            "replay.launch.py"} <= names


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_every_knob_is_a_described_argument(deployment):
    args = {a.name: a for a in declared_arguments(deployment)}
    assert REQUIRED_KNOBS <= set(args), f"{deployment} lacks {REQUIRED_KNOBS - set(args)}"
    for a in args.values():
        assert len(a.description) > 10, f"{deployment}: argument {a.name} needs a real description"


def _variants(deployment: str):
    args = {a.name: a for a in declared_arguments(deployment)}
    toggles = [n for n in ("sim", "think", "record", "rviz") if n in args]
    for values in itertools.product(["false", "true"], repeat=len(toggles)):
        overrides = dict(zip(toggles, values))
        if overrides.get("sim") == "true" and "arm_backend" in args:
            overrides["arm_backend"] = "kinematic"  # sim:=true alone is refused on real hardware
        yield overrides


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_every_executable_params_file_and_rviz_config_exists(deployment):
    for overrides in _variants(deployment):
        graph = load_deployment(deployment, overrides)
        for entity in launch_entities(graph):
            spec_optional = any(n.optional for n in graph.nodes if n.name == entity["name"])
            if not spec_optional:
                assert entity["executable"] in console_scripts(entity["package"]), \
                    f"{deployment}: {entity['package']}/{entity['executable']} is not an executable of the package"
            for value in entity["arguments"] + [v for p in entity["parameters"] for v in p.values()]:
                if isinstance(value, str) and value.endswith((".rviz", ".yaml", ".xml")):
                    assert Path(value).is_file(), f"{deployment}: {entity['name']} names missing file {value}"
            for key in ("embodiment",):
                for p in entity["parameters"]:
                    if key in p:
                        load_embodiment(p[key])


TELEOP = [d for d in DEPLOYMENTS if d.endswith("_teleop")]


@pytest.mark.parametrize("deployment", [d for d in DEPLOYMENTS if d != "replay" and d not in TELEOP])
def test_lifecycle_manager_brings_up_policy_before_drivers(deployment):
    graph = load_deployment(deployment)
    manager = [e for e in launch_entities(graph) if e["executable"] == "lifecycle_manager"]
    assert len(manager) == 1
    nodes = manager[0]["parameters"][0]["nodes"]
    assert nodes[0].endswith("/policy")
    assert all("driver" in n for n in nodes[1:])
    assert manager[0]["parameters"][0]["arm_drivers"] == nodes[1:]


@pytest.mark.parametrize("deployment", TELEOP)
def test_teleop_deployment_pairs_each_leader_with_a_teleop_driver_in_its_namespace(deployment):
    graph = load_deployment(deployment, {"namespace": "robot"})
    assert not [n for n in graph.nodes if n.executable == "policy_node"]
    drivers = [n for n in graph.nodes if n.executable == "driver_node"]
    leaders = [n for n in graph.nodes if n.executable == "leader_node"]
    assert drivers and len(leaders) == len(drivers)
    assert all(d.parameters["input"] == "teleop" for d in drivers)
    assert sorted(d.namespace for d in drivers) == sorted(le.namespace for le in leaders)
    manager = [e for e in launch_entities(graph) if e["executable"] == "lifecycle_manager"]
    assert manager[0]["parameters"][0]["nodes"] == [d.fully_qualified_name for d in drivers]


def test_bimanual_yam_runs_one_driver_per_arm_on_the_shared_chunk_topic():
    graph = load_deployment("yam_bimanual", {"namespace": "yam"})
    drivers = [n for n in graph.nodes if n.executable == "driver_node"]
    assert [d.fully_qualified_name for d in drivers] == ["/yam/left/driver", "/yam/right/driver"]
    assert {d.remappings["action_chunk"] for d in drivers} == {"/yam/action_chunk"}
    assert {d.parameters["arm"] for d in drivers} == {"left", "right"}


@pytest.mark.parametrize("deployment,camera", [("so101", "front"), ("yam_bimanual", "top"), ("franka_droid", "external")])
def test_rviz_config_shows_the_models_first_camera(deployment, camera):
    emb = load_embodiment(load_deployment(deployment).node("policy").parameters["embodiment"])
    assert emb.model.camera_order[0] == camera
    text = (ROOT / "config/rviz" / f"{deployment}.rviz").read_text()
    for topic in (f"/cameras/{camera}/image_raw", f"/change_mask/{camera}/overlay",
                  f"/depth_viz/{camera}/overlay", f"/depth_viz/{camera}/markers"):
        assert f"Value: {topic}" in text
    assert f"Fixed Frame: {emb.camera(camera).frame_id}" in text
