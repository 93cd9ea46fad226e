"""Bring-up: the graph description resolves, the runner starts it as processes, the lifecycle
manager configures/activates in order, names the node that failed and why, and tears down."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from molmoact2_common.bringup.graph import GraphError, load_deployment
from molmoact2_common.bringup.runner import run
from support.ros_harness import ROOT



def _fake_package(prefix: Path, package: str, executable: str, script: Path) -> None:
    """An ament prefix holding one package with one executable, as colcon would install it."""
    (prefix / "share/ament_index/resource_index/packages").mkdir(parents=True, exist_ok=True)
    (prefix / "share/ament_index/resource_index/packages" / package).write_text("")
    exe = prefix / "lib" / package / executable
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text(f"#!{sys.executable}\nimport runpy; runpy.run_path({str(script)!r}, run_name='__main__')\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)


def _description(tmp_path: Path, fail_second: bool) -> Path:
    desc = {
        "deployment": "probe_graph",
        "arguments": [
            {"name": "namespace", "default": "robot", "description": "namespace of every node"},
            {"name": "sim", "default": "true", "description": "simulation: arm automatically"},
            {"name": "use_sim_time", "default": "false", "description": "use /clock"},
            {"name": "fail", "default": "true" if fail_second else "false", "description": "make the second node fail"},
            {"name": "extra", "default": "false", "description": "start the optional node"},
        ],
        "nodes": [
            {"name": "first", "package": "probe_pkg", "executable": "probe", "lifecycle": True,
             "lifecycle_order": 10, "arm_driver": True},
            {"name": "second", "package": "probe_pkg", "executable": "probe", "lifecycle": True,
             "lifecycle_order": 20, "parameters": {"fail_configure": "${fail}"}},
            {"name": "optional", "package": "probe_pkg", "executable": "probe", "if": "extra"},
        ],
    }
    path = tmp_path / "probe_graph.yaml"
    path.write_text(yaml.safe_dump(desc))
    return path


def test_graph_resolves_arguments_conditions_and_types(tmp_path):
    graph = load_deployment(_description(tmp_path, fail_second=True))
    assert [n.name for n in graph.nodes] == ["first", "second"]
    assert graph.node("second").parameters == {"fail_configure": True}
    assert graph.node("first").fully_qualified_name == "/robot/first"
    graph = load_deployment(_description(tmp_path, fail_second=False), {"extra": "true", "namespace": ""})
    assert [n.fully_qualified_name for n in graph.nodes] == ["/first", "/second", "/optional"]
    with pytest.raises(GraphError, match="unknown argument 'nope'"):
        load_deployment(_description(tmp_path, fail_second=False), {"nope": "1"})


@pytest.fixture
def probe_prefix(tmp_path, monkeypatch):
    prefix = tmp_path / "prefix"
    _fake_package(prefix, "probe_pkg", "probe", ROOT / "tests/support/lifecycle_probe_node.py")
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{prefix}:{os.environ.get('AMENT_PREFIX_PATH', '')}")
    return prefix


@pytest.mark.ros
@pytest.mark.slow
def test_runner_brings_up_in_order_arms_in_sim_and_tears_down(tmp_path, probe_prefix):
    events_file = tmp_path / "events.txt"
    graph = load_deployment(_description(tmp_path, fail_second=False))
    for node in graph.nodes:
        node.parameters["events_file"] = str(events_file)
    messages: list[str] = []
    code = run(graph, duration=0.5, log_dir=tmp_path / "logs", echo=messages.append)
    assert code == 0, "\n".join(messages)
    lines = events_file.read_text().splitlines()
    events = [e.split(":", 1)[1] for e in sorted(lines, key=lambda e: int(e.split(":", 1)[0]))]
    expected_prefix = ["/robot/first:configure", "/robot/second:configure",
                       "/robot/first:activate", "/robot/second:activate", "/robot/first:start"]
    seen = [e for e in events if e in expected_prefix]
    assert seen == expected_prefix, events
    teardown = [e for e in events if e.split(":")[1] in ("deactivate", "cleanup", "shutdown")]
    assert teardown[:3] == ["/robot/second:deactivate", "/robot/second:cleanup", "/robot/second:shutdown"], events
    assert "/robot/first:shutdown" in teardown


@pytest.mark.ros
@pytest.mark.slow
def test_runner_names_the_failed_node_and_its_reason(tmp_path, probe_prefix):
    graph = load_deployment(_description(tmp_path, fail_second=True))
    messages: list[str] = []
    code = run(graph, duration=0.5, log_dir=tmp_path / "logs", echo=messages.append)
    assert code == 1
    error = next(m for m in messages if "ERROR" in m)
    assert "/robot/second" in error and "configure" in error
    assert "camera 'top' has no source" in error
