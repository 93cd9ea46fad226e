"""The workspace builds from clean with colcon on the venv's ROS, and the result imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.ros_harness import ROOT

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_packages_build_from_clean_with_colcon(tmp_path: Path):
    venv = Path(sys.prefix)
    env = {**os.environ, "AMENT_PREFIX_PATH": str(venv), "CMAKE_PREFIX_PATH": str(venv)}
    result = subprocess.run(
        ["colcon", "--log-base", str(tmp_path / "log"), "build",
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install"),
         "--base-paths", str(ROOT / "src"), "--metas", str(ROOT / "colcon.meta"),
         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}",
         "--event-handlers", "console_direct-"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for pkg in ("molmoact2_msgs", "molmoact2_common", "molmoact2_policy", "molmoact2_drivers"):
        assert (tmp_path / "install" / pkg / "share" / pkg / "package.xml").is_file(), f"{pkg} not installed"
    site = tmp_path / "install/molmoact2_msgs/lib" / f"python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    probe = subprocess.run(
        [sys.executable, "-c",
         "from molmoact2_msgs.msg import ActionChunk, Observation, ChangeMask, DepthTokens, PolicyStatus, DriverStatus;"
         "from molmoact2_msgs.srv import SetInstruction;"
         "from rclpy.serialization import serialize_message, deserialize_message;"
         "m = ActionChunk(joint_names=['a'], horizon=1, dt=0.1, positions=[1.5]);"
         "assert deserialize_message(serialize_message(m), ActionChunk) == m; print('ok')"],
        env={**os.environ, "PYTHONPATH": str(site),
             "LD_LIBRARY_PATH": f"{tmp_path / 'install/molmoact2_msgs/lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}"},
        capture_output=True, text=True, timeout=60,
    )
    assert probe.stdout.strip() == "ok", probe.stderr
