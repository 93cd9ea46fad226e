"""Maps a deployment graph to ``ros2 launch`` actions. Launch files stay one line of logic:
``return launch_description("so101")``; everything else comes from config/deployments/.

``launch_entities`` is pure data (tested against launch_ros's rules in tests/); ``launch_description``
imports launch/launch_ros, which exist only on an apt ROS install, and turns that data into
actions:

- every node a ``Node`` (a ``LifecycleNode`` for lifecycle nodes) with the graph's parameters,
  which are already only what launch_ros accepts (see ``graph._ros_parameters``);
- ``optional`` nodes (rviz2) are skipped with a note where their package is not installed, as
  ``molmoact2-run`` does;
- the lifecycle manager gets an ``OnProcessExit``: when it exits non-zero (a failed bring-up) the
  launch ends with the manager's reason (its "bring-up failed at node ..." line, raised from the
  handler: launch then shuts down and ``ros2 launch`` exits 1; a plain ``Shutdown`` would exit 0);
  when it stops normally the launch is shut down too;
- lifecycle nodes and the manager get a longer SIGINT -> SIGTERM escalation, so the manager's
  ordered tear-down (deactivate -> cleanup -> shutdown, reverse order) finishes first;
- the policy with an in-process model (``backend:=hf|lerobot``) runs in the project's venv
  (``policy_venv:=<workspace>``: the venv ``make setup`` built there, via ``tools/env.sh``), or the
  launch refuses with a message pointing at ``policy_venv`` and ``backend:=remote`` when the
  launching interpreter cannot run the model (an apt-ROS interpreter with NumPy 1.x, no torch).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from .graph import DeploymentGraph, GraphError, as_bool, declared_arguments, load_deployment

#: seconds between launch's SIGINT and its SIGTERM for lifecycle nodes and the manager (launch's
#: default is 5): the manager tears down in reverse order while the nodes hold
LIFECYCLE_SIGTERM_TIMEOUT_S = 20
LOCAL_MODEL_BACKENDS = ("hf", "lerobot")
#: launch-only arguments (not in the deployment descriptions: molmoact2-run runs in the venv already)
POLICY_VENV_ARGUMENT = ("policy_venv",
                        "workspace whose venv runs the policy (the directory holding tools/env.sh and the venv "
                        "`make setup` built; default $MOLMOACT2_POLICY_VENV); '' = the launching interpreter, "
                        "refused when it cannot run the model (use backend:=remote there)")
POLICY_DISTRO_ARGUMENT = ("policy_distro", "ROS distro of that venv (jazzy or kilted)")


def policy_prefix(workspace: str, distro: str = "jazzy") -> str:
    """A launch_ros ``prefix`` that runs the node's installed script under the workspace's venv
    python with the venv's environment (tools/env.sh), not the apt ROS one: the apt
    PYTHONPATH/LD_LIBRARY_PATH would put apt's rclpy and NumPy 1.x ahead of the venv's."""
    env_sh = Path(workspace) / "tools" / "env.sh"
    script = f'source {shlex.quote(str(env_sh))} {shlex.quote(distro)} && exec python "$@"'
    return ("env -u PYTHONPATH -u LD_LIBRARY_PATH -u AMENT_PREFIX_PATH -u CMAKE_PREFIX_PATH "
            f"bash -c {shlex.quote(script)} policy_node")


def interpreter_runs_the_model() -> str:
    """'' when this interpreter can run the model in-process, else what it lacks."""
    missing = []
    try:
        from importlib.metadata import version

        major = int(version("numpy").split(".")[0])
        if major < 2:
            missing.append(f"NumPy {version('numpy')} (the model needs NumPy 2)")
    except Exception:  # not installed
        missing.append("NumPy")
    if importlib.util.find_spec("torch") is None:
        missing.append("torch")
    return ", ".join(missing)


def policy_venv_problem(graph: DeploymentGraph, policy_venv: str, lacks: str | None = None) -> str:
    """Why the policy cannot start as configured ('' when it can); ``lacks`` defaults to what this
    interpreter lacks (``interpreter_runs_the_model``)."""
    policies = [n for n in graph.nodes if n.executable == "policy_node"]
    if not policies or all(str(n.parameters.get("backend", "hf")) not in LOCAL_MODEL_BACKENDS for n in policies):
        return ""
    if policy_venv:
        env_sh = Path(policy_venv) / "tools" / "env.sh"
        if not env_sh.is_file():
            return f"policy_venv:={policy_venv}: no tools/env.sh there (the molmoact2_ros workspace where `make setup` built the venv)"
        return ""
    lacks = interpreter_runs_the_model() if lacks is None else lacks
    if not lacks:
        return ""
    return (f"the policy runs the model in-process (backend:={policies[0].parameters.get('backend', 'hf')}), but this "
            f"interpreter ({sys.executable}) lacks {lacks}: pass policy_venv:=<the molmoact2_ros workspace where "
            "`make setup` built the venv>, or run the model on an /act server with backend:=remote remote_url:=...")


def launch_entities(graph: DeploymentGraph, policy_venv: str = "", policy_distro: str = "jazzy") -> list[dict[str, Any]]:
    """Every process the launch file starts, as keyword arguments of launch_ros's Node plus
    ``lifecycle`` (LifecycleNode), ``optional`` (skipped when the package is not installed) and
    ``on_exit`` ("shutdown_on_failure": end the launch when it exits non-zero)."""
    use_sim_time = as_bool(graph.arguments.get("use_sim_time", "false"), "use_sim_time")
    entities = []
    for spec in graph.nodes:
        params = dict(spec.parameters)
        params.setdefault("use_sim_time", use_sim_time)
        entity = {
            "package": spec.package, "executable": spec.executable, "name": spec.name,
            "namespace": "/" + spec.namespace.strip("/") if spec.namespace.strip("/") else "",
            "parameters": [params], "remappings": list(spec.remappings.items()),
            "arguments": list(spec.extra_args), "lifecycle": spec.lifecycle, "optional": spec.optional,
        }
        if spec.lifecycle:
            entity["sigterm_timeout"] = str(LIFECYCLE_SIGTERM_TIMEOUT_S)
        if spec.executable == "policy_node" and policy_venv and str(params.get("backend", "hf")) in LOCAL_MODEL_BACKENDS:
            entity["prefix"] = policy_prefix(policy_venv, policy_distro)
        entities.append(entity)
    lifecycle = graph.lifecycle_nodes()
    if lifecycle:
        namespace = graph.arguments.get("namespace", "").strip("/")
        # decided from the drivers' backends (and checked again against each running driver's
        # parameters before its start), never from an argument
        manager_params = {"nodes": [s.fully_qualified_name for s in lifecycle],
                          "autostart_arms": graph.autostart_arms, "use_sim_time": use_sim_time}
        arm_drivers = [s.fully_qualified_name for s in lifecycle if s.arm_driver]
        if arm_drivers:  # an empty list is no parameter launch_ros accepts: the default [] applies
            manager_params["arm_drivers"] = arm_drivers
        entities.append({
            "package": "molmoact2_common", "executable": "lifecycle_manager", "name": "lifecycle_manager",
            "namespace": f"/{namespace}" if namespace else "",
            "parameters": [manager_params],
            "remappings": [], "arguments": [], "lifecycle": False, "optional": False,
            "sigterm_timeout": str(LIFECYCLE_SIGTERM_TIMEOUT_S), "on_exit": "shutdown_on_failure",
        })
    return entities


class ManagerExit:
    """What ends the launch when the lifecycle manager exits non-zero: the manager's own
    "bring-up failed at node ... (step): reason" line (read from its output), raised, so that
    ``ros2 launch`` shuts everything down and exits 1 (a ``Shutdown`` event alone exits 0)."""

    MARK = "bring-up failed at node"

    def __init__(self) -> None:
        self.reason = ""

    def on_output(self, text: bytes | str) -> None:
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        for line in text.splitlines():
            if self.MARK in line:
                self.reason = line[line.index(self.MARK):].strip()

    def message(self, returncode: int) -> str:
        return (f"lifecycle manager exited with code {returncode}: "
                f"{self.reason or 'see its log above for the node and the reason'}; stopping the launch")


def _package_installed(package: str) -> bool:
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix(package)
        return True
    except PackageNotFoundError:
        return False


def launch_description(deployment: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
    from launch.event_handlers import OnProcessExit, OnProcessIO
    from launch.events import Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode, Node

    arguments = declared_arguments(deployment)
    extra = [(POLICY_VENV_ARGUMENT, os.environ.get("MOLMOACT2_POLICY_VENV", "")),
             (POLICY_DISTRO_ARGUMENT, os.environ.get("MOLMOACT2_ROS_DISTRO", "jazzy"))]

    def setup(context, *args, **kwargs):
        overrides = {a.name: LaunchConfiguration(a.name).perform(context) for a in arguments}
        policy_venv = LaunchConfiguration(POLICY_VENV_ARGUMENT[0]).perform(context)
        policy_distro = LaunchConfiguration(POLICY_DISTRO_ARGUMENT[0]).perform(context)
        try:
            graph = load_deployment(deployment, overrides)
        except GraphError as exc:
            raise RuntimeError(f"{deployment}: {exc}") from None
        problem = policy_venv_problem(graph, policy_venv)
        if problem:
            raise RuntimeError(f"{deployment}: {problem}")
        actions = []
        for e in launch_entities(graph, policy_venv, policy_distro):
            lifecycle = e.pop("lifecycle")
            optional = e.pop("optional")
            on_exit = e.pop("on_exit", None)
            if optional and not _package_installed(e["package"]):
                actions.append(LogInfo(msg=f"skipping optional {e['name']}: package '{e['package']}' is not installed"))
                continue
            node = (LifecycleNode if lifecycle else Node)(output="screen", **e)
            actions.append(node)
            if on_exit == "shutdown_on_failure":
                failure = ManagerExit()

                def on_manager_exit(event, context, failure=failure):
                    if event.returncode == 0:
                        return [EmitEvent(event=Shutdown(reason="the lifecycle manager stopped"))]
                    # an exception in a handler: launch logs it, shuts down and returns 1
                    raise RuntimeError(failure.message(event.returncode))

                def on_manager_output(event, failure=failure):
                    failure.on_output(event.text)

                actions.append(RegisterEventHandler(OnProcessIO(target_action=node, on_stdout=on_manager_output,
                                                                on_stderr=on_manager_output)))
                actions.append(RegisterEventHandler(OnProcessExit(target_action=node, on_exit=on_manager_exit)))
        return actions

    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                               **({"choices": list(a.choices)} if a.choices else {}))
         for a in arguments]
        + [DeclareLaunchArgument(name, default_value=default, description=description)
           for (name, description), default in extra]
        + [OpaqueFunction(function=setup)]
    )
