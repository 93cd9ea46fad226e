"""Declared and validated node parameters.

Each node lists its parameters once as ``ParamSpec``s: type, description and default are
declared with ROS, and the value is validated where it is read. A bad value raises
``ParameterError`` naming the parameter, so the node refuses to configure with one clear message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

_ROS_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    "str[]": ParameterType.PARAMETER_STRING_ARRAY,
    "float[]": ParameterType.PARAMETER_DOUBLE_ARRAY,
    "int[]": ParameterType.PARAMETER_INTEGER_ARRAY,
    "bool[]": ParameterType.PARAMETER_BOOL_ARRAY,
}

_PARAMETER_TYPES = {
    "str[]": Parameter.Type.STRING_ARRAY,
    "float[]": Parameter.Type.DOUBLE_ARRAY,
    "int[]": Parameter.Type.INTEGER_ARRAY,
    "bool[]": Parameter.Type.BOOL_ARRAY,
}


class ParameterError(ValueError):
    """A parameter value that the node refuses; the message names the parameter."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: Any  # bool, int, float, str or one of "str[]", "float[]", "int[]", "bool[]"
    default: Any
    description: str
    check: Callable[[Any], bool] | None = None
    requirement: str = ""  # shown when check() fails, e.g. "> 0"
    choices: tuple = field(default_factory=tuple)
    read_only: bool = False

    def validate(self, value: Any) -> Any:
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.choices and value not in self.choices:
            raise ParameterError(
                f"parameter '{self.name}' = {value!r}: must be one of {', '.join(map(str, self.choices))}"
            )
        if self.check is not None and not self.check(value):
            raise ParameterError(f"parameter '{self.name}' = {value!r}: must be {self.requirement}")
        return value


def positive(value: Any) -> bool:
    return value > 0


def non_negative(value: Any) -> bool:
    return value >= 0


def non_empty(value: Any) -> bool:
    return len(value) > 0


def declare_parameters(node: Node, specs: Iterable[ParamSpec]) -> dict[str, Any]:
    """Declare every spec on ``node`` and return the validated values by name."""
    values: dict[str, Any] = {}
    for spec in specs:
        descriptor = ParameterDescriptor(
            description=spec.description
            + (f" (one of: {', '.join(map(str, spec.choices))})" if spec.choices else "")
            + (f" [{spec.requirement}]" if spec.requirement else ""),
            type=_ROS_TYPES[spec.type],
            read_only=spec.read_only,
        )
        if not node.has_parameter(spec.name):
            if isinstance(spec.default, (list, tuple)) and len(spec.default) == 0:
                # ROS cannot infer an element type from an empty list: declare by type.
                node.declare_parameter(spec.name, _PARAMETER_TYPES[spec.type], descriptor)
            else:
                node.declare_parameter(spec.name, spec.default, descriptor)
        try:
            value = node.get_parameter(spec.name).value
        except ParameterUninitializedException:
            value = None
        if value is None:
            value = spec.default
        if isinstance(value, (list, tuple)) or spec.type in ("str[]", "float[]", "int[]", "bool[]"):
            value = list(value) if value is not None else []
        values[spec.name] = spec.validate(value)
    return values
