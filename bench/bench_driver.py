"""Driver benchmarks: servo-loop jitter beside a CPU-heavy policy, and e-stop latency at the backend.

  python bench/bench_driver.py [--seconds 4] [--trials 20]

1. Executor loop jitter at 100 Hz and 250 Hz: the driver's loop (DriverCore on the kinematic
   backend, executing chunks, ticked as the driver node does: its default dedicated thread with
   absolute deadlines, and the alternative rclpy steady timer)
   in its own process while a CPU-heavy "policy" runs
   (a) in another process (the deployment layout), and
   (b) as a thread in the driver's process (for comparison; the interpreter's switch interval
       decides how long the policy thread may hold the GIL).
   Jitter = |tick period - nominal period|; p50 / p99 / max, ms.
2. E-stop latency: a driver node (kinematic backend, 100 Hz) executing a chunk; an e-stop message
   is published over DDS; measured on the backend side: time from publishing to the first hold
   command the backend received, and to the last command that still moved the arm.

The policy load mixes numpy matrix products (release the GIL, like torch kernels) with pure-Python
work (holds the GIL, like pre/post-processing), on one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def policy_load(stop: threading.Event | None = None) -> None:
    a = np.random.default_rng(0).standard_normal((192, 192))
    items = list(range(20000))
    while stop is None or not stop.is_set():
        for _ in range(4):
            a = np.tanh(a @ a * 0.01)
        sum(x * x for x in items)  # pure Python: holds the GIL ~1-2 ms


def percentiles(x: np.ndarray) -> dict:
    x = np.asarray(x) * 1e3
    return {"p50_ms": float(np.percentile(x, 50)), "p99_ms": float(np.percentile(x, 99)), "max_ms": float(x.max()), "n": int(x.size)}


def loop_worker(rate: float, seconds: float, policy_thread: bool, loop: str, rt_priority: int = 0) -> dict:
    """The driver's servo loop as the node runs it; prints its jitter as JSON."""
    import rclpy
    from rclpy.clock import Clock, ClockType
    from rclpy.executors import SingleThreadedExecutor

    from molmoact2_common.embodiment import load_embodiment
    from molmoact2_drivers.core.backends import create_backend
    from molmoact2_drivers.core.servo_loop import run_at_deadlines, set_current_thread_realtime
    from molmoact2_drivers.core.driver_core import ChunkInput
    from molmoact2_drivers.core.factory import build_driver

    emb = load_embodiment("so101")
    arm = emb.arms[0]
    backend = create_backend(arm, type_name="kinematic", record=False)
    core = build_driver(emb, arm, backend, {"servo_rate_hz": rate, "execute_steps": 0, "chunk_timeout_s": 5.0})
    core.configure()
    t0 = time.monotonic()
    core.activate(0.0, t0)
    rclpy.init()
    node = rclpy.create_node("bench_loop")
    ticks: list[float] = []
    state = {"seq": 0, "next_chunk": 0.0}
    wave = np.sin(np.linspace(0, np.pi, 30))[:, None] * np.full((1, 6), 0.3)

    def tick() -> None:
        now = time.monotonic()
        ticks.append(time.perf_counter())
        if now >= state["next_chunk"]:  # a fresh 30 Hz chunk every 0.5 s, as a policy would send
            state["seq"] += 1
            core.on_chunk(ChunkInput(arm.joints, now - t0, 1 / 30, 30, wave.ravel(), state["seq"]), now - t0)
            state["next_chunk"] = now + 0.5
        core.tick(now - t0, now)

    stop = threading.Event()
    if loop == "timer":
        node.create_timer(1.0 / rate, tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
    else:  # the driver node's default: its servo loop, a thread ticking at absolute deadlines

        def servo() -> None:
            if rt_priority:
                refused = set_current_thread_realtime(rt_priority)
                if refused:
                    raise SystemExit(refused)
            run_at_deadlines(tick, 1.0 / rate, stop)

        threading.Thread(target=servo, daemon=True).start()
    if policy_thread:
        threading.Thread(target=policy_load, args=(stop,), daemon=True).start()
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    end = time.monotonic() + seconds + 0.5
    while time.monotonic() < end:
        ex.spin_once(timeout_sec=0.1)
    stop.set()
    time.sleep(0.05)
    node.destroy_node()
    rclpy.shutdown()
    periods = np.diff(np.array(ticks[int(0.5 * rate):]))  # skip the first half second
    jitter = np.abs(periods - 1.0 / rate)
    return {"rate_hz": rate, "policy": "thread" if policy_thread else "process", "loop": loop, **percentiles(jitter),
            "switch_interval_s": sys.getswitchinterval(), "commands": int(core.counters.chunks_received),
            "rt_priority": rt_priority}


def run_loop(rate: float, seconds: float, layout: str, loop: str, rt_priority: int = 0) -> dict:
    env = dict(os.environ)
    policy = None
    if layout == "process":
        policy = subprocess.Popen([sys.executable, __file__, "--worker", "policy"], env=env)
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", "loop", "--rate", str(rate), "--seconds", str(seconds),
                              "--loop", loop, "--rt-priority", str(rt_priority)]
                             + (["--policy-thread"] if layout == "thread" else []),
                             env=env, capture_output=True, text=True, timeout=seconds + 60)
    finally:
        if policy is not None:
            policy.terminate()
            policy.wait(timeout=10)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def estop_latency(trials: int) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from std_msgs.msg import Bool

    from molmoact2_common import qos
    from molmoact2_drivers.core.driver_core import ChunkInput
    from molmoact2_drivers.nodes.driver_node import DriverNode

    rclpy.init()
    drv = DriverNode(parameter_overrides=[Parameter("embodiment", value="so101"), Parameter("backend", value="kinematic"),
                                          Parameter("autostart", value="activate"), Parameter("execute_steps", value=0),
                                          Parameter("chunk_timeout_s", value=10.0), Parameter("servo_rate_hz", value=100.0)])
    pub_node = rclpy.create_node("bench_estop")
    pub = pub_node.create_publisher(Bool, "estop", qos.ESTOP)
    ex = SingleThreadedExecutor()
    ex.add_node(drv)
    ex.add_node(pub_node)

    def spin(seconds: float, until=None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            ex.spin_once(timeout_sec=0.005)

    spin(5.0, lambda: drv.core is not None and drv.core.active and pub.get_subscription_count() > 0)
    first_hold, last_motion = [], []
    for k in range(trials):
        core = drv.core
        backend = core.backend
        q0 = core.last_command.copy()
        goal = q0 + np.r_[np.full(5, 0.3 if k % 2 == 0 else -0.3), 0.0]
        now = drv._now()
        core.on_chunk(ChunkInput(core.joint_names, now, 1 / 30, 60, np.linspace(q0, goal, 60).ravel(), k + 1), now)
        spin(0.6)
        t_pub = time.monotonic()
        pub.publish(Bool(data=True))
        spin(0.3)
        sent = backend.sent_since(t_pub - 0.1)
        hold = core.last_command
        times = np.array([t for t, _ in sent])
        same = np.array([np.array_equal(p, hold) for _, p in sent])
        moving_idx = np.flatnonzero(~same)
        after = times >= t_pub
        first_hold.append(times[after & same][0] - t_pub)
        last_motion.append((times[moving_idx[-1]] if moving_idx.size else t_pub - 0.1) - t_pub)
        assert drv.core.reset().success
    drv.destroy_node()
    pub_node.destroy_node()
    rclpy.shutdown()
    return {"first_hold_command": percentiles(np.array(first_hold)), "last_motion_command": percentiles(np.array(last_motion)),
            "servo_rate_hz": 100.0, "trials": trials}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=("loop", "policy"))
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--policy-thread", action="store_true")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--loop", choices=("thread", "timer"), default="thread")
    ap.add_argument("--rt-priority", type=int, default=0, help="SCHED_FIFO priority of the servo thread (0: normal)")
    args = ap.parse_args()
    if args.worker == "policy":
        policy_load()
        return
    if args.worker == "loop":
        print(json.dumps(loop_worker(args.rate, args.seconds, args.policy_thread, args.loop, args.rt_priority)))
        return
    print(f"# driver benchmark: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, switch interval {sys.getswitchinterval() * 1e3:.1f} ms")
    print(f"# load average before: {os.getloadavg()[0]:.2f}")
    print("| rate | servo loop | policy | jitter p50 (ms) | p99 (ms) | max (ms) | ticks |")
    print("|---|---|---|---|---|---|---|")
    results = []
    variants = [("thread", 0), ("thread", 50), ("timer", 0)]  # deadline thread normal / SCHED_FIFO 50, rclpy timer
    for rate in (100.0, 250.0):
        for loop, prio in variants:
            for layout in ("process", "thread"):
                try:
                    r = run_loop(rate, args.seconds, layout, loop, prio)
                except RuntimeError as exc:  # SCHED_FIFO refused (no CAP_SYS_NICE): say so, go on
                    print(f"| {rate:.0f} Hz | deadline thread, SCHED_FIFO {prio} | - | refused: {str(exc).strip()[-120:]} |")
                    continue
                results.append(r)
                name = "rclpy timer" if loop == "timer" else ("deadline thread" + (f", SCHED_FIFO {prio}" if prio else ""))
                print(f"| {rate:.0f} Hz | {name} | "
                      f"{'own process' if layout == 'process' else 'thread in the driver process'} | "
                      f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['max_ms']:.3f} | {r['n']} |", flush=True)
    e = estop_latency(args.trials)
    fh, lm = e["first_hold_command"], e["last_motion_command"]
    print(f"\ne-stop -> first hold command at the backend (100 Hz loop, {e['trials']} trials): "
          f"p50 {fh['p50_ms']:.2f} ms, p99 {fh['p99_ms']:.2f} ms, max {fh['max_ms']:.2f} ms")
    print(f"e-stop -> last command that still moved the arm: p50 {lm['p50_ms']:.2f} ms, p99 {lm['p99_ms']:.2f} ms, max {lm['max_ms']:.2f} ms")
    print(json.dumps({"loops": results, "estop": e}))


if __name__ == "__main__":
    main()
