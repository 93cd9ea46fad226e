"""CPU rendering of the simulated SO-101's cameras: meshes as modelled vs simplified for drawing.

Software rendering is vertex-bound, so the sim node draws meshes simplified by vertex clustering
(``render_mesh_cell_m``). This prints triangles drawn and ms per 160x120 frame for each camera and
grid, measured interleaved in one run (the machine is shared: read the ratio), and the mean
absolute pixel difference to the full meshes.

    python bench/bench_sim_render.py [--frames 20] [--cells 0 0.002 0.005] [--width 160 --height 120]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--cells", type=float, nargs="+", default=[0.0, 0.002, 0.005])
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    args = ap.parse_args()
    import numpy as np

    from molmoact2_common.embodiment import load_embodiment
    from molmoact2_drivers.core.sim.arm_sim import simplify_render_meshes
    from molmoact2_drivers.core.sim.multi_arm import MultiArmSim

    emb = load_embodiment("so101")
    setups = []
    for cell in args.cells:
        sim = MultiArmSim(emb)
        before, after = simplify_render_meshes(sim.scene_model, cell)
        setups.append((cell, sim, sim.renderer(args.width, args.height), sim.scene_option(), after))
    times = {(c, cam): [] for c, *_ in setups for cam in ("front", "wrist")}
    frames = {}
    for _ in range(args.frames):  # interleaved: every grid sees the same machine load
        for cell, sim, r, opt, _tri in setups:
            sim.sync_scene()
            for cam in ("front", "wrist"):
                t = time.perf_counter()
                img = sim.render(r, cam, opt)
                times[(cell, cam)].append((time.perf_counter() - t) * 1e3)
                frames[(cell, cam)] = img.astype(np.float64)
    base = args.cells[0]
    print(f"SO-101 cameras at {args.width}x{args.height}, {args.frames} frames each, interleaved")
    print(f"{'grid, m':>8} {'triangles':>10} {'front ms':>9} {'wrist ms':>9} {'vs first':>9} {'mean |diff|':>12}")
    ref = statistics.median(times[(base, "front")]) + statistics.median(times[(base, "wrist")])
    for cell, _sim, r, _opt, tri in setups:
        f, w = statistics.median(times[(cell, "front")]), statistics.median(times[(cell, "wrist")])
        diff = max(np.abs(frames[(cell, c)] - frames[(base, c)]).mean() for c in ("front", "wrist"))
        print(f"{cell:>8g} {tri:>10d} {f:>9.1f} {w:>9.1f} {ref / (f + w):>8.2f}x {diff:>12.2f}")
    for *_, r, _opt, _tri in setups:
        r.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
