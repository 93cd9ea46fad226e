"""Declared parameters: typed, described, defaulted, and a bad value names the parameter."""

from __future__ import annotations

import pytest
from rclpy.parameter import Parameter

from molmoact2_common.params import ParameterError, ParamSpec, declare_parameters, positive

pytestmark = pytest.mark.ros

SPECS = [
    ParamSpec("rate_hz", float, 30.0, "policy rate", check=positive, requirement="> 0"),
    ParamSpec("mode", str, "continuous", "action mode", choices=("continuous", "discrete")),
    ParamSpec("cameras", "str[]", [], "camera names"),
    ParamSpec("dry_run", bool, True, "shadow mode"),
]


def test_defaults_are_declared_with_descriptions(ros):
    node = ros.node("params_defaults")
    values = declare_parameters(node, SPECS)
    assert values == {"rate_hz": 30.0, "mode": "continuous", "cameras": [], "dry_run": True}
    desc = node.describe_parameter("rate_hz")
    assert "policy rate" in desc.description


def test_overrides_are_read_including_empty_list_defaults(ros):
    node = ros.node("params_overrides", parameter_overrides=[
        Parameter("rate_hz", value=15.0), Parameter("cameras", value=["top", "left"])])
    values = declare_parameters(node, SPECS)
    assert values["rate_hz"] == 15.0
    assert values["cameras"] == ["top", "left"]


def test_bad_value_names_the_parameter(ros):
    node = ros.node("params_bad", parameter_overrides=[Parameter("rate_hz", value=-1.0)])
    with pytest.raises(ParameterError, match="'rate_hz'.*> 0"):
        declare_parameters(node, SPECS)


def test_value_outside_choices_names_the_parameter(ros):
    node = ros.node("params_choice", parameter_overrides=[Parameter("mode", value="banana")])
    with pytest.raises(ParameterError, match="'mode'.*continuous, discrete"):
        declare_parameters(node, SPECS)
