"""The STS3215 emulator checked against the vendor SDK (scservo_sdk) talking to it directly.

Only the SDK's packet code is used here: if the emulator got a framing, checksum, encoding or
ordering detail wrong, the SDK would report a communication error or a wrong value.
"""

from __future__ import annotations

import os
import time

import pytest

scs = pytest.importorskip("scservo_sdk")

from emulators.feetech_sts3215 import (  # noqa: E402
    A_GOAL_POS,
    A_HOMING_OFFSET,
    A_LOCK,
    A_MIN_POS,
    A_PRESENT_POS,
    A_TORQUE_ENABLE,
    FeetechBusEmulator,
    checksum,
    encode_sign_magnitude,
    packet,
)


@pytest.fixture
def bus():
    with FeetechBusEmulator(ids=(1, 2, 3, 4, 5, 6)) as emu:
        port = scs.PortHandler(emu.port)
        assert port.openPort()
        yield emu, port, scs.PacketHandler(0)
        port.closePort()


def test_ping_answers_with_the_sts3215_model_number(bus):
    emu, port, ph = bus
    assert ph.ping(port, 3) == (777, scs.COMM_SUCCESS, 0)
    model, result, _ = ph.ping(port, 9)  # nobody there
    assert result == scs.COMM_RX_TIMEOUT


def test_read_and_write_round_trip_through_the_control_table(bus):
    emu, port, ph = bus
    assert ph.write2ByteTxRx(port, 2, A_MIN_POS, 1234) == (scs.COMM_SUCCESS, 0)
    assert ph.read2ByteTxRx(port, 2, A_MIN_POS) == (1234, scs.COMM_SUCCESS, 0)
    assert emu.servo(2).u16(A_MIN_POS) == 1234


def test_sync_write_then_sync_read_in_list_order(bus):
    emu, port, ph = bus
    for sid in range(1, 7):
        assert ph.write1ByteTxRx(port, sid, A_TORQUE_ENABLE, 1)[0] == scs.COMM_SUCCESS
    writer = scs.GroupSyncWrite(port, ph, A_GOAL_POS, 2)
    goals = {sid: 1000 + 300 * sid for sid in range(1, 7)}
    for sid, g in goals.items():
        assert writer.addParam(sid, [scs.SCS_LOBYTE(g), scs.SCS_HIBYTE(g)])
    assert writer.txPacket() == scs.COMM_SUCCESS
    reader = scs.GroupSyncRead(port, ph, A_PRESENT_POS, 2)
    for sid in (6, 2, 4, 1, 3, 5):  # the answers come back in the order asked
        reader.addParam(sid)
    deadline = time.monotonic() + 3.0
    while True:
        assert reader.txRxPacket() == scs.COMM_SUCCESS
        got = {sid: reader.getData(sid, A_PRESENT_POS, 2) for sid in goals}
        if got == goals or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert got == goals


def test_positions_use_sign_magnitude_with_bit_15_and_homing_offset_bit_11(bus):
    emu, port, ph = bus
    # homing offset -300 in sign-magnitude (bit 11)
    assert ph.write2ByteTxRx(port, 1, A_HOMING_OFFSET, encode_sign_magnitude(-300, 11))[0] == scs.COMM_SUCCESS
    assert ph.read2ByteTxRx(port, 1, A_HOMING_OFFSET)[0] == (1 << 11) | 300
    assert emu.servo(1).homing_offset == -300
    # Present_Position = actual - homing offset
    assert ph.read2ByteTxRx(port, 1, A_PRESENT_POS)[0] == 2048 + 300
    # a negative goal is sign-magnitude bit 15
    assert ph.write2ByteTxRx(port, 1, A_GOAL_POS, encode_sign_magnitude(-5, 15))[0] == scs.COMM_SUCCESS
    assert emu.servo(1).goal_present_frame == -5


def test_status_packets_carry_alarm_bits(bus):
    emu, port, ph = bus
    emu.set_temperature(4, 90)
    _, result, error = ph.read1ByteTxRx(port, 4, 63)
    assert result == scs.COMM_SUCCESS and error & 0x04
    assert "Overheat" in ph.getRxPacketError(error)
    emu.set_voltage(5, 30)
    _, _, error = ph.read1ByteTxRx(port, 5, 62)
    assert error & 0x01 and "voltage" in ph.getRxPacketError(error)


def test_overheated_servo_unloads_its_torque(bus):
    emu, port, ph = bus
    ph.write1ByteTxRx(port, 2, A_TORQUE_ENABLE, 1)
    emu.set_temperature(2, 95)
    assert ph.read1ByteTxRx(port, 2, A_TORQUE_ENABLE)[0] == 0


def test_corrupted_status_packet_is_seen_as_incorrect_by_the_sdk(bus):
    emu, port, ph = bus
    emu.corrupt_status(1)
    assert ph.read2ByteTxRx(port, 1, A_PRESENT_POS)[1] == scs.COMM_RX_CORRUPT
    port.ser.reset_input_buffer()
    assert ph.read2ByteTxRx(port, 1, A_PRESENT_POS)[1] == scs.COMM_SUCCESS


def test_instruction_with_a_bad_checksum_is_ignored(bus):
    emu, port, ph = bus
    bad = bytearray(packet(1, 0x03, bytes([A_MIN_POS, 0x10, 0x00])))
    bad[-1] ^= 0xFF
    port.ser.write(bytes(bad))
    deadline = time.monotonic() + 1.0
    while emu.bad_checksums_received == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert emu.bad_checksums_received == 1
    assert port.ser.read(16) == b""  # no answer
    assert emu.servo(1).u16(A_MIN_POS) == 0


def test_checksum_matches_the_sdk_framing(bus):
    emu, port, ph = bus
    tx = [0] * 8
    tx[2], tx[3], tx[4], tx[5], tx[6] = 3, 4, 0x02, A_PRESENT_POS, 2
    assert ph.txPacket(port, tx) == scs.COMM_SUCCESS
    assert bytes(tx) == packet(3, 0x02, bytes([A_PRESENT_POS, 2]))
    assert tx[7] == checksum(bytes(tx[2:7]))
    port.setPacketTimeoutMillis(2000)  # generous on a loaded machine
    rx, result = ph.rxPacket(port)
    assert result == scs.COMM_SUCCESS and rx[2] == 3 and len(rx) == 8


def test_eeprom_writes_do_not_land_while_locked(bus):
    emu, port, ph = bus
    ph.write1ByteTxRx(port, 6, A_LOCK, 1)
    ph.write2ByteTxRx(port, 6, A_MIN_POS, 777)
    assert ph.read2ByteTxRx(port, 6, A_MIN_POS)[0] == 0
    ph.write1ByteTxRx(port, 6, A_LOCK, 0)
    ph.write2ByteTxRx(port, 6, A_MIN_POS, 777)
    assert ph.read2ByteTxRx(port, 6, A_MIN_POS)[0] == 777


def test_reg_write_waits_for_action(bus):
    emu, port, ph = bus
    assert ph.regWriteTxRx(port, 3, A_MIN_POS, 2, [0x20, 0x01])[0] == scs.COMM_SUCCESS
    assert emu.servo(3).u16(A_MIN_POS) == 0
    ph.action(port, scs.BROADCAST_ID)
    deadline = time.monotonic() + 1.0
    while emu.servo(3).u16(A_MIN_POS) != 0x120 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert emu.servo(3).u16(A_MIN_POS) == 0x120


def test_pulled_cable_fails_the_sdk_transfer(bus):
    emu, port, ph = bus
    emu.pull_cable()
    with pytest.raises(Exception):
        ph.read2ByteTxRx(port, 1, A_PRESENT_POS)
    assert not os.path.exists(os.path.realpath(emu.port))
