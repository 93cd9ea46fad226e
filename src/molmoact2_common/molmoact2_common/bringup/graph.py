"""Deployment graph descriptions: the one source of truth for which nodes run, with which names,
namespaces, parameters, remappings and lifecycle order.

Pure Python. ``launch/*.launch.py`` map a resolved graph to launch actions; ``runner.py`` starts
the same graph as processes. A description is YAML under ``config/deployments/``::

    deployment: so101
    arguments:                      # every knob, with a description (launch arguments)
      - {name: sim, default: "false", description: "..."}
    nodes:
      - name: driver_${arm}         # ${arg} substitutes an argument; ${arm} inside for_each_arm
        package: molmoact2_drivers
        executable: driver_node
        namespace: ${namespace}
        for_each_arm: true
        lifecycle: true             # brought up by the lifecycle manager, in lifecycle_order
        lifecycle_order: 20
        if: sim                     # or unless: sim; or if: "!record"; or if: "robot == yam_bimanual" (or !=)
        parameters: {arm: ${arm}}
        remappings: {joint_states: /joint_states}
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..embodiment import EmbodimentError, config_root, load_embodiment

_SUBST = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


class GraphError(ValueError):
    """A deployment description or argument the bring-up refuses; names the field and the file."""


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


@dataclass
class NodeSpec:
    name: str
    package: str
    executable: str
    namespace: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)
    lifecycle: bool = False
    lifecycle_order: int = 100
    # arm drivers of a real robot wait for the operator's start; sim arms are started automatically
    arm_driver: bool = False
    extra_args: list[str] = field(default_factory=list)
    # a tool that only an apt ROS install has (rviz2): the runner skips it with a note
    optional: bool = False

    @property
    def fully_qualified_name(self) -> str:
        ns = self.namespace.strip("/")
        return f"/{ns}/{self.name}" if ns else f"/{self.name}"


@dataclass
class DeploymentGraph:
    name: str
    path: Path
    description: str
    arguments: dict[str, str]
    nodes: list[NodeSpec]

    def lifecycle_nodes(self) -> list[NodeSpec]:
        return sorted((n for n in self.nodes if n.lifecycle), key=lambda n: n.lifecycle_order)

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def deployments_dir() -> Path:
    return config_root() / "deployments"


def resolve_deployment_path(name_or_path: str | os.PathLike) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return p
    return deployments_dir() / f"{name_or_path}.yaml"


def read_description(name_or_path: str | os.PathLike) -> tuple[dict, Path]:
    path = resolve_deployment_path(name_or_path)
    if not path.is_file():
        available = sorted(p.stem for p in deployments_dir().glob("*.yaml"))
        raise GraphError(f"deployment '{name_or_path}' not found at {path} (available: {', '.join(available)})")
    return yaml.safe_load(path.read_text()) or {}, path


def declared_arguments(name_or_path: str | os.PathLike) -> list[LaunchArgument]:
    raw, path = read_description(name_or_path)
    args = []
    for i, a in enumerate(raw.get("arguments") or []):
        if "name" not in a or "description" not in a:
            raise GraphError(f"{path}: arguments[{i}] needs a name and a description")
        args.append(LaunchArgument(str(a["name"]), str(a.get("default", "")), str(a["description"]),
                                   tuple(str(c) for c in a.get("choices", ()))))
    return args


def as_bool(value: Any, name: str = "value") -> bool:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise GraphError(f"argument '{name}' = {value!r}: expected true or false")


def _substitute(value: Any, scope: dict[str, str], where: str, path: Path) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, scope, f"{where}.{k}", path) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, scope, f"{where}[{i}]", path) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def repl(m: re.Match) -> str:
        key = m.group(1)
        if key not in scope:
            raise GraphError(f"{path}: '{where}' uses ${{{key}}}, which is not a declared argument")
        return str(scope[key])

    whole = _SUBST.fullmatch(value.strip())
    out = _SUBST.sub(repl, value)
    if whole:
        # A parameter that is one whole substitution takes the argument's YAML type (true -> bool).
        try:
            parsed = yaml.safe_load(out) if out != "" else ""
        except yaml.YAMLError:
            parsed = out
        if isinstance(parsed, list) and all(isinstance(x, (bool, int, float, str)) for x in parsed):
            return parsed  # a list argument such as "[a, b]" becomes a list parameter
        return parsed if isinstance(parsed, (bool, int, float, str)) else out
    return out


def _condition(node: dict, scope: dict[str, str], path: Path) -> bool:
    """``if``/``unless``: a boolean argument (``sim``, ``!sim``) or a comparison (``robot == yam_bimanual``,
    ``robot != so101``) of an argument's value with a literal."""
    for key, expect in (("if", True), ("unless", False)):
        if key in node:
            expr = str(node[key]).strip()
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*(==|!=)\s*(\S+)", expr)
            if m:
                arg, op, literal = m.groups()
            else:
                negate = expr.startswith("!")
                arg = expr.lstrip("!")
            if arg not in scope:
                raise GraphError(f"{path}: node '{node.get('name')}' condition '{key}: {expr}' names no argument")
            if m:
                value = (str(scope[arg]) == literal) ^ (op == "!=")
            else:
                value = as_bool(scope[arg], arg) ^ negate
            if value != expect:
                return False
    return True


def load_deployment(name_or_path: str | os.PathLike, overrides: dict[str, str] | None = None) -> DeploymentGraph:
    """Resolve a deployment description with argument overrides into concrete node specs."""
    raw, path = read_description(name_or_path)
    args = declared_arguments(path)
    scope = {a.name: a.default for a in args}
    for key, value in (overrides or {}).items():
        if key not in scope:
            raise GraphError(f"{path}: unknown argument '{key}' (arguments: {', '.join(sorted(scope))})")
        scope[key] = str(value)
    for a in args:
        if a.choices and scope[a.name] not in a.choices:
            raise GraphError(f"argument '{a.name}' = '{scope[a.name]}': must be one of {', '.join(a.choices)}")

    # Built-ins every description may use: ${ns} ("" or "/<namespace>"), ${config_dir}, and with an
    # embodiment ${camera0}, ${camera1}, ... (its cameras in model order).
    namespace = scope.get("namespace", "").strip("/")
    scope = {**scope, "ns": f"/{namespace}" if namespace else "", "config_dir": str(config_root())}

    embodiment = None
    if "embodiment" in raw:
        try:
            embodiment = load_embodiment(_substitute(str(raw["embodiment"]), scope, "embodiment", path))
        except EmbodimentError as exc:
            raise GraphError(str(exc)) from None
        # ${camera0}, ${camera1}, ...: the embodiment's cameras in model order
        scope.update({f"camera{i}": c for i, c in enumerate(embodiment.model.camera_order)})

    nodes: list[NodeSpec] = []
    for i, node in enumerate(raw.get("nodes") or []):
        where = f"nodes[{i}]"
        for key in ("name", "package", "executable"):
            if key not in node:
                raise GraphError(f"{path}: {where} is missing '{key}'")
        if not _condition(node, scope, path):
            continue
        scopes = [scope]
        if node.get("for_each_arm"):
            if embodiment is None:
                raise GraphError(f"{path}: {where} uses for_each_arm but the deployment names no embodiment")
            scopes = [{**scope, "arm": arm.name} for arm in embodiment.arms]
        for s in scopes:
            nodes.append(NodeSpec(
                name=str(_substitute(node["name"], s, f"{where}.name", path)),
                package=str(node["package"]),
                executable=str(node["executable"]),
                namespace=str(_substitute(node.get("namespace", "${namespace}" if "namespace" in s else ""), s, f"{where}.namespace", path) or ""),
                parameters=_substitute(dict(node.get("parameters") or {}), s, f"{where}.parameters", path),
                remappings={str(k): str(v) for k, v in _substitute(dict(node.get("remappings") or {}), s, f"{where}.remappings", path).items()},
                lifecycle=bool(node.get("lifecycle", False)),
                lifecycle_order=int(node.get("lifecycle_order", 100)),
                arm_driver=bool(node.get("arm_driver", False)),
                extra_args=[str(x) for x in _substitute(list(node.get("extra_args") or []), s, f"{where}.extra_args", path)],
                optional=bool(node.get("optional", False)),
            ))
    names = [n.fully_qualified_name for n in nodes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise GraphError(f"{path}: two nodes share the name {', '.join(dupes)}")
    arguments = {a.name: scope[a.name] for a in args}
    return DeploymentGraph(str(raw.get("deployment", path.stem)), path, str(raw.get("description", "")), arguments, nodes)


def ros_args(spec: NodeSpec, params_file: str | None = None, use_sim_time: bool | None = None) -> list[str]:
    """The --ros-args a process needs to become this node (what launch_ros would pass)."""
    out = ["--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace.strip("/"):
        out += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
    for src, dst in spec.remappings.items():
        out += ["-r", f"{src}:={dst}"]
    if params_file:
        out += ["--params-file", params_file]
    if use_sim_time is not None:
        out += ["-p", f"use_sim_time:={'true' if use_sim_time else 'false'}"]
    return out + spec.extra_args


def params_file_content(spec: NodeSpec, use_sim_time: bool | None = None) -> dict:
    params = dict(spec.parameters)
    if use_sim_time is not None:
        params.setdefault("use_sim_time", use_sim_time)
    return {spec.fully_qualified_name: {"ros__parameters": params}}
