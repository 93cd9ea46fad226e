"""Leader-to-follower latency of SO-101 teleoperation, on the wire-level emulators.

    source tools/env.sh jazzy && python bench/bench_teleop.py [--steps 200] [--rate 100]

Two emulated STS3215 buses on two ptys (in this process); our leader_node reads the leader bus
(torque off) and publishes teleop_target over real DDS to our driver_node (input:=teleop), which
writes the follower bus, each in its own process. One sample: a hand moves the leader's
shoulder_pan servo by a small step (within one tick of the velocity limit, so the first goal
after the change already carries it); the latency is from that change of Present_Position on the
leader's bus to the arrival on the follower's bus of the first Goal_Position sync write that
carries the new position (both ``time.monotonic()``, taken by the emulators). It includes the
leader's read period (up to 1/rate), DDS, and the driver's servo tick (up to 10 ms at 100 Hz).

Prints p50/p99 and the mean; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src" / "molmoact2_drivers"), str(ROOT / "src" / "molmoact2_common")]

from emulators.feetech_sts3215 import FeetechBusEmulator  # noqa: E402
from molmoact2_drivers.core.backends.feetech import LEROBOT_MOTOR_NAMES, MotorCalibration, save_calibration  # noqa: E402

CAL = {n: MotorCalibration(i + 1, 0, 0, 700, 3400) for i, n in enumerate(LEROBOT_MOTOR_NAMES)}
STEP = 10  # raw steps = 0.015 rad: below one tick of the 2 rad/s velocity limit at 100 Hz


def first_goal(emu: FeetechBusEmulator, since: float, servo: int, value: int, timeout: float = 2.0) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t, goals in emu.goal_writes_since(since):
            if goals.get(servo) == value:
                return t
        time.sleep(0.005)  # the arrival time is the emulator's: polling slowly costs no accuracy, only CPU
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rate", type=float, default=100.0, help="leader read rate and follower servo rate, Hz")
    args = ap.parse_args()
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(100, 200)), PYTHONUNBUFFERED="1")
    with tempfile.TemporaryDirectory() as tmp, FeetechBusEmulator() as leader, FeetechBusEmulator() as follower:
        lcal = save_calibration(Path(tmp) / "leader.json", CAL)
        fcal = save_calibration(Path(tmp) / "follower.json", CAL)
        logs = [open(Path(tmp) / f"{n}.log", "w") for n in ("driver", "leader")]
        common = ["-p", "embodiment:=so101", "-p", f"servo_rate_hz:={args.rate}"]
        procs = [
            subprocess.Popen([sys.executable, "-m", "molmoact2_drivers.nodes.driver_node", "--ros-args", *common,
                              "-p", "backend_options:='" + json.dumps({"port": follower.port, "calibration": str(fcal)}) + "'",
                              "-p", "autostart:=activate", "-p", "require_start:=never", "-p", "mode:=actuate",
                              "-p", "input:=teleop", "-p", "servo_thread_priority:=0"], env=env, stdout=logs[0], stderr=subprocess.STDOUT),
            subprocess.Popen([sys.executable, "-m", "molmoact2_drivers.nodes.leader_node", "--ros-args",
                              "-p", "embodiment:=so101", "-p", f"rate_hz:={args.rate}", "-p", "leader_type:=feetech",
                              "-p", "leader_options:='" + json.dumps({"port": leader.port, "calibration": str(lcal)}) + "'"],
                             env=env, stdout=logs[1], stderr=subprocess.STDOUT),
        ]
        try:
            base = leader.servo(1).present_position()
            if first_goal(follower, 0.0, 1, base, timeout=60.0) is None:
                raise SystemExit("the follower never followed the leader: see the logs\n"
                                 + "\n".join((Path(tmp) / f"{n}.log").read_text()[-3000:] for n in ("driver", "leader")))
            lat, missed = [], 0
            pos = base
            for i in range(args.steps):
                pos = base + (STEP if i % 2 == 0 else 0)
                time.sleep(random.uniform(0.0, 1.0 / args.rate))  # decorrelate from both loops' phases
                t0 = time.monotonic()
                leader.move_by_hand(1, pos)
                t1 = first_goal(follower, t0, 1, pos)
                if t1 is None:
                    missed += 1
                    seen = [g.get(1) for _, g in follower.goal_writes_since(t0)][-5:]
                    print(f"step {i}: no goal {pos} on the follower's bus within 2 s (last goals {seen}, "
                          f"leader reads {leader.servo(1).present_position()})", flush=True)
                else:
                    lat.append(t1 - t0)
                time.sleep(0.03)
            x = np.asarray(lat) * 1e3
            print(f"== SO-101 teleop: leader Present_Position change -> follower Goal_Position write, {args.rate:g} Hz ==")
            print(f"samples {len(x)} (missed {missed})   p50 {np.percentile(x, 50):6.2f} ms   p99 {np.percentile(x, 99):6.2f} ms"
                  f"   mean {x.mean():6.2f} ms   max {x.max():6.2f} ms")
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
            for f in logs:
                f.close()


if __name__ == "__main__":
    main()
