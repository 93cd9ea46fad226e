"""The one ``main()`` shape every node of the stack uses."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node


def run_node(
    make_node: Callable[[], Node],
    args: list[str] | None = None,
    multithreaded: bool = False,
) -> int:
    """Init, spin, and shut down cleanly on Ctrl-C and on external shutdown.

    Returns the process exit code: 0 on a normal stop, 1 when the node failed to start.
    """
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    exit_code = 0
    try:
        node = make_node()
        executor = MultiThreadedExecutor() if multithreaded else SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # a node that cannot start says why, once, and exits non-zero
        print(f"[{getattr(node, 'get_name', lambda: 'node')()}] fatal: {exc}", file=sys.stderr)
        exit_code = 1
    finally:
        if node is not None:
            try:
                node.destroy_node()
            except Exception:  # already torn down by the shutdown path
                pass
        rclpy.try_shutdown()
    return exit_code
