"""Deployment graph descriptions: the one source of truth for which nodes run, with which names,
namespaces, parameters, remappings and lifecycle order.

Pure Python. ``launch/*.launch.py`` map a resolved graph to launch actions; ``runner.py`` starts
the same graph as processes. A description is YAML under ``config/deployments/``::

    deployment: so101
    arguments:                      # every knob, with a description (launch arguments)
      - {name: rate, default: "1.0", type: float, description: "..."}   # type: str (default), bool, int, float, str[]
    nodes:
      - name: driver_${arm}         # ${arg} substitutes an argument; ${arm} inside for_each_arm
        package: molmoact2_drivers
        executable: driver_node
        namespace: ${namespace}
        for_each_arm: true
        lifecycle: true             # brought up by the lifecycle manager, in lifecycle_order
        lifecycle_order: 20
        if: sim                     # or unless: sim; or if: "!record"; or if: "robot == yam_bimanual" (or !=)
        parameters: {arm: ${arm}, backend_options: {json: {port: "${port}"}}}
        remappings: {joint_states: /joint_states}

``{json: {...}}`` makes a JSON-object string parameter whose empty fields are left out (an empty
argument then means the embodiment's own value). A parameter that is one whole ``${arg}`` takes the argument's declared type (``rate: "${rate}"``
is a float even for ``rate:=2``; an untyped argument stays a string, so ``instruction:=yes`` is
the string "yes"). Parameters reach the node only as values launch_ros and ``ros2 param`` accept:
an empty list is left out (the node's declared default applies; neither launch_ros nor a
parameter file can type an empty list), a list must be non-empty and of one type.

Arm drivers (``arm_driver: true``) have their backend resolved here, as the driver node will
build it (its ``backend`` and ``backend_options`` parameters over the embodiment's
``arms[].backend``): automatic arming after bring-up (``DeploymentGraph.autostart_arms``) follows
from the backends alone, never from an argument.
"""

from __future__ import annotations

import json
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


#: backend types that never drive hardware. ``ros2_control`` is simulated only when its options say
#: ``simulated: true`` (the project's MuJoCo robot node); the drivers' classes carry the same
#: ``ArmBackend.simulated`` flag (tests/test_bringup_safety.py checks the two agree).
SIMULATED_BACKENDS = frozenset({"kinematic", "mujoco"})
ARGUMENT_TYPES = ("str", "bool", "int", "float", "str[]")


def backend_is_simulated(kind: str, options: dict) -> bool:
    """Whether a backend of this type with these (merged) options is a simulated one."""
    if kind in SIMULATED_BACKENDS:
        return True
    return kind == "ros2_control" and options.get("simulated") is True


def resolve_arm_backend(embodiment: str, arm: str = "", backend: str = "", backend_options: str = "") -> tuple[str, bool]:
    """(type, simulated) of the backend a driver node with these parameters builds, as the driver
    resolves it: ``backend`` overrides the type, ``backend_options`` (JSON) the fields of the arm's
    ``arms[].backend``. Raises GraphError when they do not resolve."""
    try:
        emb = load_embodiment(embodiment)
    except EmbodimentError as exc:
        raise GraphError(str(exc)) from None
    if not arm:
        if len(emb.arms) != 1:
            raise GraphError(f"embodiment '{emb.name}' has arms {', '.join(a.name for a in emb.arms)}: the driver must name one")
        arm = emb.arms[0].name
    try:
        arm_config = emb.arm(arm)
    except (KeyError, EmbodimentError):
        raise GraphError(f"embodiment '{emb.name}' has no arm '{arm}'") from None
    try:
        options = json.loads(backend_options) if backend_options else {}
    except json.JSONDecodeError as exc:
        raise GraphError(f"backend_options {backend_options!r}: not JSON: {exc}") from None
    if not isinstance(options, dict):
        raise GraphError(f"backend_options {backend_options!r}: must be a JSON object")
    merged = {**dict(arm_config.backend or {}), **options}
    kind = str(backend or merged.get("type") or "")
    return kind, backend_is_simulated(kind, merged)


@dataclass(frozen=True)
class LaunchArgument:
    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()
    type: str = "str"

    def convert(self, value: str) -> Any:
        """The argument's value as its declared type; GraphError names the argument."""
        if self.type == "str":
            return value
        if self.type == "bool":
            return as_bool(value, self.name)
        if self.type in ("int", "float"):
            try:
                return int(value) if self.type == "int" else float(value)
            except ValueError:
                raise GraphError(f"argument '{self.name}' = {value!r}: expected {'an integer' if self.type == 'int' else 'a number'}") from None
        # str[]: a YAML flow list ([a, b]) or comma-separated; "" and "[]" are the empty list
        text = value.strip()
        if text in ("", "[]"):
            return []
        if text.startswith("["):
            try:
                items = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise GraphError(f"argument '{self.name}' = {value!r}: not a list: {exc}") from None
            if not isinstance(items, list) or any(isinstance(x, (list, dict)) or x is None for x in items):
                raise GraphError(f"argument '{self.name}' = {value!r}: expected a list of strings, e.g. [a, b]")
            return [str(x) for x in items]
        return [x.strip() for x in text.split(",") if x.strip()]


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
    # arm drivers of a real robot wait for the operator's start; simulated arms are started
    # automatically (decided from backend_simulated of every arm driver, never from an argument)
    arm_driver: bool = False
    backend_type: str = ""  # arm drivers: the backend the driver will build
    backend_simulated: bool = False
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

    @property
    def arm_drivers(self) -> list[NodeSpec]:
        return [n for n in self.nodes if n.arm_driver]

    @property
    def autostart_arms(self) -> bool:
        """Arm automatically after bring-up: only when every arm driver's backend is simulated."""
        return bool(self.arm_drivers) and all(n.backend_simulated for n in self.arm_drivers)

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
        kind = str(a.get("type", "str"))
        if kind not in ARGUMENT_TYPES:
            raise GraphError(f"{path}: arguments[{i}] ({a['name']}): type '{kind}' is not one of {', '.join(ARGUMENT_TYPES)}")
        args.append(LaunchArgument(str(a["name"]), str(a.get("default", "")), str(a["description"]),
                                   tuple(str(c) for c in a.get("choices", ())), kind))
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


def _substitute(value: Any, scope: dict[str, str], where: str, path: Path, typed: dict[str, Any] | None = None) -> Any:
    """Replace ``${arg}`` in strings. A value that is one whole ``${arg}`` becomes the argument's
    typed value (``typed``: declared arguments converted to their type); built-ins stay strings."""
    if isinstance(value, dict):
        return {k: _substitute(v, scope, f"{where}.{k}", path, typed) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, scope, f"{where}[{i}]", path, typed) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def repl(m: re.Match) -> str:
        key = m.group(1)
        if key not in scope:
            raise GraphError(f"{path}: '{where}' uses ${{{key}}}, which is not a declared argument")
        return str(scope[key])

    whole = _SUBST.fullmatch(value.strip())
    out = _SUBST.sub(repl, value)
    if whole and typed is not None and whole.group(1) in typed:
        return typed[whole.group(1)]
    return out


def _ros_parameters(params: dict[str, Any], node: str, path: Path) -> dict[str, Any]:
    """Only what launch_ros's parameter evaluation and rcl's parameter files accept: scalars
    (bool, int, float, str) and non-empty lists of one of them; an empty list is left out so the
    node's declared default applies (launch_ros raises "Expected 'value' to be one of [float, int,
    str, bool, bytes], but got '()'" for it)."""
    out = {}
    for key, value in params.items():
        where = f"{path}: node '{node}' parameter '{key}'"
        if isinstance(value, dict) and set(value) == {"json"} and isinstance(value["json"], dict):
            # {json: {port: "${port}", calibration: "${calibration}"}}: a JSON-object string
            # parameter; an empty field is left out, so an empty argument means "as configured"
            value = json.dumps({k: v for k, v in value["json"].items() if v not in ("", [], None)})
        if isinstance(value, (list, tuple)):
            if not value:
                continue
            kinds = {type(v) for v in value}
            if len(kinds) != 1 or not kinds <= {bool, int, float, str}:
                if kinds == {int, float}:
                    value = [float(v) for v in value]
                else:
                    raise GraphError(f"{where} = {list(value)!r}: a list parameter needs items of one type (bool, int, float or str)")
            out[key] = list(value)
        elif isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            raise GraphError(f"{where} = {value!r}: a parameter is a bool, int, float, str or a list of one of them")
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
    typed = {a.name: a.convert(scope[a.name]) for a in args}

    # Built-ins every description may use: ${ns} ("" or "/<namespace>"), ${config_dir}, and with an
    # embodiment ${camera0}, ${camera1}, ... (its cameras in model order).
    namespace = scope.get("namespace", "").strip("/")
    scope = {**scope, "ns": f"/{namespace}" if namespace else "", "config_dir": str(config_root())}

    embodiment = None
    embodiment_ref = ""
    if "embodiment" in raw:
        embodiment_ref = str(_substitute(str(raw["embodiment"]), scope, "embodiment", path))
        try:
            embodiment = load_embodiment(embodiment_ref)
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
            name = str(_substitute(node["name"], s, f"{where}.name", path))
            parameters = _ros_parameters(_substitute(dict(node.get("parameters") or {}), s, f"{where}.parameters", path, typed),
                                         name, path)
            arm_driver = bool(node.get("arm_driver", False))
            backend_type, simulated = "", False
            if arm_driver:
                try:
                    backend_type, simulated = resolve_arm_backend(
                        str(parameters.get("embodiment") or embodiment_ref),
                        str(parameters.get("arm", "")), str(parameters.get("backend", "")),
                        str(parameters.get("backend_options", "")))
                except GraphError as exc:
                    raise GraphError(f"{path}: {where} ({name}): {exc}") from None
            nodes.append(NodeSpec(
                name=name,
                package=str(node["package"]),
                executable=str(node["executable"]),
                namespace=str(_substitute(node.get("namespace", "${namespace}" if "namespace" in s else ""), s, f"{where}.namespace", path) or ""),
                parameters=parameters,
                remappings={str(k): str(v) for k, v in _substitute(dict(node.get("remappings") or {}), s, f"{where}.remappings", path).items()},
                lifecycle=bool(node.get("lifecycle", False)),
                lifecycle_order=int(node.get("lifecycle_order", 100)),
                arm_driver=arm_driver,
                backend_type=backend_type,
                backend_simulated=simulated,
                extra_args=[str(x) for x in _substitute(list(node.get("extra_args") or []), s, f"{where}.extra_args", path)],
                optional=bool(node.get("optional", False)),
            ))
    names = [n.fully_qualified_name for n in nodes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise GraphError(f"{path}: two nodes share the name {', '.join(dupes)}")
    arguments = {a.name: scope[a.name] for a in args}
    if "sim" in scope and as_bool(scope["sim"], "sim"):
        real = [f"{n.fully_qualified_name} ({n.backend_type or 'no backend'})" for n in nodes if n.arm_driver and not n.backend_simulated]
        if real:
            raise GraphError(
                f"{path}: sim:=true, but {', '.join(real)} {'drives' if len(real) == 1 else 'drive'} real hardware: "
                "automatic arming follows the drivers' backends, not this argument (a simulated arm: "
                "arm_backend:=kinematic, or launch/sim.launch.py for the MuJoCo robot)")
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
