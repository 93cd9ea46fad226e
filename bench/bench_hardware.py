"""Hardware backends on their wire-level emulators: cycle costs, sustained servo rates, stop latency.

    python bench/bench_hardware.py [--cycles 2000] [--seconds 3]

1. SO-100/101 (Feetech STS3215, vendor SDK over a pty): Python-side cost of one full cycle
   (sync read of 8 bytes x 6 servos + sync write of 6 goals), with the emulator in its own
   process; the highest back-to-back rate; and the bus-time budget at 1 Mbaud computed from the
   packet sizes (a pty ignores the baud rate, so the measured cost excludes wire time).
2. YAM (i2rt, Damiao MIT frames over python-can's virtual bus; the emulator must share the
   process): the period of i2rt's control loop (one MIT command + feedback per motor, 7 motors),
   measured on the emulator's side from the arrival times of motor 1's frames, and its rate.
3. Stop latency on the emulator's side of the bus: from the moment a hold target is issued to the
   backend (what the driver does on an e-stop, at its next tick) to the arrival of the frame that
   carries it (Feetech: the Goal_Position sync write; YAM: the last of the 7 motors' MIT frames).
   The driver's tick adds up to one servo period (10 ms at 100 Hz, 4 ms at 250 Hz) on top.

Prints p50/p99 figures; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src" / "molmoact2_drivers"), str(ROOT / "src" / "molmoact2_common")]

from molmoact2_drivers.core.backends.feetech import LEROBOT_MOTOR_NAMES, FeetechBackend, MotorCalibration  # noqa: E402

CAL = {n: MotorCalibration(i + 1, 0, 0, 600, 3500) for i, n in enumerate(LEROBOT_MOTOR_NAMES)}


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q))


def fmt_us(xs):
    return f"p50 {pct(xs, 50) * 1e6:8.1f} us   p99 {pct(xs, 99) * 1e6:8.1f} us"


def feetech_bus_budget(n: int = 6, baud: int = 1_000_000) -> tuple[int, float]:
    sync_read = 4 + 1 + 2 + n + 1  # FF FF FE LEN | 0x82 | addr len | ids | chk
    status = n * (6 + 8)  # FF FF ID LEN ERR | 8 data | chk, per servo
    sync_write = 4 + 1 + 2 + 3 * n + 1  # FF FF FE LEN | 0x83 | addr len | (id lo hi) x n | chk
    total = sync_read + status + sync_write
    return total, total * 10 / baud  # 8N1: 10 bits per byte; return delay 0 (LeRobot sets Return_Delay_Time 0)


def bench_feetech(cycles: int) -> None:
    print("== SO-100/101: Feetech STS3215 (scservo_sdk over a pty; emulator in its own process) ==")
    with tempfile.TemporaryDirectory() as tmp:
        link = os.path.join(tmp, "ttySTS")
        emu = subprocess.Popen([sys.executable, str(ROOT / "tests" / "emulators" / "feetech_sts3215.py"), "--link", link],
                               stdout=subprocess.PIPE, text=True)
        try:
            emu.stdout.readline()
            b = FeetechBackend("arm", list(LEROBOT_MOTOR_NAMES), port=link, calibration=CAL, gripper="gripper")
            b.connect()
            b.enable()
            target = np.zeros(6)
            reads, writes, cycle = [], [], []
            for k in range(cycles):
                target[0] = 0.3 * np.sin(k / 50)
                t0 = time.perf_counter()
                b.read_state()
                t1 = time.perf_counter()
                b.send_target(target)
                t2 = time.perf_counter()
                reads.append(t1 - t0)
                writes.append(t2 - t1)
                cycle.append(t2 - t0)
            b.close()
        finally:
            emu.terminate()
            emu.wait(5)
    nbytes, bus_s = feetech_bus_budget()
    print(f"sync read (6 servos, 8 bytes each):  {fmt_us(reads)}")
    print(f"sync write (6 goals):                {fmt_us(writes)}")
    print(f"full cycle, Python side:             {fmt_us(cycle)}   -> sustained {1 / np.mean(cycle):7.0f} Hz back-to-back")
    print(f"bus time at 1 Mbaud: {nbytes} bytes per cycle = {bus_s * 1e6:.0f} us -> wire limit {1 / bus_s:.0f} Hz; "
          f"real limit {1 / (bus_s + np.median(cycle)):.0f} Hz with this Python cost (USB adapter latency not included)")


def bench_feetech_stop(samples: int) -> None:
    from emulators.feetech_sts3215 import FeetechBusEmulator

    lat = []
    with FeetechBusEmulator() as emu:
        b = FeetechBackend("arm", list(LEROBOT_MOTOR_NAMES), port=emu.port, calibration=CAL, gripper="gripper")
        b.connect()
        b.enable()
        for k in range(samples):
            b.send_target(np.full(6, 0.1 * (k % 3)))
            time.sleep(0.01)
            hold = b.read_state().positions
            t0 = time.monotonic()
            b.send_target(hold)
            deadline = t0 + 1.0
            while time.monotonic() < deadline:
                w = emu.goal_writes_since(t0)
                if w:
                    lat.append(w[0][0] - t0)
                    break
                time.sleep(0.0002)
        b.close()
    print(f"stop latency, hold issued -> Goal_Position sync write at the servos (emulator side): {fmt_us(lat)}")


def bench_yam(seconds: float, samples: int) -> None:
    from emulators.can_transport import virtual_socketcan
    from emulators.damiao_can import DamiaoBusEmulator
    from molmoact2_drivers.core.backends.i2rt_yam import YamBackend

    print("== YAM: i2rt over python-can virtual bus (7 Damiao motors, emulator in the same process) ==")
    joints = [f"left_joint{i}" for i in range(1, 7)] + ["left_gripper"]
    with virtual_socketcan(), DamiaoBusEmulator("can_left") as emu:
        b = YamBackend("left", joints, channel="can_left", gripper="left_gripper", gripper_limits=[6.57, 0.0])
        t = time.monotonic()
        b.connect()
        print(f"bring-up (register checks, enable, gravity model): {time.monotonic() - t:.2f} s")
        t0 = time.monotonic()
        time.sleep(seconds)
        frames = emu.mit_commands_since(t0, 1)
        stamps = np.array([f[0] for f in frames])
        periods = np.diff(stamps)
        print(f"i2rt control loop (7 x MIT command + feedback), period: {fmt_us(periods)} -> {len(frames) / seconds:6.0f} Hz sustained")
        print(f"  per motor exchange: p50 {pct(periods, 50) / 7 * 1e6:.1f} us")
        lat, reads = [], []
        for k in range(samples):
            target = np.array([0.05 * (k % 4), 0.3, 0.3, 0.0, 0.0, 0.0, 0.5])
            t1 = time.monotonic()
            b.send_target(target)
            deadline = t1 + 1.0
            done = False
            while time.monotonic() < deadline and not done:
                arrivals = []
                for mid in range(1, 8):
                    cmds = [c for c in emu.mit_commands_since(t1, mid)]
                    new = [ts for ts, (p, *_rest) in cmds if mid != 1 or abs(p - target[0]) < 2e-3]
                    if not new:
                        break
                    arrivals.append(new[0])
                else:
                    lat.append(max(arrivals) - t1)
                    done = True
                time.sleep(0.0005)
            r0 = time.perf_counter()
            b.read_state()
            reads.append(time.perf_counter() - r0)
            time.sleep(0.02)
        b.close()
    print(f"stop latency, hold issued -> last motor's MIT frame carrying it (emulator side): {fmt_us(lat)}")
    print(f"backend read_state (i2rt state + watchdog checks): {fmt_us(reads)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--samples", type=int, default=50)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    bench_feetech(args.cycles)
    bench_feetech_stop(args.samples)
    bench_yam(args.seconds, args.samples)


if __name__ == "__main__":
    main()
