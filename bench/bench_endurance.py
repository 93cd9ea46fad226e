"""Endurance and fault soak: the paced closed loop in simulation, episodes back to back, for an hour.

  python bench/bench_endurance.py [--minutes 60] [--faults-each 10] [--checkpoint models/so101_touch_cube]
                                  [--backend lerobot] [--real-time-factor 0.5] [--out artifacts/endurance]

The sim deployment with ``eval:=true`` (SO-101 touch_cube, episodes back to back judged by the
episode supervisor, the recorder on), free running at ``--real-time-factor`` (not lockstep: the
policy keeps up or the driver drops late steps, as on a robot). This script is the operator: it
publishes the drivers' ``/heartbeat`` at 20 Hz (``heartbeat_timeout_s:=1.0``) and, spread evenly over the
run, injects each fault ``--faults-each`` times:

  policy_kill     SIGKILL of the policy process; restarted and brought up again (configure, activate)
  camera_stop     SIGINT of camera ingestion; restarted
  estop           ``/estop`` true; recovered with the driver's ``~/reset`` and ``~/start``
  heartbeat_loss  no ``/heartbeat`` for ``--hold-window-s``; recovered by sending it again

For each fault: how long after the fault the driver's commanded position stopped moving (from
``/commanded_joint_states``; it then has to stay put, within 1e-6 rad, until the recovery: the
largest move while held is reported), the driver's state and last event then (the named error),
what the policy said (its status message), and how long until the arm executed chunks again. Every ``--sample-s``: each node process's
resident memory (``/proc/<pid>/status`` VmRSS), chunks per second, driver commands per second, the
policy's p99 latency, episodes finished. At the end the bag is read back: every episode the
supervisor judged must be in it. Prints both tables (markdown) and writes ``endurance.json``.

Memory growth is the last sample against the first after ``--warmup-min``, per process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FAULTS = ("policy_kill", "camera_stop", "estop", "heartbeat_loss")
HEARTBEAT_TIMEOUT_S = 1.0  # wall s: a loaded 2-core machine delays a 20 Hz timer by more than 0.5 s at times
HEARTBEAT_PERIOD_S = 0.05
STILL_RAD = 1e-6


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


@dataclass
class FaultRecord:
    kind: str
    at_wall: float
    hold_after_s: float | None = None  # fault -> the last commanded move before the hold
    moved_while_held_rad: float | None = None
    driver_state: str = ""
    named: str = ""
    policy_said: str = ""
    recovered_after_s: float | None = None
    problems: list[str] = field(default_factory=list)


class Operator:
    """The soak's ROS side: heartbeat, e-stop, driver services, and what it observes."""

    def __init__(self, node, executor) -> None:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Empty, String
        from std_srvs.srv import Trigger

        from molmoact2_common import qos
        from molmoact2_msgs.msg import ActionChunk, DriverStatus, PolicyStatus

        self.node, self.executor = node, executor
        self.Trigger, self.Bool, self.Empty = Trigger, Bool, Empty
        self.DriverStatus = DriverStatus
        self.heartbeat_pub = node.create_publisher(Empty, "/heartbeat", qos.HEARTBEAT)
        self.estop_pub = node.create_publisher(Bool, "/estop", qos.ESTOP)
        self.reset_client = node.create_client(Trigger, "/driver/reset")
        self.start_client = node.create_client(Trigger, "/driver/start")
        self.heartbeat_on = True
        self.commands: list[tuple[float, np.ndarray]] = []  # (wall, commanded positions), the newest
        self.n_commands = 0
        self.chunks = 0
        self.driver: DriverStatus | None = None
        self.policy: PolicyStatus | None = None
        self.supervisor: dict = {}
        self.resets: list[float] = []  # wall times the sim said 'resetting' (the arm is teleported home)
        node.create_subscription(JointState, "/commanded_joint_states", self._on_command, qos.JOINT_STATE)
        node.create_subscription(ActionChunk, "/action_chunk", self._on_chunk, qos.ACTION_CHUNK)
        node.create_subscription(DriverStatus, "/driver_status", lambda m: setattr(self, "driver", m), qos.DRIVER_STATUS)
        node.create_subscription(PolicyStatus, "/policy_status", lambda m: setattr(self, "policy", m), qos.POLICY_STATUS)
        node.create_subscription(String, "/episode_supervisor/status", self._on_supervisor, qos.LATCHED)
        node.create_subscription(String, "/sim/robot/task/state", self._on_task_state, qos.LATCHED)
        node.create_timer(HEARTBEAT_PERIOD_S, self._beat)

    def _beat(self) -> None:
        if self.heartbeat_on:
            self.heartbeat_pub.publish(self.Empty())

    def _on_command(self, msg) -> None:
        self.commands.append((time.monotonic(), np.asarray(msg.position, dtype=np.float64)))
        self.n_commands += 1
        if len(self.commands) > 20000:
            del self.commands[:10000]

    def _on_chunk(self, msg) -> None:
        self.chunks += 1

    def _on_supervisor(self, msg) -> None:
        try:
            self.supervisor = json.loads(msg.data)
        except json.JSONDecodeError:
            pass

    def _on_task_state(self, msg) -> None:
        try:
            phase = json.loads(msg.data).get("phase")
        except (json.JSONDecodeError, AttributeError):
            return
        if phase == "resetting" and (not self.resets or time.monotonic() - self.resets[-1] > 1.0):
            self.resets.append(time.monotonic())

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))

    def spin_until(self, pred, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return pred()

    def call(self, client, timeout: float = 10.0) -> tuple[bool, str]:
        if not client.wait_for_service(timeout_sec=timeout):
            return False, f"{client.srv_name}: no service"
        fut = client.call_async(self.Trigger.Request())
        if not self.spin_until(fut.done, timeout):
            return False, f"{client.srv_name}: no answer in {timeout} s"
        r = fut.result()
        return bool(r.success), r.message

    def executing(self) -> bool:
        d = self.driver
        return d is not None and d.state == self.DriverStatus.STATE_EXECUTING

    def driver_state_name(self) -> str:
        d = self.driver
        if d is None:
            return "no status"
        names = {v: k[len("STATE_"):].lower() for k, v in vars(self.DriverStatus).items()
                 if k.startswith("STATE_") and isinstance(v, int)}
        return names.get(d.state, str(d.state))

    def hold_after(self, t_fault: float, t_end: float) -> tuple[float | None, float | None]:
        return hold_after(self.commands, self.resets, t_fault, t_end)


def hold_after(commands: list[tuple[float, np.ndarray]], resets: list[float], t_fault: float,
               t_end: float) -> tuple[float | None, float | None]:
    """(seconds from the fault to the last commanded move, the largest move after it until t_end),
    from (wall time, commanded positions) samples. An episode reset inside the window ends it:
    the sim teleports the arm home and the driver's reset holds where the arm now is, a
    deliberate jump of the command."""
    t_end = min([t_end] + [t for t in resets if t > t_fault])
    cmds = [(t, q) for t, q in commands if t_fault - 0.5 <= t <= t_end]
    if len(cmds) < 2:
        return None, None
    last_move = t_fault
    for (_, q0), (t1, q1) in zip(cmds, cmds[1:]):
        if t1 > t_fault and np.abs(q1 - q0).max() > STILL_RAD:
            last_move = t1
    after = [q for t, q in cmds if t >= last_move]
    moved = float(max(np.abs(q - after[0]).max() for q in after)) if after else None
    return last_move - t_fault, moved


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--faults-each", type=int, default=10, help="times each fault is injected")
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help=f"comma-separated kinds to inject, in turn (default all: {','.join(FAULTS)})")
    ap.add_argument("--checkpoint", type=Path, default=Path("models/so101_touch_cube"))
    ap.add_argument("--backend", default="lerobot", choices=("lerobot", "hf"))
    ap.add_argument("--real-time-factor", type=float, default=0.5)
    ap.add_argument("--sample-s", type=float, default=60.0)
    ap.add_argument("--warmup-min", type=float, default=5.0, help="memory growth is measured from the first sample after this")
    ap.add_argument("--hold-window-s", type=float, default=4.0, help="how long a fault is left before its recovery")
    ap.add_argument("--out", type=Path, default=Path("artifacts/endurance"))
    a = ap.parse_args(argv)
    kinds = tuple(k.strip() for k in a.faults.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FAULTS]
    if unknown or not kinds:
        ap.error(f"--faults: unknown kind(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(FAULTS)}")

    import shutil

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from molmoact2_common.bringup.graph import load_deployment
    from molmoact2_common.bringup.lifecycle_manager import LifecycleManager
    from molmoact2_common.bringup.runner import GraphProcesses
    from molmoact2_common.domain import claim_domain_unless_set
    from molmoact2_drivers.core.sim.tasks import TASKS
    from molmoact2_policy.sim_eval import read_eval_bag

    out = a.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    domain_lock = claim_domain_unless_set()
    graph = load_deployment("sim", {
        "robot": "so101", "eval": "true", "task": "touch_cube", "episodes": "0", "checkpoint": str(a.checkpoint.resolve()),
        "backend": a.backend, "instruction": TASKS["touch_cube"].instruction, "record": "true",
        "bag_path": str(out / "bag"), "real_time_factor": str(a.real_time_factor), "episode_timeout_s": "8.0",
        "heartbeat_timeout_s": str(HEARTBEAT_TIMEOUT_S)})
    procs = GraphProcesses(graph, out / "logs", use_sim_time=True)
    rclpy.init(args=[])
    node = rclpy.create_node("endurance_operator")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    op = Operator(node, executor)

    def spin_until(pred, timeout):
        return op.spin_until(pred, timeout)

    manager = LifecycleManager(node, spin_until, reason_for=procs.log_tail, log=print)
    lifecycle = graph.lifecycle_nodes()
    policy_fqn = next(s.fully_qualified_name for s in graph.nodes if s.name == "policy")
    camera_fqn = next(s.fully_qualified_name for s in graph.nodes if s.name == "camera_ingestion")
    samples: list[dict] = []
    faults: list[FaultRecord] = []
    code = 0
    try:
        procs.start()
        print(f"[endurance] ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}; {len(procs.procs)} processes; "
              f"{a.minutes} min, each fault x{a.faults_each}; logs {out / 'logs'}", flush=True)
        manager.bring_up(lifecycle)
        manager.start_arms(lifecycle)
        t0 = time.monotonic()
        t_end = t0 + a.minutes * 60.0
        schedule = sorted((t0 + (i + 0.5) * (t_end - t0) / (a.faults_each * len(kinds)), kinds[i % len(kinds)])
                          for i in range(a.faults_each * len(kinds)))
        next_sample, last_chunks, last_cmds, last_t = t0 + a.sample_s, op.chunks, op.n_commands, t0
        n_cmds = 0

        def sample() -> None:
            nonlocal last_chunks, last_cmds, last_t, n_cmds
            now = time.monotonic()
            n_cmds = op.n_commands
            span = max(1e-6, now - last_t)
            row = {"minute": round((now - t0) / 60.0, 2),
                   "rss_mb": {fqn: rss_mb(p.pid) for fqn, p in procs.procs.items() if p.poll() is None},
                   "chunks_per_s": round((op.chunks - last_chunks) / span, 2),
                   "commands_per_s": round(max(0, n_cmds - last_cmds) / span, 1),
                   "policy_p99_latency_s": round(op.policy.p99_latency, 3) if op.policy else None,
                   "episodes": len(op.supervisor.get("results", []))}
            samples.append(row)
            last_chunks, last_cmds, last_t = op.chunks, n_cmds, now
            total = sum(v for v in row["rss_mb"].values() if v)
            print(f"[endurance] {row['minute']:6.2f} min: RSS {total:.0f} MB, {row['chunks_per_s']} chunks/s, "
                  f"{row['commands_per_s']} commands/s, p99 {row['policy_p99_latency_s']} s, {row['episodes']} episodes", flush=True)

        while time.monotonic() < t_end:
            now = time.monotonic()
            if now >= next_sample:
                sample()
                next_sample += a.sample_s
            if schedule and now >= schedule[0][0]:
                _, kind = schedule.pop(0)
                faults.append(inject(kind, op, procs, policy_fqn, camera_fqn, a.hold_window_s))
                f = faults[-1]
                print(f"[endurance] fault {kind}: held {f.hold_after_s} s after it (moved {f.moved_while_held_rad} rad), "
                      f"{f.driver_state}: {f.named!r}; executing again after {f.recovered_after_s} s {f.problems or ''}", flush=True)
                continue
            for fqn, rc in procs.dead():
                raise RuntimeError(f"{fqn} exited with code {rc}: {procs.log_tail(fqn)}")
            op.spin(0.1)
        sample()
    except Exception as exc:  # noqa: BLE001 - the soak reports what stopped it
        print(f"[endurance] STOPPED: {exc}", flush=True)
        code = 1
    finally:
        try:
            for problem in manager.tear_down([s for s in lifecycle if procs.procs.get(s.fully_qualified_name)
                                              and procs.procs[s.fully_qualified_name].poll() is None]):
                print(f"[endurance] tear-down: {problem}")
        except Exception as exc:  # noqa: BLE001
            print(f"[endurance] tear-down: {exc}")
        procs.stop()
        node.destroy_node()
        rclpy.try_shutdown()
        del domain_lock
    judged = len(op.supervisor.get("results", []))
    bag = read_eval_bag(out / "bag", "/cameras/front/image_raw") if (out / "bag").exists() else {"episodes": [], "problems": ["no bag"]}
    in_bag = sum(1 for e in bag["episodes"] if e["outcome"] in ("success", "failure"))
    report = summarise(samples, faults, a.warmup_min, judged, in_bag, bag["problems"])
    report.update({"minutes": a.minutes, "faults_each": a.faults_each, "checkpoint": str(a.checkpoint), "backend": a.backend,
                   "real_time_factor": a.real_time_factor, "samples": samples,
                   "faults": [vars(f) for f in faults]})
    (out / "endurance.json").write_text(json.dumps(report, indent=1, default=str))
    print(render(report))
    return code if report["nothing_lost"] else 1


def inject(kind: str, op: Operator, procs, policy_fqn: str, camera_fqn: str, hold_window_s: float) -> FaultRecord:
    rec = FaultRecord(kind, time.monotonic())
    if not op.spin_until(op.executing, 30.0):
        rec.problems.append(f"not executing before the fault ({op.driver_state_name()})")
    rec.at_wall = time.monotonic()
    if kind == "policy_kill":
        os.killpg(procs.procs[policy_fqn].pid, signal.SIGKILL)
        procs.procs[policy_fqn].wait(10)
    elif kind == "camera_stop":
        procs.procs[camera_fqn].send_signal(signal.SIGINT)
        procs.procs[camera_fqn].wait(10)
    elif kind == "estop":
        op.estop_pub.publish(op.Bool(data=True))
    elif kind == "heartbeat_loss":
        op.heartbeat_on = False
    op.spin(hold_window_s)
    t_recover = time.monotonic()
    rec.hold_after_s, rec.moved_while_held_rad = (round(v, 4) if v is not None else None
                                                  for v in op.hold_after(rec.at_wall, t_recover))
    rec.driver_state = op.driver_state_name()
    rec.named = op.driver.last_event if op.driver else ""
    rec.policy_said = op.policy.message if op.policy else ""
    # recovery, as the operator would
    if kind == "policy_kill":
        procs.respawn(policy_fqn)
        problem = bring_up_again(op, policy_fqn)
        if problem:
            rec.problems.append(problem)
    elif kind == "camera_stop":
        procs.respawn(camera_fqn)
    elif kind == "estop":
        for client in (op.reset_client, op.start_client):
            ok, msg = op.call(client)
            if not ok:
                rec.problems.append(msg)
    elif kind == "heartbeat_loss":
        op.heartbeat_on = True
    if op.spin_until(op.executing, 60.0):
        rec.recovered_after_s = round(time.monotonic() - t_recover, 2)
    else:
        rec.problems.append(f"not executing 60 s after the recovery ({op.driver_state_name()})")
    return rec


def bring_up_again(op: Operator, fqn: str, timeout_s: float = 90.0) -> str:
    """Configure and activate a restarted lifecycle node; '' or what went wrong. Fresh clients and
    short retried calls: the killed process's endpoints linger in discovery until their lease
    runs out, and a request sent before the new server is matched is never answered."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    end = time.monotonic() + timeout_s
    wanted = [("unconfigured", Transition.TRANSITION_CONFIGURE), ("inactive", Transition.TRANSITION_ACTIVATE)]
    while time.monotonic() < end:
        get = op.node.create_client(GetState, f"{fqn}/get_state")
        try:
            if not op.spin_until(get.service_is_ready, 5.0):
                continue
            fut = get.call_async(GetState.Request())
            if not op.spin_until(fut.done, 3.0):
                continue
            label = fut.result().current_state.label
        finally:
            op.node.destroy_client(get)
        if label == "active":
            return ""
        step = next((t for lbl, t in wanted if lbl == label), None)
        if step is None:
            op.spin(0.5)  # a transition in progress
            continue
        change = op.node.create_client(ChangeState, f"{fqn}/change_state")
        try:
            if op.spin_until(change.service_is_ready, 5.0):
                fut = change.call_async(ChangeState.Request(transition=Transition(id=step)))
                op.spin_until(fut.done, 60.0)  # configure loads the model
        finally:
            op.node.destroy_client(change)
    return f"{fqn}: not active {timeout_s:.0f} s after its restart"


def summarise(samples: list[dict], faults: list[FaultRecord], warmup_min: float, judged: int, in_bag: int,
              bag_problems: list) -> dict:
    after = [s for s in samples if s["minute"] >= warmup_min] or samples[-1:]
    growth = {}
    if len(after) >= 2:
        for fqn, first in after[0]["rss_mb"].items():
            last = after[-1]["rss_mb"].get(fqn)
            if first and last:
                growth[fqn] = round(100.0 * (last - first) / first, 1)
    per_kind = {}
    for kind in FAULTS:
        fs = [f for f in faults if f.kind == kind]
        if not fs:
            continue
        holds = [f.hold_after_s for f in fs if f.hold_after_s is not None]
        per_kind[kind] = {"n": len(fs), "hold_after_s_max": max(holds) if holds else None,
                          "moved_while_held_rad_max": max((f.moved_while_held_rad or 0.0) for f in fs),
                          "named": sorted({f"{f.driver_state}: {f.named}" for f in fs}),
                          "policy_said": sorted({f.policy_said for f in fs}),
                          "recovered": sum(1 for f in fs if f.recovered_after_s is not None),
                          "recovered_after_s_max": max((f.recovered_after_s for f in fs if f.recovered_after_s is not None), default=None),
                          "problems": [p for f in fs for p in f.problems]}
    return {"rss_growth_pct": growth, "fault_summary": per_kind, "episodes_judged": judged, "episodes_in_bag": in_bag,
            "bag_problems": bag_problems, "nothing_lost": judged == in_bag and not bag_problems}


def render(r: dict) -> str:
    lines = ["", "| minute | RSS total, MB | chunks/s | commands/s | policy p99 latency, s | episodes |", "|---|---|---|---|---|---|"]
    for s in r["samples"]:
        total = sum(v for v in s["rss_mb"].values() if v)
        lines.append(f"| {s['minute']} | {total:.0f} | {s['chunks_per_s']} | {s['commands_per_s']} | {s['policy_p99_latency_s']} | {s['episodes']} |")
    lines += ["", "| process | RSS growth after warm-up |", "|---|---|"]
    lines += [f"| {k} | {v} % |" for k, v in sorted(r["rss_growth_pct"].items())]
    lines += ["", "| fault | n | held after, s (max) | moved while held, rad (max) | driver: state, last event | policy said | recovered | recovery, s (max) | problems |",
              "|---|---|---|---|---|---|---|---|---|"]
    for k, v in r["fault_summary"].items():
        lines.append(f"| {k} | {v['n']} | {v['hold_after_s_max']} | {v['moved_while_held_rad_max']} | {'; '.join(v['named'])} | {'; '.join(v['policy_said'])} | "
                     f"{v['recovered']}/{v['n']} | {v['recovered_after_s_max']} | {'; '.join(v['problems']) or '-'} |")
    lines.append(f"\nepisodes judged {r['episodes_judged']}, in the bag {r['episodes_in_bag']}; bag problems {r['bag_problems'] or 'none'}; "
                 f"nothing lost: {r['nothing_lost']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
