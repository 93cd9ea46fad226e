"""The YAM backend: unmodified i2rt driving emulated Damiao motors over python-can's virtual bus.

The only substitution is the transport (``emulators.can_transport``: socketcan -> virtual in
python-can's bus creation); the frames that cross the bus are the ones a robot's CAN bus carries.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("i2rt")

from emulators.can_transport import virtual_socketcan  # noqa: E402
from emulators.damiao_can import REGISTER_ID, ST_ROTOR_OVERTEMP, DamiaoBusEmulator  # noqa: E402
from molmoact2_common.embodiment import load_embodiment  # noqa: E402
from molmoact2_drivers.core.backend import BackendError  # noqa: E402
from molmoact2_drivers.core.backends import create_backend  # noqa: E402
from molmoact2_drivers.core.backends.i2rt_yam import YamBackend  # noqa: E402

JOINTS = [f"left_joint{i}" for i in range(1, 7)] + ["left_gripper"]
GRIPPER_LIMITS = [6.57, 0.0]  # [closed, open] motor angles: skips the 3 s gripper calibration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def emu():
    with virtual_socketcan(), DamiaoBusEmulator("can_left") as e:
        yield e


def make(**kw) -> YamBackend:
    kw.setdefault("gripper_limits", GRIPPER_LIMITS)
    return YamBackend("left", JOINTS, channel="can_left", gripper="left_gripper", **kw)


def wait_until(pred, timeout=3.0, step=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def i2rt_threads():
    return [t for t in threading.enumerate() if "_set_torques_and_update_state" in t.name or t.name == "robot_server"]


def test_bringup_reads_and_reports_every_motor_command_timeout(emu):
    emu.motors[4].regs[9] = 6000  # 300 ms on one motor
    b = make()
    try:
        t0 = time.monotonic()
        b.connect()
        assert b.motor_timeout_s == {1: 0.4, 2: 0.4, 3: 0.4, 4: 0.3, 5: 0.4, 6: 0.4, 7: 0.4}
        # the reads crossed the bus as Damiao register frames: [id, 0, 0x33, 9, ...] on 0x7FF
        reads = [f for f in emu.frames_since(t0) if f.arbitration_id == REGISTER_ID and f.data[2] == 0x33 and f.data[3] == 9]
        assert sorted({f.data[0] for f in reads}) == list(range(1, 8))
        assert b.read_state().extra["motor_timeout_s"][4] == pytest.approx(0.3)
        assert b.health().ok
    finally:
        b.close()


def test_targets_move_the_motors_in_radians_and_the_gripper_as_an_opening(emu):
    b = make()
    try:
        b.connect()
        target = np.array([0.3, 0.5, 0.4, 0.1, -0.2, 0.3, 0.75])
        sent = b.send_target(target)
        assert np.allclose(sent, target)
        assert wait_until(lambda: np.allclose(b.read_state().positions, target, atol=5e-3))
        for mid in range(1, 7):
            assert emu.motor(mid).q == pytest.approx(target[mid - 1], abs=5e-3)
        closed, open_ = GRIPPER_LIMITS
        assert emu.motor(7).q == pytest.approx(closed + 0.75 * (open_ - closed), abs=0.02)
        # commands keep flowing well inside the motors' 400 ms timeout
        t = time.monotonic()
        assert wait_until(lambda: len(emu.mit_commands_since(t, 1)) >= 5, timeout=1.0)
    finally:
        b.close()


def test_targets_outside_the_joint_limits_are_clipped_and_reported(emu):
    b = make()
    try:
        b.connect()
        sent = b.send_target(np.array([9.0, -5.0, 0.2, 0.0, 0.0, 0.0, 1.5]))
        limits = b.robot.get_robot_info()["joint_limits"]
        assert sent[0] == pytest.approx(limits[0, 1]) and sent[1] == pytest.approx(limits[1, 0]) and sent[6] == 1.0
        with pytest.raises(BackendError, match="non-finite target for left_joint2"):
            b.send_target(np.array([0, np.inf, 0, 0, 0, 0, 0.5]))
    finally:
        b.close()


def test_motor_over_temperature_stops_the_arm_and_the_error_names_the_motor(emu):
    b = make()
    try:
        b.connect()
        b.send_target(np.array([0.2, 0.3, 0.3, 0.0, 0.0, 0.0, 0.5]))
        emu.set_rotor_temperature(3, 130)
        assert wait_until(lambda: not b.health().ok)
        msg = b.health().message
        assert "motor 3 (left_joint3)" in msg and "motor over temperature" in msg
        with pytest.raises(BackendError, match="left_joint3"):
            b.send_target(np.zeros(7))
        with pytest.raises(BackendError, match="left_joint3"):
            b.read_state()
        # the arm stops commanding ...
        assert wait_until(lambda: not any(t.is_alive() for t in i2rt_threads()))
        t = time.monotonic()
        time.sleep(0.05)
        assert all(emu.mit_commands_since(t, mid) == [] for mid in range(1, 8))
        # ... and the motors damp as the hardware does (their command watchdog), the hot one in fault
        assert wait_until(lambda: all(emu.motor(m).mode == "damping" for m in (1, 2, 4, 5, 6, 7)), timeout=2.0)
        assert emu.motor(3).mode == "fault" and emu.motor(3).status == ST_ROTOR_OVERTEMP
        # reset after it cooled: i2rt clears the error and the arm comes back
        emu.set_rotor_temperature(3, 40)
        b.connect()
        assert b.health().ok
        b.send_target(np.zeros(7))
    finally:
        b.close()


def test_silent_can_bus_is_reported_by_the_feedback_watchdog_before_the_motors_time_out(emu):
    b = make(feedback_timeout_s=0.1)
    try:
        b.connect()
        b.send_target(np.zeros(7))
        emu.go_silent()
        assert wait_until(lambda: not b.health().ok, timeout=3.0, step=0.002)
        # detected while the motors still run their last command (their own timeout is 400 ms)
        modes = [m.mode for m in emu.motors.values()]
        msg = b.health().message
        assert "no motor feedback" in msg or "control loop stopped" in msg
        assert modes.count("mit") == 7
        with pytest.raises(BackendError, match="can_left"):
            b.send_target(np.zeros(7))
        assert wait_until(lambda: all(emu.motor(m).mode == "damping" for m in range(1, 8)), timeout=2.0)
    finally:
        b.close()


def test_fault_present_at_enable_time_is_refused_by_name_instead_of_looping(emu):
    emu.inject_error(5, 0xB)
    emu.motors[5].t_mos = 140.0
    b = make()
    with pytest.raises(BackendError, match=r"motor 5 \(left_joint5\) reports 'mosfet over temperature' before enable"):
        b.connect()
    assert i2rt_threads() == []
    b.close()


def test_bringup_that_overruns_its_timeout_is_aborted(emu):
    # without our status check, i2rt's enable loop would retry this motor forever
    emu.inject_error(2, 0xC)
    emu.motors[2].t_rotor = 140.0
    b = make(check_status_at_start=False, bringup_timeout_s=2.0)
    with pytest.raises(BackendError, match="bring-up did not finish within 2.0 s"):
        b.connect()
    assert wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("yam-bringup")], timeout=3.0)
    assert i2rt_threads() == []
    b.close()


def test_motor_with_its_command_timeout_off_is_refused(emu):
    emu.motors[2].regs[9] = 0
    with pytest.raises(BackendError, match=r"motor 2 \(left_joint2\) has its command timeout off.*set_timeout"):
        make().connect()


def test_silent_motor_at_start_up_is_named(emu):
    emu.go_silent()
    with pytest.raises(BackendError, match=r"motor 1 \(left_joint1\) does not answer register reads"):
        make().connect()


def test_close_joins_i2rt_threads_and_the_motors_damp_on_their_timeout(emu):
    b = make()
    b.connect()
    assert len(i2rt_threads()) == 2
    b.close()
    b.close()  # idempotent
    assert i2rt_threads() == []
    assert wait_until(lambda: all(emu.motor(m).mode == "damping" for m in range(1, 8)), timeout=2.0)
    assert not b.health().ok


def test_process_exiting_without_close_does_not_hang():
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT / 'tests')!r}]
        from emulators.can_transport import install
        from emulators.damiao_can import DamiaoBusEmulator
        from molmoact2_drivers.core.backends.i2rt_yam import YamBackend
        install()
        emu = DamiaoBusEmulator("can_left"); emu.start()
        b = YamBackend("left", [f"j{{i}}" for i in range(7)], channel="can_left", gripper_limits=[6.57, 0.0])
        b.connect()
        print("connected", flush=True)
        # no close(): i2rt's non-daemon threads must not keep the process alive
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "connected" in proc.stdout


def test_bimanual_config_brings_up_each_arm_on_its_own_channel():
    emb = load_embodiment("yam_bimanual")
    with virtual_socketcan(), DamiaoBusEmulator("can_left") as left, DamiaoBusEmulator("can_right") as right:
        backends = [create_backend(arm, {"gripper_limits": GRIPPER_LIMITS}) for arm in emb.arms]
        try:
            for b in backends:
                b.connect()
            assert [b.channel for b in backends] == ["can_left", "can_right"]
            backends[0].send_target(np.array([0.2, 0.2, 0.2, 0, 0, 0, 0.5]))
            backends[1].send_target(np.array([-0.2, 0.4, 0.4, 0, 0, 0, 0.5]))
            assert wait_until(lambda: abs(left.motor(1).q - 0.2) < 5e-3 and abs(right.motor(1).q + 0.2) < 5e-3)
        finally:
            for b in backends:
                b.close()


def test_unknown_or_missing_backend_fields_are_refused():
    arm = load_embodiment("yam_bimanual").arms[0]
    with pytest.raises(BackendError, match="unknown i2rt backend field.*chanel"):
        create_backend(arm, {"chanel": "can0"})
    with pytest.raises(BackendError, match="must be a socketcan interface whose name contains 'can'"):
        create_backend(arm, {"channel": "left"})
