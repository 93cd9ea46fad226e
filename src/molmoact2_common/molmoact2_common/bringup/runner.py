"""Start a deployment graph as processes where ``ros2 launch`` is not installed (PyPI ROS), bring
its lifecycle nodes up in order, and tear it all down cleanly.

    molmoact2-run sim checkpoint:=/path/to/ckpt [--duration 30]
    molmoact2-run so101 checkpoint:=/path/to/ckpt port:=/dev/ttyACM0
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from .graph import DeploymentGraph, GraphError, NodeSpec, as_bool, load_deployment, params_file_content, ros_args


def executable_path(spec: NodeSpec) -> str:
    """Where ``ros2 run <package> <executable>`` would find it (ament index + lib/<package>)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        prefix = get_package_prefix(spec.package)
    except PackageNotFoundError:
        raise GraphError(f"node {spec.name}: package '{spec.package}' is not installed (run make setup)") from None
    exe = Path(prefix) / "lib" / spec.package / spec.executable
    if not exe.is_file():
        raise GraphError(f"node {spec.name}: executable '{spec.executable}' not found in package '{spec.package}' ({exe}); rebuild with make setup")
    return str(exe)


class GraphProcesses:
    """One process per node, logs kept per node; always reaped."""

    def __init__(self, graph: DeploymentGraph, log_dir: Path, use_sim_time: bool | None = None,
                 env: dict | None = None, echo: Callable[[str], None] = print) -> None:
        self.graph = graph
        self.log_dir = log_dir
        self.use_sim_time = use_sim_time
        self.env = {**os.environ, **(env or {})}
        self.echo = echo
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.commands: dict[str, list[str]] = {}

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.graph.nodes:
            fqn = spec.fully_qualified_name
            if spec.optional:
                try:
                    executable_path(spec)
                except GraphError as exc:
                    self.echo(f"[runner] skipping optional {fqn}: {exc}")
                    continue
            # named by the fully qualified name: two nodes may share a name in different namespaces
            # (/left/driver, /right/driver) and must not share a parameter file
            stem = fqn.strip('/').replace('/', '__')
            params = self.log_dir / f"{stem}.params.yaml"
            params.write_text(yaml.safe_dump(params_file_content(spec, self.use_sim_time)))
            log = self.log_dir / f"{stem}.log"
            self.commands[fqn] = [sys.executable, executable_path(spec), *ros_args(spec, str(params))]
            self.logs[fqn] = log
            self._spawn(fqn, "w")

    def _spawn(self, fqn: str, mode: str) -> None:
        with open(self.logs[fqn], mode) as f:
            self.procs[fqn] = subprocess.Popen(self.commands[fqn], stdout=f, stderr=subprocess.STDOUT, env=self.env,
                                               start_new_session=True)

    def respawn(self, fqn: str) -> None:
        """Start node ``fqn`` again as it was started (a fault soak restarts a killed process);
        its log goes on in the same file."""
        if self.procs[fqn].poll() is None:
            raise GraphError(f"{fqn} is still running (pid {self.procs[fqn].pid})")
        self._spawn(fqn, "a")

    def log_tail(self, fqn: str, lines: int = 6) -> str:
        path = self.logs.get(fqn)
        if not path or not path.exists():
            return ""
        text = path.read_text(errors="replace").strip().splitlines()
        errors = [line for line in text if "ERROR" in line or "Error" in line or "error" in line]
        chosen = errors[-lines:] if errors else text[-lines:]
        return " | ".join(chosen)

    def dead(self) -> list[tuple[str, int]]:
        return [(fqn, p.returncode) for fqn, p in self.procs.items() if p.poll() is not None]

    def stop(self, timeout: float = 10.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        end = time.monotonic() + timeout
        for fqn, p in self.procs.items():
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.echo(f"[runner] {fqn} ignored SIGINT; killing")
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)


def parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if ":=" not in item:
            raise GraphError(f"argument '{item}': use name:=value")
        k, v = item.split(":=", 1)
        out[k] = v
    return out


def run(graph: DeploymentGraph, duration: float | None, log_dir: Path, echo: Callable[[str], None] = print,
        watch: Callable | None = None) -> int:
    """Start, bring up, run for ``duration`` wall seconds (or until Ctrl-C), tear down.

    ``watch(manager_node)``, if given, is called once the graph is up and returns a predicate that
    ends the run early when true (the main job stops after a span of simulated time this way).
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from .lifecycle_manager import BringUpError, LifecycleManager

    use_sim_time = as_bool(graph.arguments.get("use_sim_time", "false"), "use_sim_time")
    procs = GraphProcesses(graph, log_dir, use_sim_time=use_sim_time, echo=echo)
    rclpy.init(args=[])  # our argv holds name:=value deployment arguments, not ROS remaps
    manager_node = rclpy.create_node("molmoact2_lifecycle_manager")
    executor = SingleThreadedExecutor()
    executor.add_node(manager_node)
    stop = {"flag": False, "tearing_down": False}

    def spin_until(pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not stop["flag"]:
            if pred():
                return True
            dead = procs.dead()
            if dead and not stop["tearing_down"]:
                fqn, code = dead[0]
                raise BringUpError(fqn, "process", f"exited with code {code}: {procs.log_tail(fqn)}")
            executor.spin_once(timeout_sec=0.05)
        return pred()

    manager = LifecycleManager(manager_node, spin_until, reason_for=procs.log_tail, log=echo)
    previous = signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    code = 0
    lifecycle = graph.lifecycle_nodes()
    try:
        procs.start()
        echo(f"[runner] started {len(procs.procs)} nodes of '{graph.name}'; logs in {log_dir}")
        manager.bring_up(lifecycle)
        # arming follows the drivers' backends (and each driver's own parameters, checked
        # before any start), never the sim argument
        if not (graph.autostart_arms and manager.start_arms(lifecycle)) and any(s.arm_driver for s in lifecycle):
            for s in lifecycle:
                if s.arm_driver:
                    echo(f"[runner] {s.fully_qualified_name} holds until the operator starts it: "
                         f"ros2 service call {s.fully_qualified_name}/start std_srvs/srv/Trigger")
        done = watch(manager_node) if watch else (lambda: False)
        end = time.monotonic() + duration if duration else None
        while not stop["flag"] and (end is None or time.monotonic() < end) and not done():
            dead = procs.dead()
            if dead:
                fqn, rc = dead[0]
                raise BringUpError(fqn, "process", f"exited with code {rc}: {procs.log_tail(fqn)}")
            executor.spin_once(timeout_sec=0.1)
    except (BringUpError, GraphError) as exc:
        echo(f"[runner] ERROR: {exc}")
        code = 1
    finally:
        stop["flag"] = False
        stop["tearing_down"] = True
        try:
            for problem in manager.tear_down([s for s in lifecycle if procs.procs.get(s.fully_qualified_name) and procs.procs[s.fully_qualified_name].poll() is None]):
                echo(f"[runner] tear-down: {problem}")
        except Exception as exc:  # tear-down is best effort; signals follow
            echo(f"[runner] tear-down: {exc}")
        procs.stop()
        signal.signal(signal.SIGINT, previous)
        manager_node.destroy_node()
        rclpy.try_shutdown()
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("deployment", help="name under config/deployments/ or a YAML path")
    parser.add_argument("arguments", nargs="*", help="name:=value overrides of the deployment's arguments")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--log-dir", type=Path, default=None)
    parser.add_argument("--list-arguments", action="store_true", help="print the deployment's arguments and exit")
    args = parser.parse_args(argv)
    try:
        if args.list_arguments:
            from .graph import declared_arguments

            for a in declared_arguments(args.deployment):
                print(f"{a.name} (default '{a.default}'): {a.description}")
            return 0
        graph = load_deployment(args.deployment, parse_overrides(args.arguments))
    except GraphError as exc:
        print(f"molmoact2-run: {exc}", file=sys.stderr)
        return 2
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix=f"molmoact2-{graph.name}-"))
    return run(graph, args.duration, log_dir)


if __name__ == "__main__":
    sys.exit(main())
