"""The Damiao emulator checked against i2rt's own frame and register code (no robot-level logic involved)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("i2rt")

from emulators.can_transport import installed, virtual_socketcan  # noqa: E402
from emulators.damiao_can import ST_COMM_LOSS, DamiaoBusEmulator  # noqa: E402


@pytest.fixture
def bus():
    with virtual_socketcan(), DamiaoBusEmulator("can_left") as emu:
        yield emu


def test_transport_substitution_only_changes_python_can_bus_creation(bus):
    import can

    from i2rt.motor_drivers.can_interface import CanInterface

    assert installed()
    iface = CanInterface(channel="can_left", bustype="socketcan")
    try:
        assert type(iface.bus).__name__ == "VirtualBus"  # i2rt asked for socketcan, unchanged
    finally:
        iface.close()
    assert can.interfaces.BACKENDS["virtual"] == ("can.interfaces.virtual", "VirtualBus")


def test_i2rt_register_tools_read_write_and_save(bus):
    from i2rt.motor_config_tool.dm_motor_registers import read_register, save_register_to_flash, write_register
    from i2rt.motor_config_tool.utils import RawCanInterface

    iface = RawCanInterface(channel="can_left", bustype="socketcan")
    try:
        assert read_register(iface, 1, "Gr") == pytest.approx(40.0)
        assert read_register(iface, 5, "Gr") == pytest.approx(10.0)
        assert read_register(iface, 2, "TMAX") == pytest.approx(28.0)
        assert read_register(iface, 6, "VMAX") == pytest.approx(30.0)
        assert read_register(iface, 3, "CTRL_MODE") == 1
        assert read_register(iface, 4, "TIMEOUT") == 8000
        assert write_register(iface, 4, "TIMEOUT", 4000) == 4000
        assert bus.motors[4].watchdog_s == pytest.approx(0.2)
        assert len(save_register_to_flash(iface, 4, "TIMEOUT").data) < 8  # a short reply, as i2rt expects
    finally:
        iface.close()


def test_i2rt_enable_mit_command_and_feedback_decode(bus):
    from i2rt.motor_drivers.dm_driver import DMSingleMotorCanInterface

    iface = DMSingleMotorCanInterface(channel="can_left", bustype="socketcan")
    try:
        info = iface.motor_on(2, "DM4340")
        assert info.error_code == "0x1" and bus.motors[2].enabled
        for _ in range(200):
            fb = iface.set_control(2, "DM4340", 0.5, 0.0, 80.0, 5.0, 0.0)
            time.sleep(0.002)
        assert fb.position == pytest.approx(0.5, abs=5e-3)
        cmd = bus.mit_commands_since(0.0, 2)[-1][1]
        assert cmd[0] == pytest.approx(0.5, abs=1e-3) and cmd[2] == pytest.approx(80.0, abs=0.2) and cmd[3] == pytest.approx(5.0, abs=2e-3)
        assert fb.temperature_rotor == pytest.approx(30.0)
    finally:
        iface.close()


def test_status_codes_reach_i2rt_as_its_named_errors(bus):
    from i2rt.motor_drivers.dm_driver import DMSingleMotorCanInterface

    iface = DMSingleMotorCanInterface(channel="can_left", bustype="socketcan")
    try:
        iface.motor_on(3, "DM4340")
        bus.set_rotor_temperature(3, 130)
        with pytest.raises(RuntimeError, match="motor id: 3, error: motor over temperature"):
            iface.set_control(3, "DM4340", 0.0, 0.0, 10.0, 1.0, 0.0)
    finally:
        iface.close()


def test_command_timeout_register_makes_an_unattended_motor_damp(bus):
    from i2rt.motor_drivers.dm_driver import DMSingleMotorCanInterface

    bus.motors[1].regs[9] = 2000  # 100 ms
    iface = DMSingleMotorCanInterface(channel="can_left", bustype="socketcan")
    try:
        iface.motor_on(1, "DM4340")
        iface.set_control(1, "DM4340", 0.0, 0.0, 10.0, 1.0, 0.0)
        assert bus.motor(1).mode == "mit"
        deadline = time.monotonic() + 2.0
        while bus.motor(1).mode != "damping" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert bus.motor(1).mode == "damping" and bus.motor(1).status == ST_COMM_LOSS
    finally:
        iface.close()


def test_i2rt_sim_robot_and_the_emulated_arm_agree_on_a_commanded_pose(bus):
    """i2rt's own sim=True robot is a second, higher-level check of the same command."""
    from i2rt.robots.get_robot import get_yam_robot

    from molmoact2_drivers.core.backends.i2rt_yam import YamBackend

    target = np.array([0.3, 0.4, 0.4, 0.1, -0.1, 0.2, 0.6])
    sim = get_yam_robot("can_left", sim=True)
    try:
        sim.command_joint_pos(target.copy())
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not np.allclose(sim.get_joint_pos(), target, atol=0.02):
            time.sleep(0.05)
        sim_pos = np.asarray(sim.get_joint_pos())
    finally:
        sim.close()
    b = YamBackend("left", [f"j{i}" for i in range(7)], channel="can_left", gripper_limits=[6.57, 0.0])
    b.connect()
    try:
        b.send_target(target)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not np.allclose(b.read_state().positions, target, atol=0.01):
            time.sleep(0.02)
        hw_pos = b.read_state().positions
    finally:
        b.close()
    assert sim_pos.shape == hw_pos.shape == (7,)
    assert np.allclose(sim_pos, hw_pos, atol=0.05)
