"""What the launch files hand to launch_ros, checked against launch_ros's own rules (launch_ros is
not on PyPI, so the rules are restated here from launch_ros/utilities/normalize_parameters.py and
evaluate_parameters.py of ros2/launch_ros), against what each node declares (its ParamSpecs), for
every deployment and every documented argument combination; and the bring-up's safety rules:
arming decided from the drivers' backends, never from the ``sim`` argument."""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from molmoact2_common.bringup.graph import (
    GraphError,
    backend_is_simulated,
    declared_arguments,
    deployments_dir,
    load_deployment,
    resolve_arm_backend,
)
from molmoact2_common.bringup.launch_mapping import (
    POLICY_DISTRO_ARGUMENT,
    POLICY_VENV_ARGUMENT,
    launch_entities,
    policy_prefix,
    policy_venv_problem,
)
from molmoact2_common.embodiment import load_embodiment
from support.ros_harness import ROOT

DEPLOYMENTS = sorted(p.stem for p in deployments_dir().glob("*.yaml"))
HARDWARE = ["so101", "franka_droid", "yam_bimanual", "so101_teleop", "yam_bimanual_teleop"]


# --- launch_ros's parameter rules --------------------------------------------------------------

class LaunchRosRefuses(TypeError):
    pass


def launch_ros_evaluates(name: str, value):
    """The value a parameter dict entry ends up as after launch_ros's normalize_parameter_dict and
    evaluate_parameter_dict (plain values, no substitutions), or LaunchRosRefuses with its message."""
    if isinstance(value, dict):
        raise LaunchRosRefuses(f"{name}: a dict is flattened into '{name}.<key>' parameters, not one parameter")
    if isinstance(value, str):  # normalized as yaml.dump(value), evaluated with yaml.safe_load
        loaded = yaml.safe_load(yaml.dump(value))
        if type(loaded) not in (bool, int, float, str, bytes):
            raise LaunchRosRefuses(f"{name}: {value!r} does not evaluate to a scalar")
        return loaded
    if isinstance(value, (bool, int, float, bytes)):
        return value
    if isinstance(value, (list, tuple)):
        if not value:  # normalized to (), which evaluate_parameter_dict's ensure_argument_type refuses (issue 13)
            raise LaunchRosRefuses(f"{name}: Expected 'value' to be one of [float, int, str, bool, bytes], but got '()'")
        kinds = set()
        for v in value:
            if isinstance(v, str):
                kinds.add(str)
            elif isinstance(v, bool):
                kinds.add(bool)
            elif isinstance(v, int):
                kinds.add(int)
            elif isinstance(v, float):
                kinds.add(float)
            else:
                raise LaunchRosRefuses(f"{name}: list item {v!r} is not one of float, int, str, bool")
        if kinds == {int}:
            normalized = tuple(int(v) for v in value)
        elif kinds in ({float}, {int, float}):
            normalized = tuple(float(v) for v in value)
        elif kinds == {bool}:
            normalized = tuple(bool(v) for v in value)
        else:  # a list of strings (or mixed): each item yaml.dump-ed, then yaml.safe_load-ed
            items = [yaml.safe_load(yaml.dump(v)) for v in value]
            if not items or type(items[0]) not in (bool, int, float, str) or not all(isinstance(i, type(items[0])) for i in items):
                raise LaunchRosRefuses(f"{name}: Expected a non-empty sequence, with items of uniform type")
            return tuple(items)
        return normalized
    raise LaunchRosRefuses(f"{name}: unexpected type for parameter value {value!r}")


def test_the_launch_ros_rules_refuse_what_launch_ros_refuses():
    with pytest.raises(LaunchRosRefuses, match=r"but got '\(\)'"):
        launch_ros_evaluates("topics", [])
    with pytest.raises(LaunchRosRefuses, match="uniform type"):
        launch_ros_evaluates("mixed", [1, "a"])
    with pytest.raises(LaunchRosRefuses, match="uniform type"):
        launch_ros_evaluates("mixed", [True, 1])
    assert launch_ros_evaluates("s", "true") == "true"
    assert launch_ros_evaluates("f", [1, 2.5]) == (1.0, 2.5)
    assert launch_ros_evaluates("j", '{"port": "/dev/ttyACM0"}') == '{"port": "/dev/ttyACM0"}'


#: ParamSpec type -> what rclpy accepts as an override of a parameter declared with it
def _accepts(declared, value) -> bool:
    if declared is bool:
        return isinstance(value, bool)
    if declared is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if declared is float:
        return isinstance(value, float)
    if declared is str:
        return isinstance(value, str)
    item = {"str[]": str, "float[]": float, "int[]": int, "bool[]": bool}[declared]
    return isinstance(value, tuple) and all(_accepts(item, v) for v in value)


def console_entry(package: str, executable: str) -> str:
    setup = (ROOT / "src" / package / "setup.py").read_text()
    m = re.search(rf'"{re.escape(executable)}\s*=\s*([\w\.]+):\w+"', setup)
    assert m, f"{package}/{executable} is no console script"
    return m.group(1)


_DECLARED: dict[tuple[str, str], dict] = {}


def declared_params(package: str, executable: str) -> dict:
    key = (package, executable)
    if key not in _DECLARED:
        if package == "molmoact2_common" and executable == "lifecycle_manager":
            module = importlib.import_module("molmoact2_common.bringup.manager_node")
        else:
            module = importlib.import_module(console_entry(package, executable))
        _DECLARED[key] = {p.name: p.type for p in module.PARAMS}
    return _DECLARED[key]


def documented_variants(deployment: str):
    """Every documented combination: the boolean toggles together, then each choice of every
    argument with choices; sim:=true on a hardware deployment with its simulated arm_backend."""
    args = {a.name: a for a in declared_arguments(deployment)}
    toggles = [n for n in ("sim", "think", "record", "rviz", "use_sim_time") if n in args]
    for values in itertools.product(["false", "true"], repeat=len(toggles)):
        overrides = dict(zip(toggles, values))
        if deployment in HARDWARE and overrides.get("sim") == "true":
            overrides["arm_backend"] = "kinematic"
        yield overrides
    for a in args.values():
        for choice in a.choices:
            yield {a.name: choice}
    if deployment == "replay":
        yield {"topics": "[/cameras/front/image_raw, /joint_states]", "rate": "2", "joint_state_topics": "[/joint_states]",
               "source_overrides": "[front=topic:/cameras/front/image_raw]"}
    if deployment == "sim":
        yield {"seed": "-1", "camera_rate_hz": "5", "real_time_factor": "2", "instruction": "yes"}
    if deployment == "so101":
        yield {"port": "/dev/ttyUSB0", "calibration": "/tmp/follower_b.json", "config": "so100"}


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_launch_parameters_follow_launch_ros_rules_and_the_nodes_declarations(deployment):
    for overrides in documented_variants(deployment):
        graph = load_deployment(deployment, overrides)
        for entity in launch_entities(graph, policy_venv=str(ROOT)):
            if entity["package"] == "rviz2":
                assert entity["parameters"] == [{"use_sim_time": entity["parameters"][0]["use_sim_time"]}]
                continue
            declared = declared_params(entity["package"], entity["executable"])
            declared.setdefault("use_sim_time", bool)  # every rclpy node declares it
            for params in entity["parameters"]:
                for name, value in params.items():
                    where = f"{deployment} {overrides}: {entity['name']}.{name} = {value!r}"
                    try:
                        evaluated = launch_ros_evaluates(name, value)
                    except LaunchRosRefuses as exc:
                        pytest.fail(f"{where}: launch_ros refuses it: {exc}")
                    assert name in declared, f"{where}: {entity['executable']} declares no such parameter"
                    assert _accepts(declared[name], evaluated), \
                        f"{where}: {entity['executable']} declares it {declared[name]}, rclpy refuses {type(evaluated).__name__}"


def test_replay_passes_no_empty_sequence_to_replay_or_camera_ingestion():
    graph = load_deployment("replay")
    for entity in launch_entities(graph):
        for params in entity["parameters"]:
            empty = [k for k, v in params.items() if isinstance(v, (list, tuple)) and not v]
            assert not empty, f"{entity['name']}: empty list parameters {empty} (launch_ros raises TypeError for ())"
    replay = load_deployment("replay", {"topics": "[/a, /b]", "rate": "2"}).node("replay").parameters
    assert replay["topics"] == ["/a", "/b"] and replay["rate"] == 2.0 and isinstance(replay["rate"], float)


def test_every_lifecycle_node_and_the_manager_get_time_for_the_ordered_tear_down():
    for deployment in DEPLOYMENTS:
        entities = launch_entities(load_deployment(deployment))
        manager = next(e for e in entities if e["executable"] == "lifecycle_manager")
        assert manager["on_exit"] == "shutdown_on_failure"
        for e in entities:
            if e["lifecycle"] or e is manager:
                assert float(e["sigterm_timeout"]) > 8.0, e["name"]  # more than a node's grace (lifecycle.py)


def test_rviz_is_optional_in_the_launch_mapping_as_in_the_runner():
    for deployment in DEPLOYMENTS:
        entities = launch_entities(load_deployment(deployment, {"rviz": "true", "arm_backend": "kinematic"}
                                                   if deployment in HARDWARE else {"rviz": "true"}))
        rviz = [e for e in entities if e["package"] == "rviz2"]
        assert len(rviz) == 1 and rviz[0]["optional"] is True
        assert all(not e["optional"] for e in entities if e["package"] != "rviz2")


# --- arming follows the backends ---------------------------------------------------------------

@pytest.mark.parametrize("deployment", HARDWARE)
def test_sim_argument_alone_never_arms_a_real_backend(deployment):
    with pytest.raises(GraphError, match="drives? real hardware") as refused:
        load_deployment(deployment, {"sim": "true"})
    graph = load_deployment(deployment)
    for driver in graph.arm_drivers:
        assert driver.fully_qualified_name in str(refused.value)
        assert not driver.backend_simulated
    assert not graph.autostart_arms
    manager = next(e for e in launch_entities(graph) if e["executable"] == "lifecycle_manager")
    assert manager["parameters"][0]["autostart_arms"] is False
    # a simulated arm on the same deployment is armed: decided from the backend
    sim = load_deployment(deployment, {"sim": "true", "arm_backend": "kinematic"})
    assert sim.autostart_arms and all(d.backend_type == "kinematic" for d in sim.arm_drivers)
    assert load_deployment(deployment, {"arm_backend": "kinematic"}).autostart_arms


@pytest.mark.parametrize("deployment", ["sim", "replay"])
def test_simulated_deployments_arm_automatically_from_their_backends(deployment):
    graph = load_deployment(deployment)
    assert graph.arm_drivers and graph.autostart_arms
    assert all(d.backend_simulated for d in graph.arm_drivers)


def test_the_simulated_flag_agrees_with_the_drivers_backend_classes():
    from molmoact2_drivers.core.backend import ArmBackend
    from molmoact2_drivers.core.backends import BACKENDS

    for kind, module_name in BACKENDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # an optional library (franky): its class is not simulated either way
        classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
                   if issubclass(c, ArmBackend) and c is not ArmBackend and c.__module__ == module.__name__]
        assert classes, kind
        for c in classes:
            assert bool(c.simulated) == backend_is_simulated(kind, {}), f"{kind}: {c.__name__}.simulated = {c.simulated}"
    assert backend_is_simulated("ros2_control", {"simulated": True})
    assert not backend_is_simulated("ros2_control", {"simulated": "true"})  # only the JSON true


def test_so101_empty_calibration_means_the_embodiments_own_path():
    emb = load_embodiment("so101")
    driver = load_deployment("so101").node("driver")
    options = json.loads(driver.parameters["backend_options"])
    assert "calibration" not in options and "port" not in options, options
    merged = {**emb.arms[0].backend, **options}
    assert merged["calibration"] == emb.arms[0].backend["calibration"]
    so100 = load_deployment("so101", {"config": "so100"}).node("driver")
    assert "calibration" not in json.loads(so100.parameters["backend_options"])
    given = load_deployment("so101", {"calibration": "/tmp/arm_b.json", "port": "/dev/ttyUSB1"}).node("driver")
    assert json.loads(given.parameters["backend_options"]) == {"port": "/dev/ttyUSB1", "calibration": "/tmp/arm_b.json"}


def test_resolve_arm_backend_reads_the_driver_parameters_as_the_driver_does():
    assert resolve_arm_backend("so101") == ("feetech", False)
    assert resolve_arm_backend("so101", backend="kinematic") == ("kinematic", True)
    assert resolve_arm_backend("franka_droid", backend_options='{"simulated": true}') == ("ros2_control", True)
    assert resolve_arm_backend("yam_bimanual", arm="left") == ("i2rt", False)
    with pytest.raises(GraphError, match="name one"):
        resolve_arm_backend("yam_bimanual")


# --- the policy's interpreter ------------------------------------------------------------------

def test_policy_runs_in_the_venv_or_the_launch_refuses_pointing_at_remote():
    graph = load_deployment("so101")
    problem = policy_venv_problem(graph, "", lacks="NumPy 1.26.4 (the model needs NumPy 2), torch")
    assert "NumPy 1.26.4" in problem and "policy_venv:=" in problem and "backend:=remote" in problem
    assert policy_venv_problem(load_deployment("so101", {"backend": "remote"}), "", lacks="torch") == ""
    assert policy_venv_problem(graph, str(ROOT), lacks="torch") == ""
    assert "no tools/env.sh" in policy_venv_problem(graph, "/nonexistent", lacks="")
    policy = next(e for e in launch_entities(graph, policy_venv=str(ROOT)) if e["executable"] == "policy_node")
    assert policy["prefix"] == policy_prefix(str(ROOT))
    assert "prefix" not in next(e for e in launch_entities(load_deployment("so101", {"backend": "remote"}), policy_venv=str(ROOT))
                                if e["executable"] == "policy_node")


@pytest.mark.skipif(not (ROOT / "install/jazzy/molmoact2_msgs").is_dir(), reason="needs the jazzy venv (make setup)")
def test_policy_prefix_runs_the_venv_interpreter_under_an_apt_ros_environment(tmp_path):
    # an apt-ROS environment: its site-packages (here a NumPy 1.26 stand-in) first on PYTHONPATH
    apt = tmp_path / "opt_ros_jazzy_site"
    (apt / "numpy").mkdir(parents=True)
    (apt / "numpy" / "__init__.py").write_text("__version__ = '1.26.4'\n")
    probe = tmp_path / "probe_script"
    probe.write_text("import sys, numpy, rclpy\nprint(sys.prefix, numpy.__version__, sys.argv[1:])\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "PYTHONPATH": str(apt),
           "LD_LIBRARY_PATH": str(apt), "ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", "0")}
    cmd = shlex.split(policy_prefix(str(ROOT), "jazzy")) + [str(probe), "--ros-args", "-r", "__node:=policy"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    prefix, numpy_version, argv = out.stdout.split(" ", 2)
    assert Path(prefix) == ROOT / ".venv-jazzy"
    assert int(numpy_version.split(".")[0]) >= 2
    assert "'__node:=policy'" in argv


def test_launch_only_arguments_are_described():
    for name, description in (POLICY_VENV_ARGUMENT, POLICY_DISTRO_ARGUMENT):
        assert name not in {a.name for d in DEPLOYMENTS for a in declared_arguments(d)}
        assert len(description) > 10


# --- the README's commands ---------------------------------------------------------------------

def test_every_argument_the_readme_passes_to_a_deployment_exists():
    text = (ROOT / "README.md").read_text()
    launch_only = {POLICY_VENV_ARGUMENT[0], POLICY_DISTRO_ARGUMENT[0]}
    checked = 0
    for line in text.splitlines():
        for m in re.finditer(r"(?:ros2 launch (?:\S*/)?(\w+)\.launch\.py|molmoact2-run (\w+))((?:\s+[\w]+:=\S+)*)", line):
            deployment = m.group(1) or m.group(2)
            if deployment not in DEPLOYMENTS:
                continue
            names = {a.name for a in declared_arguments(deployment)} | (launch_only if m.group(1) else set())
            for arg in re.findall(r"(\w+):=", m.group(3)):
                assert arg in names, f"README: `{m.group(0).strip()}` passes '{arg}', which {deployment} does not declare"
                checked += 1
        # table rows: `launch/<d>.launch.py` ... `name:=value`
        row = re.search(r"`launch/(\w+)\.launch\.py`", line)
        if row and row.group(1) in DEPLOYMENTS and line.startswith("|"):
            names = {a.name for a in declared_arguments(row.group(1))}
            for arg in re.findall(r"`(\w+):=", line):
                assert arg in names, f"README row for {row.group(1)} names '{arg}', which it does not declare"
                checked += 1
    assert checked > 0
    common = re.search(r"Common ones: (.*?)\.\n\n", text, re.S)
    if common:
        everywhere = set.union(*({a.name for a in declared_arguments(d)} for d in DEPLOYMENTS))
        for arg in re.findall(r"`(\w+)`", common.group(1).split("(")[0] + " " + common.group(1)):
            if arg in ("hf", "lerobot", "remote", "shadow") or arg in launch_only:
                continue
            assert arg in everywhere, f"README names common argument '{arg}', which no deployment declares"


def test_a_failed_bring_up_ends_the_launch_with_the_managers_reason():
    from molmoact2_common.bringup.launch_mapping import ManagerExit

    exit_ = ManagerExit()
    exit_.on_output(b"[INFO] [1.0] [lifecycle_manager]: [bringup] configure /driver\n")
    exit_.on_output(b"[ERROR] [1.2] [lifecycle_manager]: bring-up failed at node /driver (configure): "
                    b"configure failed: serial port /dev/ttyACM0 not found\n")
    message = exit_.message(1)
    assert "code 1" in message and "/driver (configure)" in message and "/dev/ttyACM0 not found" in message
    assert "see its log" in ManagerExit().message(1)
