"""bench/bench_gpu.py can't rot on machines without a GPU: its dry run builds the released-size
configuration on the meta device, its CPU smoke run takes every step of the GPU run (random checkpoint
written in the HF layout, loaded by the policy node's hf backend, all four rows timed) at the tiny
size, and without CUDA the real run refuses with a clear message."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lerobot.policies.molmoact2.molmoact2_hf_model.modeling_molmoact2")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "bench_gpu.py"


def _run(*args, timeout=240):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=str(ROOT))


def test_gpu_bench_dry_run_builds_the_released_size_on_the_meta_device():
    p = _run("--dry-run-cpu")
    assert p.returncode == 0, p.stderr[-2000:]
    m = re.search(r"total ([0-9.]+) B", p.stdout)
    assert m, p.stdout
    total = float(m.group(1))
    assert 4.0 < total < 7.0  # a ~5 B model, not the tiny one
    for part in ("LLM + heads", "vision", "action expert"):
        assert part in p.stdout
    assert "no weights allocated" in p.stdout


def test_gpu_bench_smoke_run_takes_every_step_through_the_hf_backend():
    p = _run("--smoke-cpu", "--n", "1", "--warmup", "0")
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith("| continuous") or line.startswith("| think")]
    assert len(rows) == 4, p.stdout
    for row in rows:
        assert "failed" not in row and "nan" not in row, row
    assert "12.71" in p.stdout and "55.79" in p.stdout  # the paper's figures printed beside ours


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_bench_without_cuda_refuses_clearly():
    p = _run()
    assert p.returncode == 2
    assert "CUDA is not available" in p.stderr and "--dry-run-cpu" in p.stderr
