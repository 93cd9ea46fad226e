"""The servo loop: absolute deadlines, errors reported without killing the loop, and the
real-time priority request either granted or refused with the reason."""

from __future__ import annotations

import os
import threading

from molmoact2_drivers.core.servo_loop import run_at_deadlines, set_current_thread_realtime


def test_servo_loop_ticks_until_stopped_and_reports_errors_without_dying():
    stop = threading.Event()
    ticks, errors = [], []

    def tick():
        ticks.append(1)
        if len(ticks) == 3:
            raise RuntimeError("backend hiccup")
        if len(ticks) >= 10:
            stop.set()

    run_at_deadlines(tick, 0.001, stop, on_error=errors.append)
    assert len(ticks) == 10
    assert [str(e) for e in errors] == ["backend hiccup"]


def test_realtime_priority_is_granted_or_refused_with_a_reason():
    result = {}

    def worker():
        result["refused"] = set_current_thread_realtime(10)
        result["policy"] = os.sched_getscheduler(0)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    if result["refused"]:
        assert "SCHED_FIFO priority 10 refused" in result["refused"]
    else:
        assert result["policy"] == os.SCHED_FIFO
    # the calling (test) thread itself is untouched
    assert os.sched_getscheduler(0) != os.SCHED_FIFO


def test_out_of_range_priority_is_refused():
    assert "outside 1..99" in set_current_thread_realtime(120)
