"""Perception benchmark: eq. (6) change mask vs lerobot's own function (same run, interleaved,
bit-exact checked), 3 cameras, ingestion cost per Observation, and end-to-end latency camera frame
-> Observation -> ChangeMask with the camera driver (bench/perception_feeder.py) in its own process:
camera ingestion and masking as separate processes (timer-driven and frame-driven observations)
vs the composed perception process, interleaved round by round in one run.

    python bench/bench_perception.py [--n 200] [--e2e-n 150] [--rounds 2] [--modes separate,composed] [--skip-e2e]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np


def pct(xs):
    a = np.asarray(xs) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def bench_mask(n: int) -> None:
    from lerobot.policies.molmoact2.molmoact2_hf_model.modeling_molmoact2 import _compute_depth_update_mask

    from molmoact2_policy.core import change_mask as cm

    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    frames = []
    for k in range(8):
        f = ref.copy()
        f[40 * k:40 * k + 60, 60 * k:60 * k + 90] = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
        frames.append(f)
    ours, theirs = [], []
    prepared_ref = cm.prepare(ref)
    # interleaved in one process, the order alternating so neither side always runs on a warm cache
    for i in range(n):
        f = frames[i % len(frames)]
        for side in ((0, 1) if i % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            if side == 0:
                want = _compute_depth_update_mask(f, ref, num_depth_codes=100)
                theirs.append(time.perf_counter() - t0)
            else:
                got = cm.changed_cells(cm.similarity(cm.prepare(f), prepared_ref))
                ours.append(time.perf_counter() - t0)
        if not np.array_equal(got.reshape(-1), want):
            raise SystemExit("MISMATCH with lerobot's mask")
    (o50, o99), (l50, l99) = pct(ours), pct(theirs)
    print(f"change mask 640x360, 1 camera: ours p50 {o50:.2f} ms p99 {o99:.2f} ms | lerobot p50 {l50:.2f} ms "
          f"p99 {l99:.2f} ms | speed-up (median) {l50 / o50:.2f}x | bit-exact {n}/{n}")
    refs = [cm.prepare(ref) for _ in range(3)]
    three = []
    for i in range(n):
        t0 = time.perf_counter()
        for c in range(3):
            cm.changed_cells(cm.similarity(cm.prepare(frames[(i + c) % len(frames)]), refs[c]))
        three.append(time.perf_counter() - t0)
    t50, t99 = pct(three)
    print(f"change mask 640x360, 3 cameras: p50 {t50:.2f} ms p99 {t99:.2f} ms")


def bench_ingestion(n: int) -> None:
    """Ingestion per Observation through messages (take as a message, build the Observation message)
    and through bytes (frames read in place from the serialised image, the Observation encoded as
    bytes: what the camera node does), interleaved; the serialisation publish does is included."""
    from rclpy.serialization import serialize_message

    from molmoact2_policy import ros_conversions as rc
    from molmoact2_policy import wire
    from molmoact2_policy.core.observation_sync import ObservationSynchronizer

    rng = np.random.default_rng(1)
    cams = ["top", "left", "right"]
    msgs = {c: rc.rgb_to_image_msg(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), 1, c, encoding="rgb8") for c in cams}
    raws = {c: serialize_message(m) for c, m in msgs.items()}
    sync = ObservationSynchronizer(cams, ["left", "right"], camera_max_age=1.0)
    names = {a: [f"{a}_joint{i}" for i in range(7)] for a in ("left", "right")}
    times = {"messages": [], "bytes": []}
    for i in range(2 * n):
        way = ("messages", "bytes")[i % 2]
        t_ns = (i + 1) * 33_000_000
        t0 = time.perf_counter()
        for c in cams:
            sync.add_frame(c, rc.image_msg_to_rgb(msgs[c]) if way == "messages" else wire.decode_image(raws[c]).to_rgb(), t_ns)
        for a in ("left", "right"):
            sync.add_joint_state(a, names[a], np.zeros(7), t_ns)
        obs = sync.assemble(t_ns + 1_000_000)
        if way == "messages":
            serialize_message(rc.synced_to_observation_msg(obs))
        else:
            wire.encode_observation(obs)
        times[way].append(time.perf_counter() - t0)
    for way, label in (("messages", "image messages in, Observation message serialised"),
                       ("bytes", "image bytes read in place, Observation encoded as bytes (wire.py, the camera node)")):
        p50, p99 = pct(times[way])
        print(f"ingestion per Observation (3 x 640x360 rgb8, 2 joint sources), {label}: p50 {p50:.2f} ms p99 {p99:.2f} ms")


CAMERAS = ("top", "left", "right")
CAMERA_PARAMS = ["-p", "embodiment:=yam_bimanual", "-p", f"source_overrides:={[f'{c}=topic:/bench/{c}' for c in CAMERAS]}",
                 "-p", "publish_rate_hz:=30.0", "-p", "camera_max_age:=1.0", "-p", "publish_camera_images:=false"]
#: how each arrangement starts: (label, [process argv, ...]); the feeder is always its own process
E2E_MODES = {
    "separate": ("separate processes, 30 Hz observation timer (perception:=separate, today's default)", [
        ["-m", "molmoact2_policy.nodes.camera_node", "--ros-args", *CAMERA_PARAMS],
        ["-m", "molmoact2_policy.nodes.masking_node", "--ros-args", "-p", "cameras:=['top']"]]),
    "separate-frames": ("separate processes, observation on each complete frame set", [
        ["-m", "molmoact2_policy.nodes.camera_node", "--ros-args", *CAMERA_PARAMS, "-p", "observation_trigger:=frames"],
        ["-m", "molmoact2_policy.nodes.masking_node", "--ros-args", "-p", "cameras:=['top']"]]),
    "composed": ("one composed process (perception:=composed)", [
        ["-m", "molmoact2_policy.nodes.perception_node", "--ros-args", *CAMERA_PARAMS, "-p", "mask_cameras:=['top']"]]),
}


def _cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_e2e(mode: str, n: int) -> dict:
    """One run of an arrangement: the perception processes, then the feeder (the camera driver) in
    its own process until it has timed ``n`` masks; CPU time of the perception processes over the
    timed window."""
    here = os.path.dirname(os.path.abspath(__file__))
    procs = [subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for argv in E2E_MODES[mode][1]]
    try:
        feeder = subprocess.Popen([sys.executable, os.path.join(here, "perception_feeder.py"), "--n", str(n)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        cpu0 = None
        result: dict = {}
        for line in feeder.stdout:
            if line.startswith("WARM"):
                cpu0 = _cpu_s([p.pid for p in procs])
            elif line.startswith("{"):
                result = json.loads(line)
                if cpu0 is not None:
                    result["cpu_s"] = _cpu_s([p.pid for p in procs]) - cpu0
        feeder.wait(30)
        return result
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def bench_e2e(n: int, rounds: int, modes: list[str]) -> None:
    """The arrangements interleaved (round after round, so the machine's other load falls on
    each alike), each figure pooled over the rounds."""
    pooled = {m: {"lat": [], "masks": 0, "sets": 0, "obs": 0, "cpu": 0.0, "cpu_obs": 0} for m in modes}
    for _ in range(rounds):
        for m in modes:
            r = run_e2e(m, n)
            pooled[m]["lat"] += r.get("latencies_s", [])
            pooled[m]["masks"] += r.get("masks", 0)
            pooled[m]["sets"] += r.get("frame_sets", 0)
            pooled[m]["obs"] += r.get("observations", 0)
            if "cpu_s" in r:  # a round that never warmed up (no 10 masks before the timeout) has none
                pooled[m]["cpu"] += r["cpu_s"]
                pooled[m]["cpu_obs"] += r.get("observations", 0)
    print(f"camera frame (3 x 640x360 rgb8 at 30 Hz, feeder in its own process) -> Observation -> ChangeMask, "
          f"{rounds} interleaved rounds of {n} masks:")
    for m in modes:
        d = pooled[m]
        if not d["lat"]:
            print(f"  {E2E_MODES[m][0]}: no masks received")
            continue
        p50, p99 = pct(d["lat"])
        print(f"  {E2E_MODES[m][0]}: p50 {p50:.1f} ms p99 {p99:.1f} ms max {max(d['lat']) * 1e3:.1f} ms (n={len(d['lat'])}); "
              f"{d['masks'] / max(1, d['sets']):.2f} masks per frame set; "
              f"CPU {1e3 * d['cpu'] / max(1, d['cpu_obs']):.1f} ms per observation")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--e2e-n", type=int, default=150, help="masks timed per arrangement and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", default=",".join(E2E_MODES), help=f"comma-separated subset of {', '.join(E2E_MODES)}")
    ap.add_argument("--skip-e2e", action="store_true")
    a = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    print(f"DDS profile: {os.environ.get('FASTRTPS_DEFAULT_PROFILES_FILE', '(none)')}")
    bench_mask(a.n)
    bench_ingestion(a.n)
    if not a.skip_e2e:
        bench_e2e(a.e2e_n, a.rounds, [m.strip() for m in a.modes.split(",") if m.strip()])


if __name__ == "__main__":
    main()
