"""bench/bench_endurance.py's judgement of a fault, without ROS: when the command stopped moving
after the fault, and whether it stayed put until the recovery (an episode reset ends the window)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_endurance", ROOT / "bench" / "bench_endurance.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_hold_after_times_the_last_move_after_the_fault_and_ends_the_window_at_a_reset():
    b = _bench()
    t = np.arange(0.0, 3.0, 0.01)
    q = np.where(t < 1.25, t, 1.25)[:, None] * np.ones((1, 3))  # moving until 1.25 s, then held
    commands = list(zip(t.tolist(), q))
    hold, moved = b.hold_after(commands, [], t_fault=1.0, t_end=3.0)
    assert abs(hold - 0.25) < 0.011 and moved == 0.0
    # a move while held is reported as its size, and the hold is timed to it
    q2 = q.copy()
    q2[t >= 2.0] += 0.1
    hold, moved = b.hold_after(list(zip(t.tolist(), q2)), [], t_fault=1.0, t_end=3.0)
    assert abs(hold - 1.0) < 0.011 and moved == 0.0
    # the same jump after an episode reset (the sim's teleport, the driver's reset) is not a move while held
    hold, moved = b.hold_after(list(zip(t.tolist(), q2)), [1.9], t_fault=1.0, t_end=3.0)
    assert abs(hold - 0.25) < 0.011 and moved == 0.0
    assert b.hold_after([], [], 1.0, 2.0) == (None, None)


def test_summary_says_something_was_lost_when_the_bag_misses_an_episode():
    b = _bench()
    samples = [{"minute": m, "rss_mb": {"/policy": 100.0 + m}, "chunks_per_s": 3.0, "commands_per_s": 100.0,
                "policy_p99_latency_s": 0.4, "episodes": int(m)} for m in (0.0, 6.0, 60.0)]
    r = b.summarise(samples, [b.FaultRecord("estop", 0.0, 0.0, 0.0, "estopped", "e-stop", "", 0.8)], 5.0, 10, 10, [])
    assert r["nothing_lost"] and r["rss_growth_pct"] == {"/policy": round(100 * 54 / 106, 1)}
    assert r["fault_summary"]["estop"]["recovered"] == 1
    assert not b.summarise(samples, [], 5.0, 10, 9, [])["nothing_lost"]
    assert not b.summarise(samples, [], 5.0, 10, 10, ["an unmatched start"])["nothing_lost"]
    assert "| estop | 1 |" in b.render({**r, "samples": samples})
