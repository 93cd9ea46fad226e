"""Real-DDS test helpers: a node per test, waits on matches with timeouts (never sleeps),
and child processes that are always reaped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

ROOT = Path(__file__).resolve().parents[2]


class RosTestContext:
    """An rclpy context + executor owned by one test."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes: list[Node] = []

    def node(self, name: str, **kwargs) -> Node:
        node = Node(name, context=self.context, **kwargs)
        self.executor.add_node(node)
        self.nodes.append(node)
        return node

    def add(self, node: Node) -> Node:
        self.executor.add_node(node)
        self.nodes.append(node)
        return node

    def spin_until(self, predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
        """Spin the executor until predicate() holds; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=step)
        return predicate()

    def publish_until(self, publisher, msg, predicate: Callable[[], bool], timeout: float = 10.0,
                      period: float = 0.25) -> bool:
        """Publish ``msg`` every ``period`` until predicate() holds. A reliable, volatile reader in
        another process drops samples of a writer it has not matched yet, even once the writer
        counts it as a subscriber: for idempotent messages, repeat instead of hoping."""
        next_publish = [0.0]

        def check() -> bool:
            if predicate():
                return True
            now = time.monotonic()
            if now >= next_publish[0]:
                publisher.publish(msg)
                next_publish[0] = now + period
            return False

        return self.spin_until(check, timeout)

    def wait_for_subscribers(self, publisher, count: int = 1, timeout: float = 10.0) -> bool:
        return self.spin_until(lambda: publisher.get_subscription_count() >= count, timeout)

    def wait_for_publishers(self, subscription, count: int = 1, timeout: float = 10.0) -> bool:
        return self.spin_until(lambda: subscription.get_publisher_count() >= count, timeout)

    def wait_for_service(self, client, timeout: float = 10.0) -> bool:
        return self.spin_until(client.service_is_ready, timeout)

    def call(self, client, request, timeout: float = 10.0):
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout):
            raise TimeoutError(f"service {client.srv_name} did not answer within {timeout}s")
        return future.result()

    def close(self) -> None:
        """Destroy every node and the context, whatever fails on the way: a node left alive
        would keep answering on its names (services!) in later tests of the session."""
        problems = []
        for node in self.nodes:
            try:
                self.executor.remove_node(node)
            except Exception as exc:
                problems.append(f"remove {node.get_name()}: {exc!r}")
            try:
                node.destroy_node()
            except Exception as exc:
                problems.append(f"destroy {node.get_name()}: {exc!r}")
        try:
            self.executor.shutdown(timeout_sec=5.0)
        except Exception as exc:
            problems.append(f"executor shutdown: {exc!r}")
        rclpy.try_shutdown(context=self.context)
        self.context.destroy()  # the DDS participant goes now, not when garbage collection gets to it
        self.nodes.clear()
        if problems:
            print("RosTestContext.close: " + "; ".join(problems))


class ChildProcess:
    """A node in its own process, always terminated and reaped; its output is kept for messages."""

    def __init__(self, args: list[str], env: dict | None = None, name: str = "") -> None:
        self.name = name or " ".join(args[:3])
        self.log_path = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"child-{os.getpid()}-{id(self)}.log"
        self._log = open(self.log_path, "w+")
        self.proc = subprocess.Popen(
            args,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )

    @classmethod
    def python_module(cls, module: str, *args: str, env: dict | None = None) -> "ChildProcess":
        return cls([sys.executable, "-m", module, *args], env=env, name=module)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode
