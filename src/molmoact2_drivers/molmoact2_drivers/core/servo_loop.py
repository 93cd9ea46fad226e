"""The servo loop: ticks at absolute deadlines on the monotonic clock, optionally at real-time
priority. Shared by the driver node and the driver benchmark, so the benchmark measures this loop."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


def set_current_thread_realtime(priority: int) -> str:
    """Run the calling thread under SCHED_FIFO at ``priority`` (1-99). Returns "" on success, else
    why the kernel refused (the process needs CAP_SYS_NICE or an rtprio limit, e.g.
    ``@realtime - rtprio 98`` in /etc/security/limits.d/, or the container's --cap-add=SYS_NICE)."""
    if not 1 <= int(priority) <= 99:
        return f"real-time priority {priority} outside 1..99"
    try:
        # pid 0 = the calling thread on Linux (threads are tasks)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(priority)))
    except (PermissionError, OSError, AttributeError) as exc:
        return f"SCHED_FIFO priority {priority} refused: {exc}"
    return ""


def run_at_deadlines(tick: Callable[[], None], period: float, stop: threading.Event,
                     on_error: Callable[[Exception], None] | None = None) -> None:
    """Call ``tick`` every ``period`` s at absolute deadlines until ``stop`` is set; after an
    overrun longer than a period, resynchronise instead of bursting to catch up."""
    deadline = time.monotonic()
    while not stop.is_set():
        try:
            tick()
        except Exception as exc:  # the loop never dies silently: report and keep holding
            if on_error is None:
                raise
            on_error(exc)
        deadline += period
        delay = deadline - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -period:
            deadline = time.monotonic()
