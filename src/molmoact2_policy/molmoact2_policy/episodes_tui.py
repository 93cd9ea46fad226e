"""``molmoact2-episodes``: the episode manager with a small terminal UI (one key per action).

    molmoact2-episodes --ros-args -p instructions:="['pick up the red block','put it back']" \\
        -p driver_nodes:="['/driver']" -p teleop_status_topics:="['/teleop_status']"

Runs the episode-manager node (``nodes.episode_manager_node``; its parameters and services are
the same) and reads single keys from the terminal (raw keys, no Enter; without a terminal, one
line of keys at a time from stdin). The screen shows the episode count (successes, failures),
the episode being recorded and its elapsed time, the instruction, the last messages, and the
keys. Ctrl-C (or ``q``) ends an episode being recorded as "interrupted", waits until the recorder
has the event and its flush period, and exits.
"""

from __future__ import annotations

import os
import select
import sys
import threading

import rclpy
from rclpy.executors import MultiThreadedExecutor

from molmoact2_common.node_main import init_with_own_signals

KEYS = {  # key -> (action, what the screen calls it)
    "s": ("start", "start episode"),
    "e": ("stop", "stop (end) episode"),
    "y": ("mark_success", "mark success"),
    "f": ("mark_failure", "mark failure"),
    "r": ("rerecord", "re-record (discard current/last)"),
    "n": ("next_instruction", "next instruction"),
    "x": ("reset", "reset (stop policy/drivers, clear e-stop)"),
    "q": ("quit", "quit (Ctrl-C too)"),
}


def render(status: dict, log_lines: list[str]) -> str:
    """The screen for one status of ``EpisodeManager.status()`` (plain text, no escapes)."""
    if status["recording"]:
        head = f"RECORDING episode {status['episode']}   {status['elapsed_s']:6.1f} s"
    elif status["episode"]:
        head = f"idle   last episode {status['episode']}: {status['outcome']}" + (
            f" ({'; '.join(status['marks'])})" if status["marks"] else "")
    else:
        head = "idle   no episode yet"
    subs = status.get("event_subscribers")
    lines = [
        "MolmoAct2 episode manager" + ("" if subs is None else f"   event subscribers {subs}" + (
            "  (NONE: the episodes are not being recorded; record the event topic)" if subs == 0 else "")),
        f"episodes {status['episodes']}   successes {status['successes']}   failures {status['failures']}",
        head,
        f"instruction: {status['instruction'] or '(none: set one)'}",
        "",
        *[f"  {line}" for line in log_lines[-5:]],
        "",
        "keys: " + "   ".join(f"[{k}] {label}" for k, (_, label) in KEYS.items()),
    ]
    return "\n".join(lines)


def _status(node) -> dict:
    with node.lock:
        status = node.core.status()
    status["event_subscribers"] = node.event_pub.get_subscription_count()  # the recorder, once matched
    return status


def handle_key(node, key: str) -> bool:
    """Apply one key to the node (``EpisodeManagerNode.act``); False when the key asks to quit."""
    if key in ("q", "\x03", "\x04"):
        return False
    entry = KEYS.get(key)
    if entry is not None:
        node.act(entry[0])
    return True


class _Terminal:
    """Raw keys from a terminal (cbreak: Ctrl-C still signals), restored on exit."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.fd = stream.fileno()
        self.tty = os.isatty(self.fd)
        self.saved = None

    def __enter__(self):
        if self.tty:
            import termios
            import tty

            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def keys(self, timeout: float) -> str | None:
        """The keys typed within ``timeout`` ('' for none; None at end of input)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return ""
        data = os.read(self.fd, 64)
        return data.decode(errors="replace") if data else None


def main(args: list[str] | None = None) -> int:
    from .nodes.episode_manager_node import EpisodeManagerNode

    signals = init_with_own_signals(args)
    node = None
    out = sys.stdout
    try:
        try:
            node = EpisodeManagerNode()
        except Exception as exc:
            print(f"molmoact2-episodes: {exc}", file=sys.stderr)
            return 1
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        stop_spin = threading.Event()

        def spin():
            while not stop_spin.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)

        spinner = threading.Thread(target=spin, name="ros_spin", daemon=True)
        spinner.start()
        clear = "\x1b[H\x1b[2J" if out.isatty() else ""
        with _Terminal(sys.stdin) as term:
            running, eof, shown = True, False, ""
            while running and not signals.requested:
                screen = render(_status(node), node.log_lines)
                if screen != shown:  # without a terminal: each new screen once, separated
                    out.write(clear + screen + "\n" + ("" if clear else "----\n"))
                    out.flush()
                    shown = screen
                keys = term.keys(0.25) if not eof else ""
                if keys is None:  # stdin closed: go on until Ctrl-C
                    eof, keys = True, ""
                if eof:
                    threading.Event().wait(0.25)
                for k in keys:
                    if not handle_key(node, k):
                        running = False
                        break
        done = node.finish()
        out.write(render(_status(node), node.log_lines) + "\n" + (f"{done}\n" if done else "") + "bye\n")
        out.flush()
        stop_spin.set()
        spinner.join(timeout=5.0)
        executor.shutdown(timeout_sec=2.0)
    finally:
        if node is not None:
            try:
                node.destroy_node()
            except Exception:
                pass
        rclpy.try_shutdown()
        signals.ignore_from_now()
    return 0


if __name__ == "__main__":
    sys.exit(main())
