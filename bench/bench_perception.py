"""Perception benchmark: eq. (6) change mask vs lerobot's own function (same run, bit-exact checked),
3 cameras, ingestion cost per Observation, and end-to-end latency camera frame -> Observation ->
ChangeMask across processes (shared-memory DDS profile) vs in one process.

    python bench/bench_perception.py [--n 200] [--e2e-n 60] [--skip-e2e]
"""

from __future__ import annotations

import argparse
import os
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
    from molmoact2_policy import ros_conversions as rc
    from molmoact2_policy.core.observation_sync import ObservationSynchronizer

    rng = np.random.default_rng(1)
    cams = ["top", "left", "right"]
    msgs = {c: rc.rgb_to_image_msg(rng.integers(0, 256, (360, 640, 3), dtype=np.uint8), 1, c, encoding="bgr8") for c in cams}
    sync = ObservationSynchronizer(cams, ["left", "right"], camera_max_age=1.0)
    names = {a: [f"{a}_joint{i}" for i in range(7)] for a in ("left", "right")}
    times = []
    for i in range(n):
        t_ns = (i + 1) * 33_000_000
        t0 = time.perf_counter()
        for c in cams:
            sync.add_frame(c, rc.image_msg_to_rgb(msgs[c]), t_ns)
        for a in ("left", "right"):
            sync.add_joint_state(a, names[a], np.zeros(7), t_ns)
        rc.synced_to_observation_msg(sync.assemble(t_ns + 1_000_000))
        times.append(time.perf_counter() - t0)
    p50, p99 = pct(times)
    print(f"ingestion per Observation (3 x 640x360 bgr8 -> rgb8, 2 joint sources, message built): p50 {p50:.2f} ms p99 {p99:.2f} ms")


FEEDER = r'''
import sys, time, numpy as np, rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from molmoact2_common import qos
from molmoact2_msgs.msg import ChangeMask, Observation, PolicyStatus
from molmoact2_policy import ros_conversions as rc

class Feeder(Node):
    def __init__(self, n):
        super().__init__("bench_feeder")
        self.n = n
        rng = np.random.default_rng(0)
        self.frames = [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(4)]
        self.pubs = {c: self.create_publisher(Image, f"/bench/{c}", qos.CAMERA_IMAGE) for c in ("top", "left", "right")}
        self.jp = {a: self.create_publisher(JointState, f"{a}/joint_states", qos.JOINT_STATE) for a in ("left", "right")}
        self.status = self.create_publisher(PolicyStatus, "policy_status", qos.POLICY_STATUS)
        self.create_subscription(Observation, "observation", self.on_obs, qos.OBSERVATION)
        self.create_subscription(ChangeMask, "change_mask/top", self.on_mask, qos.CHANGE_MASK)
        self.lat, self.k, self.ref = [], 0, False
        self.create_timer(1 / 30, self.tick)

    def tick(self):
        now = self.get_clock().now().nanoseconds
        for i, (c, p) in enumerate(self.pubs.items()):
            p.publish(rc.rgb_to_image_msg(self.frames[(self.k + i) % 4], now, c))
        for a, p in self.jp.items():
            js = JointState(name=[f"{a}_joint{i}" for i in range(1, 7)] + [f"{a}_gripper"], position=[0.0] * 7)
            js.header.stamp = rc.ns_to_time(now)
            p.publish(js)
        self.k += 1

    def on_obs(self, msg):
        if not self.ref:
            self.ref = True
            self.status.publish(PolicyStatus(state=PolicyStatus.STATE_RUNNING, consuming_stamp=msg.capture_stamps[0]))

    def on_mask(self, msg):
        self.lat.append((self.get_clock().now().nanoseconds - rc.time_to_ns(msg.header.stamp)) / 1e9)
'''


def _e2e_params():
    return ["-p", "embodiment:=yam_bimanual", "-p", "source_overrides:=['top=topic:/bench/top', 'left=topic:/bench/left', 'right=topic:/bench/right']",
            "-p", "publish_rate_hz:=30.0", "-p", "camera_max_age:=1.0", "-p", "publish_camera_images:=false"]


def bench_e2e(n: int, mode: str) -> None:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    ns: dict = {}
    exec(FEEDER, ns)
    procs = []
    rclpy.init()
    nodes = []
    try:
        if mode == "cross-process":
            env = dict(os.environ)
            procs.append(subprocess.Popen([sys.executable, "-m", "molmoact2_policy.nodes.camera_node", "--ros-args", *_e2e_params()], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            procs.append(subprocess.Popen([sys.executable, "-m", "molmoact2_policy.nodes.masking_node", "--ros-args", "-p", "cameras:=['top']"],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        else:
            from molmoact2_policy.nodes.camera_node import CameraNode
            from molmoact2_policy.nodes.masking_node import MaskingNode

            from rclpy.parameter import Parameter

            cam = [Parameter("embodiment", value="yam_bimanual"), Parameter("publish_rate_hz", value=30.0),
                   Parameter("camera_max_age", value=1.0), Parameter("publish_camera_images", value=False),
                   Parameter("source_overrides", value=[f"{c}=topic:/bench/{c}" for c in ("top", "left", "right")])]
            nodes += [CameraNode(parameter_overrides=cam), MaskingNode(parameter_overrides=[Parameter("cameras", value=["top"])])]
        feeder = ns["Feeder"](n)
        nodes.append(feeder)
        ex = MultiThreadedExecutor(num_threads=3)
        for nd in nodes:
            ex.add_node(nd)
        deadline = time.monotonic() + 90
        while len(feeder.lat) < n + 10 and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.05)
        lat = feeder.lat[10:]
        if not lat:
            print(f"end-to-end {mode}: no masks received")
            return
        p50, p99 = pct(lat)
        print(f"end-to-end camera frame -> Observation -> ChangeMask, {mode}: p50 {p50:.1f} ms p99 {p99:.1f} ms (n={len(lat)}, observation at 30 Hz)")
    finally:
        for nd in nodes:
            nd.destroy_node()
        rclpy.try_shutdown()
        for p in procs:
            p.send_signal(2)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--e2e-n", type=int, default=60)
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
        bench_e2e(a.e2e_n, "cross-process")
        bench_e2e(a.e2e_n, "in-process")


if __name__ == "__main__":
    main()
