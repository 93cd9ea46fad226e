"""Bring-up: the graph description resolves, the runner starts it as processes, the lifecycle
manager configures/activates in order, names the node that failed and why, arms only drivers that
report a simulated backend, holds the drivers when a managed node dies, and tears down in reverse
order, also when every process gets SIGINT at once (``ros2 launch``'s Ctrl-C)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
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
            {"name": "fail", "default": "true" if fail_second else "false", "type": "bool", "description": "make the second node fail"},
            {"name": "extra", "default": "false", "type": "bool", "description": "start the optional node"},
            {"name": "arm_backend", "default": "kinematic", "description": "the arm driver's backend"},
            {"name": "rate", "default": "1.0", "type": "float", "description": "a float parameter"},
            {"name": "note", "default": "", "description": "a string parameter"},
            {"name": "topics", "default": "[]", "type": "str[]", "description": "a list parameter"},
        ],
        "nodes": [
            {"name": "first", "package": "probe_pkg", "executable": "probe", "lifecycle": True,
             "lifecycle_order": 10, "arm_driver": True,
             "parameters": {"embodiment": "so101", "backend": "${arm_backend}"}},
            {"name": "second", "package": "probe_pkg", "executable": "probe", "lifecycle": True,
             "lifecycle_order": 20, "parameters": {"fail_configure": "${fail}"}},
            {"name": "optional", "package": "probe_pkg", "executable": "probe", "if": "extra",
             "parameters": {"rate": "${rate}", "note": "${note}", "topics": "${topics}"}},
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
    assert graph.node("first").backend_type == "kinematic" and graph.autostart_arms
    graph = load_deployment(_description(tmp_path, fail_second=False), {"extra": "true", "namespace": ""})
    assert [n.fully_qualified_name for n in graph.nodes] == ["/first", "/second", "/optional"]
    # the empty list is left out (the node's declared default applies), the empty string stays
    assert graph.node("optional").parameters == {"rate": 1.0, "note": ""}


def test_a_parameter_takes_its_arguments_declared_type(tmp_path):
    graph = load_deployment(_description(tmp_path, fail_second=False),
                            {"extra": "true", "rate": "2", "note": "yes", "topics": "[/a, /b]"})
    params = graph.node("optional").parameters
    assert params["rate"] == 2.0 and isinstance(params["rate"], float)  # rclpy refuses an int for a float
    assert params["note"] == "yes"  # an untyped argument stays a string (YAML would make it True)
    assert params["topics"] == ["/a", "/b"]
    with pytest.raises(GraphError, match="argument 'rate' = 'fast': expected a number"):
        load_deployment(_description(tmp_path, fail_second=False), {"rate": "fast"})
    with pytest.raises(GraphError, match="argument 'extra' = 'maybe': expected true or false"):
        load_deployment(_description(tmp_path, fail_second=False), {"extra": "maybe"})
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


# --- the lifecycle manager as a process (what ros2 launch starts) -------------------------------

PROBE = ROOT / "tests/support/lifecycle_probe_node.py"


class _Graph:
    """Probe nodes and the lifecycle_manager process, as ros2 launch would start them; reaped."""

    def __init__(self, tmp_path: Path, probes: dict[str, dict], manager_params: list[str]) -> None:
        self.tmp = tmp_path
        self.events = tmp_path / "events.txt"
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        for name, params in probes.items():
            args = [sys.executable, str(PROBE), "--ros-args", "-r", f"__node:={name}", "-r", "__ns:=/robot",
                    "-p", f"events_file:={self.events}"]
            for k, v in params.items():
                args += ["-p", f"{k}:={v}"]
            self._start(name, args)
        self._start("manager", [sys.executable, "-m", "molmoact2_common.bringup.manager_node", "--ros-args",
                                "-r", "__ns:=/robot", *manager_params])

    def _start(self, name: str, args: list[str]) -> None:
        log = self.tmp / f"{name}.log"
        with open(log, "w") as f:
            # own sessions: only the signals a test sends reach them
            self.procs[name] = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        self.logs[name] = log

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def event_list(self) -> list[str]:
        if not self.events.exists():
            return []
        lines = [line for line in self.events.read_text().splitlines() if line.count(":") >= 2]
        return [e.split(":", 1)[1] for e in sorted(lines, key=lambda e: int(e.split(":", 1)[0]))]

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.procs["manager"].poll() is not None and not predicate():
                break
            time.sleep(0.05)  # polling files written by other processes (not a timing assumption)
        assert predicate(), f"{what}; events {self.event_list()}; manager log:\n{self.log('manager')}"

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


@pytest.fixture
def graph_procs(tmp_path):
    made: list[_Graph] = []

    def make(probes, manager_params):
        g = _Graph(tmp_path, probes, manager_params)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


_TWO = ["-p", "nodes:=['/robot/first', '/robot/second']", "-p", "arm_drivers:=['/robot/second']"]


@pytest.mark.ros
@pytest.mark.slow
def test_manager_tears_down_in_reverse_when_every_process_gets_sigint_at_once(graph_procs):
    # the driver's deactivation takes a while, so launch's second SIGINT lands mid-tear-down
    g = graph_procs({"first": {}, "second": {"embodiment": "so101", "backend": "kinematic", "deactivate_s": 1.5}}, _TWO)
    g.wait_for(lambda: "/robot/second:activate" in g.event_list(), 60, "the graph never came up")
    g.wait_for(lambda: "graph is up" in g.log("manager"), 30, "the manager never reported the graph up")
    # what Ctrl-C under ros2 launch does: the terminal's SIGINT reaches every process of the
    # group, and launch sends each its own SIGINT a moment later (once the first was handled)
    for p in g.procs.values():
        p.send_signal(signal.SIGINT)
    g.wait_for(lambda: "SIGINT: tearing the graph down" in g.log("manager"), 30, "the manager did not take the SIGINT")
    for p in g.procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    codes = {name: p.wait(timeout=60) for name, p in g.procs.items()}
    assert codes == {"first": 0, "second": 0, "manager": 0}, codes
    teardown = [e for e in g.event_list() if e.split(":")[1] in ("deactivate", "cleanup", "shutdown")]
    assert teardown == ["/robot/second:deactivate", "/robot/second:cleanup", "/robot/second:shutdown",
                        "/robot/first:deactivate", "/robot/first:cleanup", "/robot/first:shutdown"], g.event_list()
    for name in g.procs:
        assert "context is invalid" not in g.log(name), g.log(name)
    assert "tear-down:" not in g.log("manager"), g.log("manager")


@pytest.mark.ros
@pytest.mark.slow
def test_manager_holds_the_drivers_when_a_managed_node_dies(graph_procs):
    g = graph_procs({"first": {}, "second": {"embodiment": "so101", "backend": "kinematic"}},
                    [*_TWO, "-p", "heartbeat_period_s:=0.5", "-p", "heartbeat_timeout_s:=2.0"])
    g.wait_for(lambda: "graph is up" in g.log("manager"), 60, "the graph never came up")
    g.procs["first"].send_signal(signal.SIGKILL)  # the policy dies without a word
    g.wait_for(lambda: "/robot/second:deactivate" in g.event_list(), 60, "the driver was not made to hold")
    log = g.log("manager")
    assert "managed node /robot/first is lost" in log, log
    assert "/robot/second:shutdown" not in g.event_list()  # it holds (inactive), torque on
    assert g.procs["manager"].poll() is None and g.procs["second"].poll() is None


@pytest.mark.ros
@pytest.mark.slow
def test_manager_never_starts_a_driver_that_reports_a_real_backend(graph_procs):
    # autostart_arms:=true as a wrong launch file would pass it: the driver's own parameters say feetech
    g = graph_procs({"first": {}, "second": {"embodiment": "so101", "backend": "feetech"}},
                    [*_TWO, "-p", "autostart_arms:=true"])
    g.wait_for(lambda: "graph is up" in g.log("manager"), 60, "the graph never came up")
    assert "/robot/second:start" not in g.event_list()
    assert "backend feetech drives real hardware" in g.log("manager"), g.log("manager")


@pytest.mark.ros
@pytest.mark.slow
def test_manager_starts_drivers_that_report_simulated_backends(graph_procs):
    g = graph_procs({"first": {}, "second": {"embodiment": "so101", "backend": "ros2_control",
                                             "backend_options": '\'{"simulated": true}\''}},
                    [*_TWO, "-p", "autostart_arms:=true"])
    g.wait_for(lambda: "/robot/second:start" in g.event_list(), 60, "the simulated driver was not started")


@pytest.mark.ros
@pytest.mark.slow
def test_manager_exits_1_naming_the_refusing_node_and_its_reason(graph_procs):
    g = graph_procs({"first": {}, "second": {"fail_configure": "true"}}, _TWO)
    assert g.procs["manager"].wait(timeout=60) == 1
    log = g.log("manager")
    assert "/robot/second (configure)" in log and "camera 'top' has no source" in log, log
