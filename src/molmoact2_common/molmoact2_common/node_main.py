"""The one ``main()`` shape every node of the stack uses."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


class StopSignals:
    """SIGINT and SIGTERM handled by the process itself instead of by rclpy.

    rclpy's own handler shuts the context down at the first SIGINT, so a node can no longer take
    part in an ordered tear-down (every node of a ``ros2 launch`` gets SIGINT at once) and its
    publishers fail ("publisher's context is invalid"). Here a signal only sets a flag that the
    spin loop reads; a second signal a moment later (or SIGTERM, launch's escalation) asks to
    finish now, and a third raises KeyboardInterrupt wherever the process is.
    """

    def __init__(self) -> None:
        self.count = 0
        self.last = ""
        self._first = 0.0
        self._previous: dict[int, object] = {}

    def install(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only: leave them to whoever owns it
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def ignore_from_now(self) -> None:
        """Once the clean-up is done: launch's own SIGINT often lands while the process exits,
        and Python's finalisation puts the default handler back, which would end the process with
        -2 halfway through its exit. Ignored signals stay ignored (SIGKILL still ends a hang)."""
        if self._previous:
            for sig in self._previous:
                signal.signal(sig, signal.SIG_IGN)
            self._previous.clear()

    #: signals closer together than this count as one: on Ctrl-C under ``ros2 launch`` every node
    #: gets the terminal's SIGINT and launch's own SIGINT at once
    DEBOUNCE_S = 1.0

    def _on_signal(self, signum, frame) -> None:
        now = time.monotonic()
        if signum == signal.SIGINT and self.count and now - self._first < self.DEBOUNCE_S:
            return
        if not self.count:
            self._first = now
        self.count = max(self.count + 1, 2 if signum == signal.SIGTERM else 1)
        self.last = signal.Signals(signum).name
        if self.count >= 3:
            # a third signal: a callback that never returns must not make the process unkillable
            raise KeyboardInterrupt

    @property
    def requested(self) -> bool:
        return self.count > 0

    @property
    def urgent(self) -> bool:
        """A second SIGINT or a SIGTERM: finish without waiting for anyone."""
        return self.count > 1


def init_with_own_signals(args: list[str] | None = None) -> StopSignals:
    """``rclpy.init`` without rclpy's signal handlers, and ours installed."""
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    return StopSignals().install()


def run_node(
    make_node: Callable[[], Node | list[Node]],
    args: list[str] | None = None,
    multithreaded: bool = False,
) -> int:
    """Init, spin, and shut down cleanly on Ctrl-C and on external shutdown. ``make_node`` may
    return several nodes (a composed process): one executor spins them all.

    On SIGINT a lifecycle node (``StackLifecycleNode``) that a manager brought up keeps spinning,
    holding, while the manager tears the graph down in reverse order, and finishes whatever is
    left of deactivate -> cleanup -> shutdown itself (``StackLifecycleNode.stop_in_order``).

    Returns the process exit code: 0 on a normal stop, 1 when the node failed to start.
    """
    from .lifecycle import StackLifecycleNode

    signals = init_with_own_signals(args)
    node = None
    nodes: list[Node] = []
    exit_code = 0
    try:
        made = make_node()
        nodes = list(made) if isinstance(made, (list, tuple)) else [made]
        node = nodes[0]
        executor = MultiThreadedExecutor() if multithreaded else SingleThreadedExecutor()
        for n in nodes:
            executor.add_node(n)
        while rclpy.ok() and not signals.requested:
            executor.spin_once(timeout_sec=0.1)
        if isinstance(node, StackLifecycleNode) and rclpy.ok():
            node.stop_in_order(lambda t: executor.spin_once(timeout_sec=t), abort=lambda: signals.urgent)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # a node that cannot start says why, once, and exits non-zero
        print(f"[{getattr(node, 'get_name', lambda: 'node')()}] fatal: {exc}", file=sys.stderr)
        exit_code = 1
    finally:
        for n in reversed(nodes):
            try:
                n.destroy_node()
            except Exception:  # already torn down by the shutdown path
                pass
        rclpy.try_shutdown()
        signals.ignore_from_now()
    return exit_code
