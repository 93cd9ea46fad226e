"""Reading bags whose messages are not in time order: throughput and peak memory of
``BagReader.messages()`` for the same recording written in different file orders, mcap and
sqlite3. Each read runs in a fresh process; "peak held" is tracemalloc's peak of Python allocations
during a pass (decompressed chunks, sqlite rows, heap), "read" the throughput of a pass without
tracemalloc. Prints a table.

    python bench/bench_bag_order.py [--seconds 10] [--width 320 --height 240]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READ = r"""
import json, sys, time, tracemalloc
from molmoact2_policy.core.evaluation.bagio import BagReader, make_typestore
store = make_typestore()
r = BagReader(sys.argv[1], store)
tracemalloc.start()
for rec in r.messages():  # a pass under tracemalloc: the peak of what the reader holds
    pass
_, peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
r = BagReader(sys.argv[1], store)
t0 = time.perf_counter()
n = size = 0
last = 0
ordered = True
for rec in r.messages():
    n += 1
    size += len(rec.data)
    ordered &= rec.timestamp_ns >= last
    last = rec.timestamp_ns
dt = time.perf_counter() - t0
print(json.dumps({"messages": n, "bytes": size, "seconds": dt, "ordered": ordered, "peak_mib": peak / 2**20,
                  "pieces": r.read_stats["pieces"], "max_open_pieces": r.read_stats["max_open_pieces"]}))
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ns = ap.parse_args()
    from molmoact2_policy.core.evaluation import synthetic

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_bag_order_") as tmp:
        for storage in ("mcap", "sqlite3"):
            for order in ("time", "per_topic_blocks", "reversed", "interleaved_chunks"):
                bag = Path(tmp) / f"{storage}_{order}"
                spec = synthetic.SyntheticSpec(cameras={"front": "/cam/front", "wrist": "/cam/wrist"}, joint_topic="/joint_states",
                                               joint_names=["a", "b", "c", "d", "e", "gripper"], seconds=ns.seconds,
                                               camera_hz=30, joint_hz=100, width=ns.width, height=ns.height,
                                               storage=storage, file_order=order)
                t0 = time.perf_counter()
                synthetic.write_synthetic_bag(bag, spec)
                wrote = time.perf_counter() - t0
                out = subprocess.run([sys.executable, "-c", READ, str(bag)], capture_output=True, text=True, check=True)
                r = json.loads(out.stdout)
                r.update(storage=storage, order=order, write_s=wrote,
                         bag_mib=sum(f.stat().st_size for f in bag.iterdir()) / 2**20)
                rows.append(r)
                print(f"{storage:8s} {order:19s} bag {r['bag_mib']:7.1f} MiB  {r['messages']:6d} msgs  "
                      f"read {r['bytes'] / 2**20 / r['seconds']:7.1f} MiB/s  peak held {r['peak_mib']:6.1f} MiB  "
                      f"pieces {r['pieces']:4d} (max open {r['max_open_pieces']})  in order: {r['ordered']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
