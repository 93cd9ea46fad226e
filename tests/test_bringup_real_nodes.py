"""The ordered tear-down with the real arm driver: every process gets SIGINT at once (Ctrl-C
under ``ros2 launch``), the driver holds while the lifecycle manager deactivates, cleans up and
shuts it down, and nothing publishes into a dead context."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _start(tmp_path, name, args):
    log = tmp_path / f"{name}.log"
    with open(log, "w") as f:
        return subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, start_new_session=True), log


def test_real_driver_holds_until_the_manager_tears_it_down_when_every_process_gets_sigint(tmp_path):
    procs = {}
    try:
        procs["driver"] = _start(tmp_path, "driver", [
            sys.executable, "-m", "molmoact2_drivers.nodes.driver_node", "--ros-args", "-r", "__node:=driver",
            "-r", "__ns:=/teardown", "-p", "embodiment:=so101", "-p", "backend:=kinematic"])
        procs["manager"] = _start(tmp_path, "manager", [
            sys.executable, "-m", "molmoact2_common.bringup.manager_node", "--ros-args", "-r", "__ns:=/teardown",
            "-p", "nodes:=['/teardown/driver']", "-p", "arm_drivers:=['/teardown/driver']", "-p", "autostart_arms:=true"])
        manager_log = procs["manager"][1]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "graph is up" not in manager_log.read_text():
            assert procs["manager"][0].poll() is None, manager_log.read_text()
            time.sleep(0.05)  # polling another process's log file
        assert "started /teardown/driver" in manager_log.read_text(), manager_log.read_text()
        for p, _ in procs.values():
            p.send_signal(signal.SIGINT)
        codes = {name: p.wait(timeout=60) for name, (p, _) in procs.items()}
        logs = {name: log.read_text() for name, (_, log) in procs.items()}
        assert codes == {"driver": 0, "manager": 0}, (codes, logs)
        assert "tear-down:" not in logs["manager"], logs["manager"]
        assert "deactivated" in logs["driver"], logs["driver"]  # the manager's deactivate reached it: it held
        for name, text in logs.items():
            assert "context is invalid" not in text and "Failed to publish" not in text, f"{name}:\n{text}"
            assert "Traceback" not in text, f"{name}:\n{text}"
    finally:
        for p, _ in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
