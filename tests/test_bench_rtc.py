"""bench/bench_rtc.py can't rot: a short offline run on the tiny checkpoint prints the boundary
table for the modes asked and the RTC / crossfade ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lerobot.policies.molmoact2.molmoact2_hf_model.modeling_molmoact2")
pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[1]


def test_rtc_bench_prints_the_boundary_table_offline():
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_rtc.py"), "--seconds", "0.8", "--delays-ms", "100",
                        "--modes", "crossfade,rtc", "--period-s", "0.2"],
                       capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [line.split() for line in p.stdout.splitlines() if line.startswith(("crossfade ", "rtc "))]
    assert [r[0] for r in rows] == ["crossfade", "rtc"]
    assert all(r[1] == "100ms" and int(r[2]) >= 3 for r in rows)
    assert "RTC p99 position jump / crossfade's" in p.stdout
