"""Maps a deployment graph to ``ros2 launch`` actions. Launch files stay one line of logic:
``return launch_description("so101")``; everything else comes from config/deployments/.

``launch_entities`` is pure data (tested); ``launch_description`` imports launch/launch_ros, which
exist only on an apt ROS install, and turns that data into actions.
"""

from __future__ import annotations

from typing import Any

from .graph import DeploymentGraph, as_bool, declared_arguments, load_deployment


def launch_entities(graph: DeploymentGraph) -> list[dict[str, Any]]:
    """Every process the launch file starts, as keyword arguments of launch_ros's Node."""
    use_sim_time = as_bool(graph.arguments.get("use_sim_time", "false"), "use_sim_time")
    entities = []
    for spec in graph.nodes:
        params = dict(spec.parameters)
        params.setdefault("use_sim_time", use_sim_time)
        entities.append({
            "package": spec.package, "executable": spec.executable, "name": spec.name,
            "namespace": "/" + spec.namespace.strip("/") if spec.namespace.strip("/") else "",
            "parameters": [params], "remappings": list(spec.remappings.items()),
            "arguments": list(spec.extra_args), "lifecycle": spec.lifecycle,
        })
    lifecycle = graph.lifecycle_nodes()
    if lifecycle:
        sim = as_bool(graph.arguments.get("sim", "false"), "sim")
        entities.append({
            "package": "molmoact2_common", "executable": "lifecycle_manager", "name": "lifecycle_manager",
            "namespace": "/" + graph.arguments.get("namespace", "").strip("/") if graph.arguments.get("namespace", "").strip("/") else "",
            "parameters": [{"nodes": [s.fully_qualified_name for s in lifecycle],
                            "arm_drivers": [s.fully_qualified_name for s in lifecycle if s.arm_driver],
                            "autostart_arms": sim, "use_sim_time": use_sim_time}],
            "remappings": [], "arguments": [], "lifecycle": False,
        })
    return entities


def launch_description(deployment: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode, Node

    arguments = declared_arguments(deployment)

    def setup(context, *args, **kwargs):
        overrides = {a.name: LaunchConfiguration(a.name).perform(context) for a in arguments}
        graph = load_deployment(deployment, overrides)
        actions = []
        for e in launch_entities(graph):
            lifecycle = e.pop("lifecycle")
            if lifecycle:
                actions.append(LifecycleNode(output="screen", **e))
            else:
                actions.append(Node(output="screen", **e))
        return actions

    return LaunchDescription(
        [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                               **({"choices": list(a.choices)} if a.choices else {}))
         for a in arguments]
        + [OpaqueFunction(function=setup)]
    )
