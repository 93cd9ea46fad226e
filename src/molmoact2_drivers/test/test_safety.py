"""The safety layer and the driver core's faults, ROS-free: each fault ends holding with a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2_common.embodiment import load_embodiment
from molmoact2_drivers.core.backend import BackendError
from molmoact2_drivers.core.backends import create_backend
from molmoact2_drivers.core.driver_core import ChunkInput, DriverState
from molmoact2_drivers.core.factory import build_driver
from molmoact2_drivers.core.safety import SafetyLayer

SO101 = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def layer(**kw):
    return SafetyLayer(["a", "b"], np.array([-1.0, -1.0]), np.array([1.0, 1.0]), np.array([1.0, 2.0]), 0.01, **kw)


def test_nan_and_inf_commands_are_refused_holding_the_previous_and_counted():
    s = layer()
    prev = np.array([0.1, 0.2])
    for bad in ([np.nan, 0.0], [0.0, np.inf], [-np.inf, 0.0]):
        r = s.filter(np.array(bad), prev)
        assert r.refused and "non-finite" in r.refused
        np.testing.assert_array_equal(r.command, prev)
    assert s.counters.refusals_nonfinite == 3


def test_out_of_limit_targets_are_clamped_to_the_joint_limits_minus_margin():
    s = layer(limit_margin=0.1)
    r = s.filter(np.array([5.0, -5.0]), np.array([0.895, -0.895]))
    np.testing.assert_allclose(r.command, [0.9, -0.9])
    assert s.counters.clamps_position == 1


def test_velocity_is_limited_per_joint_at_the_servo_rate():
    s = layer()
    r = s.filter(np.array([0.5, 0.5]), np.zeros(2))
    np.testing.assert_allclose(r.command, [0.01, 0.02])  # 1 and 2 rad/s at 100 Hz
    assert s.counters.clamps_velocity == 1


def test_yam_per_tick_clamp_becomes_a_velocity_limit_of_0_9_rad_per_s():
    emb = load_embodiment("yam_bimanual")
    arm = emb.arm("left")
    d = build_driver(emb, arm, create_backend(arm, type_name="kinematic"), {"workspace_check": False})
    np.testing.assert_allclose(d.safety.max_velocity[:6], 0.9)
    np.testing.assert_allclose(d.safety.max_velocity[6], 2.0)  # the gripper keeps its own


def test_envelope_clamps_chunk_targets_and_counts_the_chunk():
    s = layer(envelope=(np.array([-0.5, -0.5]), np.array([0.5, 0.5])))
    out, changed = s.clamp_to_envelope(np.array([[0.6, 0.0], [0.2, -0.7]]))
    np.testing.assert_allclose(out, [[0.5, 0.0], [0.2, -0.5]])
    assert changed and s.counters.clamps_envelope == 1
    same, changed = s.clamp_to_envelope(np.array([[0.1, 0.1]]))
    assert not changed and s.counters.clamps_envelope == 1


def make_driver(**params):
    emb = load_embodiment("so101")
    arm = emb.arms[0]
    backend = create_backend(arm, type_name="kinematic")
    p = {"execute_steps": 0, "chunk_timeout_s": 0.5, **params}
    d = build_driver(emb, arm, backend, p)
    d.configure()
    d.activate(0.0, 0.0)
    return d, backend


def chunk(rows, stamp=0.0, seq=1, names=SO101, dt=1 / 30):
    rows = np.asarray(rows, dtype=np.float64)
    return ChunkInput(list(names), stamp, dt, rows.shape[0], rows.ravel(), seq)


def run(d, t0, t1, dt=0.01, wall_offset=0.0):
    t = t0
    while t < t1 - 1e-9:
        d.tick(t, t + wall_offset)
        t += dt
    return t


def test_first_chunk_is_not_jumped_to_the_arm_ramps_at_a_bounded_speed():
    d, b = make_driver(chunk_timeout_s=5.0)
    far = np.full((60, 6), 1.0)
    far[:, 5] = 0.9
    assert d.on_chunk(chunk(far), 0.0).success
    assert d.state == DriverState.ARMING
    run(d, 0.0, 0.3)
    steps = np.diff(np.array([p for _, p in b.sent]), axis=0)
    assert np.abs(steps[:, :5]).max() <= 2.0 * 0.5 * 0.01 * 1.5 + 1e-9  # arming speed: half the limit (peak 1.5x)
    assert d.counters.clamps_velocity == 0  # the ramp itself respects the limits
    run(d, 0.3, 1.9)
    assert d.state == DriverState.EXECUTING
    np.testing.assert_allclose(b.position, far[0], atol=1e-9)


def test_real_arm_moves_only_after_the_operator_start():
    d, b = make_driver(require_start="always")
    res = d.on_chunk(chunk(np.full((30, 6), 0.2)), 0.0)
    assert not res.success and "start" in res.message
    run(d, 0.0, 0.2)
    np.testing.assert_array_equal(b.position, 0.0)
    assert d.start().success
    assert d.on_chunk(chunk(np.full((30, 6), 0.2), stamp=0.2, seq=2), 0.2).success
    run(d, 0.2, 1.0)
    assert b.position[0] > 0.15


def test_chunk_stream_stops_the_watchdog_holds_and_counts():
    d, b = make_driver(chunk_timeout_s=0.3)
    long = np.linspace(np.zeros(6), np.full(6, 0.9), 90)  # a 3 s chunk, the stream stops after it
    d.on_chunk(chunk(long), 0.0)
    run(d, 0.0, 0.5)
    assert d.state == DriverState.HOLDING and d.counters.watchdog_holds == 1
    assert "watchdog" in d.last_event
    held = b.position.copy()
    run(d, 0.5, 1.0)
    np.testing.assert_array_equal(b.position, held)
    assert held[0] < 0.3


def test_estop_stops_motion_within_one_tick_at_the_backend_and_latches_until_reset():
    d, b = make_driver(chunk_timeout_s=5.0)
    d.on_chunk(chunk(np.linspace(np.zeros(6), np.full(6, 0.9), 90)), 0.0)
    t = run(d, 0.0, 1.0)
    d.on_estop(t)
    n = len(b.sent)
    run(d, t, t + 0.5)
    after = np.array([p for _, p in b.sent[n:]])
    assert len(after) >= 40
    # the first command after the e-stop already equals the last one before it: no further motion
    np.testing.assert_array_equal(after, np.repeat(b.sent[n - 1][1][None], len(after), axis=0))
    assert d.state == DriverState.ESTOPPED and d.estop_latched
    assert not d.on_chunk(chunk(np.zeros((5, 6)), stamp=t + 0.5, seq=5), t + 0.5).success
    run(d, t + 0.5, t + 1.5)
    assert d.estop_latched, "the e-stop stays latched until reset"
    assert d.reset().success and not d.estop_latched and d.state == DriverState.HOLDING


def test_heartbeat_lost_stops_motion_within_one_tick_and_is_counted():
    d, b = make_driver(heartbeat_timeout_s=0.2, chunk_timeout_s=5.0)
    d.on_chunk(chunk(np.linspace(np.zeros(6), np.full(6, 0.9), 90)), 0.0)
    t = 0.0
    while t < 0.5:
        d.on_heartbeat(t)
        d.tick(t, t)
        t += 0.01
    last_beat = t - 0.01
    moving = len(b.sent)
    while t < 1.5:
        d.tick(t, t)
        t += 0.01
    sent = [(i, p) for i, (_, p) in enumerate(b.sent)]
    changes = [i for i in range(moving, len(sent)) if not np.array_equal(sent[i][1], sent[i - 1][1])]
    # motion continues only until the deadman expires, then at most one more tick
    last_change_time = changes[-1] * 0.01 if changes else 0
    assert last_change_time <= last_beat + 0.2 + 0.01 + 1e-6
    assert d.counters.heartbeat_losses == 1 and d.state == DriverState.HOLDING
    assert "heartbeat" in d.last_event


def test_nan_chunk_is_refused_whole_and_counted():
    d, b = make_driver()
    rows = np.zeros((10, 6))
    rows[3, 2] = np.nan
    res = d.on_chunk(chunk(rows), 0.0)
    assert not res.success and "elbow_flex" in res.message
    assert d.counters.refusals_nonfinite == 1 and d.counters.chunks_refused == 1


def test_out_of_limit_chunk_is_clamped_and_counted_while_executing():
    d, b = make_driver(chunk_timeout_s=5.0)
    rows = np.full((30, 6), 0.0)
    rows[:, 0] = 5.0  # far beyond shoulder_pan's 1.919 rad
    d.on_chunk(chunk(rows), 0.0)
    run(d, 0.0, 3.0)
    assert b.position[0] <= 1.919 + 1e-12
    assert d.counters.clamps_position > 0


def test_bimanual_chunk_each_arm_takes_its_own_columns():
    emb = load_embodiment("yam_bimanual")
    drivers = {}
    for arm in emb.arms:
        b = create_backend(arm, type_name="kinematic", initial_position=[0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.5])
        d = build_driver(emb, arm, b, {"mode": "actuate", "workspace_check": False, "chunk_timeout_s": 5.0})
        d.configure()
        d.activate(0.0, 0.0)
        drivers[arm.name] = (d, b)
    names = emb.model.action_joints  # 14 columns, left then right
    rows = np.tile(np.r_[np.full(6, 0.6), 0.5, np.full(6, 0.4), 0.5], (30, 1))
    for d, _ in drivers.values():
        assert d.on_chunk(chunk(rows, names=names), 0.0).success
    for d, _ in drivers.values():
        run(d, 0.0, 3.0)
    np.testing.assert_allclose(drivers["left"][1].position[:6], 0.6, atol=1e-9)
    np.testing.assert_allclose(drivers["right"][1].position[:6], 0.4, atol=1e-9)


def test_backend_fault_ends_in_error_holding_with_a_message_naming_the_arm():
    d, b = make_driver()
    d.on_chunk(chunk(np.linspace(np.zeros(6), np.full(6, 0.5), 30)), 0.0)
    run(d, 0.0, 0.3)
    b.fail_reason = "motor 3 over temperature"
    r = d.tick(0.3, 0.3)
    assert d.state == DriverState.ERROR and "arm 'arm'" in d.last_event and "motor 3" in d.last_event
    assert not d.on_chunk(chunk(np.zeros((5, 6)), stamp=0.3, seq=2), 0.3).success
    assert not d.reset().success  # still failing: reset refuses
    b.fail_reason = None
    assert d.reset().success and d.state == DriverState.HOLDING


def test_reset_reconnects_a_backend_whose_transport_went_away_and_holds():
    d, b = make_driver()
    d.on_chunk(chunk(np.linspace(np.zeros(6), np.full(6, 0.5), 30)), 0.0)
    run(d, 0.0, 0.3)
    b.connected = False  # the transport is gone (cable pulled)
    d.tick(0.3, 0.3)
    assert d.state == DriverState.ERROR and "not connected" in d.last_event
    res = d.reset()
    assert res.success and "reconnected" in res.message, res.message
    assert b.connected and b.torque_enabled and d.state == DriverState.HOLDING
    held = b.position.copy()
    run(d, 0.3, 0.6)  # no chunk: the arm holds where it was when the transport came back
    np.testing.assert_allclose(b.position, held, atol=1e-9)


def test_duplicate_or_reordered_chunks_are_refused():
    d, b = make_driver()
    assert d.on_chunk(chunk(np.zeros((30, 6)), stamp=0.0, seq=5), 0.0).success
    res = d.on_chunk(chunk(np.zeros((30, 6)), stamp=0.0, seq=4), 0.01)
    assert not res.success and "order" in res.message
    res = d.on_chunk(chunk(np.zeros((30, 6)), stamp=0.0, seq=5), 0.02)  # the same chunk twice
    assert not res.success and "order" in res.message


def test_chunks_of_one_observation_count_up_by_sequence():
    d, b = make_driver()  # a slow camera: several chunks from one frame, fresher joint states
    for seq in (1, 2, 3):
        assert d.on_chunk(chunk(np.zeros((30, 6)), stamp=0.5, seq=seq), 0.5 + 0.05 * seq).success


def test_a_chunk_of_an_older_observation_is_refused_whatever_its_sequence():
    d, b = make_driver()
    assert d.on_chunk(chunk(np.zeros((30, 6)), stamp=1.0, seq=5), 1.0).success
    res = d.on_chunk(chunk(np.zeros((30, 6)), stamp=0.9, seq=6), 1.01)
    assert not res.success and "order" in res.message and "0.900" in res.message


def test_a_restarted_policy_numbering_from_one_is_taken_at_its_first_chunk_and_after():
    d, b = make_driver()
    # the endurance soak's policy reached 670 before it was killed
    assert d.on_chunk(chunk(np.zeros((30, 6)), stamp=53.0, seq=669), 53.1).success
    assert d.on_chunk(chunk(np.zeros((30, 6)), stamp=53.5, seq=670), 53.6).success
    # the restarted process: newer frames, sequences from 1, two chunks per frame
    for stamp, seq in ((65.5, 1), (65.5, 2), (66.0, 3), (66.0, 4)):
        res = d.on_chunk(chunk(np.zeros((30, 6)), stamp=stamp, seq=seq), stamp + 0.05)
        assert res.success, res.message
    assert d.counters.chunks_refused == 0


def test_a_clock_that_jumps_back_forgets_the_old_clocks_chunk_order():
    d, b = make_driver()
    assert d.on_chunk(chunk(np.zeros((30, 6)), stamp=100.0, seq=40), 100.0).success
    # the simulator restarted: /clock from zero again, the policy's stamps with it
    res = d.on_chunk(chunk(np.zeros((30, 6)), stamp=0.5, seq=1), 0.6)
    assert res.success, res.message


def test_disable_torque_is_explicit_and_warns_that_the_arm_drops():
    d, b = make_driver()
    res = d.disable_torque()
    assert res.success and "drop" in res.message
    assert not b.torque_enabled and not d.actuation_enabled


def test_bad_backend_reading_refuses_to_configure():
    emb = load_embodiment("so101")
    arm = emb.arms[0]
    b = create_backend(arm, type_name="kinematic")
    b.position = np.array([0.0, np.nan, 0, 0, 0, 0])
    d = build_driver(emb, arm, b, {})
    b.connect = lambda: None
    b.connected = True
    with pytest.raises(BackendError, match="shoulder_lift"):
        d.configure()
