"""Simulation benchmark: what one simulated second costs the sim node, SO-101 beside bimanual YAM.

  python bench/bench_sim.py [--n 20] [--width 160] [--height 120]

For each robot, in one run: the physics (every arm stepped in lockstep, as ``mujoco_sim_node``
does; YAM with its Python joint-impedance loop per step) as wall seconds per simulated second, and
the renders one camera frame costs at the node's default size (SO-101: its pick scene, both
cameras from the model's one camera, rendered once as the node does; YAM: the MjSpec scene with
the overview and two wrist cameras), p50 / p99 over ``--n`` frames.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from molmoact2_common.embodiment import load_embodiment  # noqa: E402
from molmoact2_drivers.core.sim.multi_arm import MultiArmSim  # noqa: E402


def bench(robot: str, n: int, width: int, height: int) -> dict:
    emb = load_embodiment(robot)
    sim = MultiArmSim(emb)
    for arm in sim.arms:
        q = sim.read()[0][sim.slices[arm.name]].copy()
        q[sim.sims[sim.arm_index(arm.name)].arm_index] += 0.3
        sim.set_target(arm.name, q)
    steps = int(2.0 / sim.timestep)
    t = time.perf_counter()
    sim.step(steps)
    physics = (time.perf_counter() - t) / (steps * sim.timestep)
    cams = [(c.name, sim.default_camera(c.name)) for c in emb.cameras]
    renderer = sim.renderer(width, height)
    opt = sim.scene_option()
    times = []
    try:
        for _ in range(n + 2):
            t = time.perf_counter()
            sim.sync_scene()
            for cam in dict.fromkeys(c for _, c in cams):  # as the node: a shared model camera renders once
                sim.render(renderer, cam, opt)
            times.append(time.perf_counter() - t)
    finally:
        renderer.close()
    a = np.asarray(times[2:]) * 1e3  # the first renders warm the context up
    return {"robot": robot, "arms": len(sim.arms), "cameras": len(cams), "physics_wall_per_sim_s": physics,
            "render_p50_ms": float(np.percentile(a, 50)), "render_p99_ms": float(np.percentile(a, 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    args = ap.parse_args()
    print(f"{'robot':<14} {'arms':>4} {'cams':>4} {'physics s/sim s':>16} {'render all p50':>15} {'p99':>9}")
    for robot in ("so101", "yam_bimanual"):
        r = bench(robot, args.n, args.width, args.height)
        print(f"{r['robot']:<14} {r['arms']:>4} {r['cameras']:>4} {r['physics_wall_per_sim_s']:>16.3f} "
              f"{r['render_p50_ms']:>12.1f} ms {r['render_p99_ms']:>6.1f} ms")


if __name__ == "__main__":
    main()
