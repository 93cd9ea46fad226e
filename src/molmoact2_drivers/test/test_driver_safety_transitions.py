"""The driver's guarantees at every state transition, ROS-free, on the kinematic backend.

After an e-stop or a fault the commanded position never moves (whatever phase the arm was in:
executing, blending, run-out under velocity limiting, arming, holding, after a failed send);
leaving ESTOPPED / ERROR re-anchors to where the arm really is; the step is limited relative to the
measured position; a tracking error is a fault naming the joint; a bimanual arm whose peer's
commands are missing or stale holds and says why; node-clock readers racing for the lock are not
taken for a clock jump.
"""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2_common.embodiment import load_embodiment
from molmoact2_drivers.core.backends import create_backend
from molmoact2_drivers.core.driver_core import ChunkInput, DriverState
from molmoact2_drivers.core.factory import build_driver

SO101 = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
DT = 0.01  # the SO-101 servo rate, 100 Hz


def make_driver(**params):
    emb = load_embodiment("so101")
    arm = emb.arms[0]
    backend = create_backend(arm, type_name="kinematic")
    p = {"execute_steps": 0, "chunk_timeout_s": 5.0, "blending": "crossfade", **params}
    d = build_driver(emb, arm, backend, p)
    d.configure()
    d.activate(0.0, 0.0)
    return d, backend


def chunk(rows, stamp=0.0, seq=1, names=SO101, dt=1 / 30):
    rows = np.asarray(rows, dtype=np.float64)
    return ChunkInput(list(names), stamp, dt, rows.shape[0], rows.ravel(), seq)


def run(d, t0, t1):
    t = t0
    while t < t1 - 1e-9:
        d.tick(t, t)
        t += DT
    return t


def ramp_rows(start, end, steps):
    return np.linspace(np.asarray(start, float), np.asarray(end, float), steps)


def commands(d, t0, t1):
    """Every command the driver computes from t0 to t1 (sent or, in error, held)."""
    out, t = [], t0
    while t < t1 - 1e-9:
        out.append(d.tick(t, t).command)
        t += DT
    return np.array([c for c in out if c is not None]), t


# -- phases: each returns (driver, backend, t) with the arm in that phase ---------------------
def phase_executing():
    d, b = make_driver()
    d.on_chunk(chunk(ramp_rows(np.zeros(6), np.full(6, 0.9), 90)), 0.0)
    t = run(d, 0.0, 1.0)
    assert d.state == DriverState.EXECUTING
    return d, b, t


def phase_blending():
    d, b = make_driver(crossfade_s=0.5)
    d.on_chunk(chunk(ramp_rows(np.zeros(6), np.full(6, 0.9), 90)), 0.0)
    t = run(d, 0.0, 1.0)
    other = ramp_rows(np.full(6, 0.3), np.full(6, -0.6), 60)
    assert d.on_chunk(chunk(other, stamp=t, seq=2), t).success
    t = run(d, t, t + 0.2)  # inside the 0.5 s cross-fade
    assert d.state == DriverState.EXECUTING and len(d.executor._paths) == 2
    return d, b, t


def phase_run_out_under_velocity_limit():
    d, b = make_driver(blending="replace")
    d.on_chunk(chunk(np.zeros((15, 6))), 0.0)
    t = run(d, 0.0, 0.4)
    assert d.state == DriverState.EXECUTING
    # a short chunk ending far away: it runs out while the velocity limit still slows the arm
    jump = np.zeros((4, 6))
    jump[1:, :5] = 1.2
    assert d.on_chunk(chunk(jump, stamp=t, seq=2), t).success
    t = run(d, t, t + 0.15)
    assert d.state == DriverState.HOLDING and d.hold_target is not None
    assert np.abs(d.hold_target - d.last_command).max() > 0.3, "the arm is still on its way to the run-out target"
    return d, b, t


def phase_arming():
    d, b = make_driver()
    far = np.full((90, 6), 1.0)
    d.on_chunk(chunk(far), 0.0)
    t = run(d, 0.0, 0.3)
    assert d.state == DriverState.ARMING and d.ramp.active
    return d, b, t


def phase_holding():
    d, b = make_driver()
    d.on_chunk(chunk(ramp_rows(np.zeros(6), np.full(6, 0.4), 30)), 0.0)
    t = run(d, 0.0, 2.0)
    assert d.state == DriverState.HOLDING
    return d, b, t


def phase_after_failed_send():
    d, b = make_driver()
    d.on_chunk(chunk(ramp_rows(np.zeros(6), np.full(6, 0.9), 90)), 0.0)
    t = run(d, 0.0, 1.0)
    b.send_fail_reason = "write to motor 2 timed out"
    d.tick(t, t)
    t += DT
    assert d.state == DriverState.ERROR and "motor 2" in d.last_event
    b.send_fail_reason = None  # the bus recovers: the driver stays in error, holding
    return d, b, t


PHASES = {
    "executing": phase_executing,
    "blending": phase_blending,
    "run_out_under_velocity_limit": phase_run_out_under_velocity_limit,
    "arming": phase_arming,
    "holding": phase_holding,
    "after_failed_send": phase_after_failed_send,
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_estop_at_every_phase_freezes_the_command_from_the_next_tick(phase):
    d, b, t = PHASES[phase]()
    held = d.last_command.copy()
    d.on_estop(t)
    cmds, t = commands(d, t, t + 1.0)
    assert len(cmds) >= 95
    np.testing.assert_array_equal(cmds, np.repeat(held[None], len(cmds), axis=0))
    # a new chunk is refused and changes nothing
    assert not d.on_chunk(chunk(np.full((30, 6), -0.5), stamp=t, seq=99), t).success
    cmds, t = commands(d, t, t + 0.5)
    np.testing.assert_array_equal(cmds, np.repeat(held[None], len(cmds), axis=0))
    np.testing.assert_allclose(b.position, held, atol=1e-12)
    assert d.state == DriverState.ESTOPPED


@pytest.mark.parametrize("phase", [p for p in PHASES if p != "after_failed_send"])
def test_fault_at_every_phase_freezes_the_command_even_after_the_backend_recovers(phase):
    d, b, t = PHASES[phase]()
    held = d.last_command.copy()
    b.fail_reason = "motor 4 reports overload"
    cmds_in_fault, t = commands(d, t, t + 0.3)
    assert d.state == DriverState.ERROR and "motor 4" in d.error
    b.fail_reason = None  # the alarm clears by itself: no reset yet
    cmds_after, t = commands(d, t, t + 1.0)
    every = np.vstack([cmds_in_fault, cmds_after])
    np.testing.assert_array_equal(every, np.repeat(held[None], len(every), axis=0))
    assert d.state == DriverState.ERROR


def test_run_out_target_never_survives_into_a_later_estop():
    d, b, t = phase_run_out_under_velocity_limit()
    # a late chunk is refused (all its steps past) while the arm still approaches the run-out
    # target; the e-stop that follows must not let that target through
    assert not d.on_chunk(chunk(np.zeros((3, 6)), stamp=t - 1.0, seq=3), t).success
    held = d.last_command.copy()
    d.on_estop(t)
    cmds, t = commands(d, t, t + 1.0)
    np.testing.assert_array_equal(cmds, np.repeat(held[None], len(cmds), axis=0))


def test_stop_then_estop_after_run_out_never_moves():
    d, b, t = phase_run_out_under_velocity_limit()
    d.stop()  # the operator stops while the arm still approaches the run-out target
    held = d.last_command.copy()
    cmds, t = commands(d, t, t + 0.5)
    np.testing.assert_array_equal(cmds, np.repeat(held[None], len(cmds), axis=0))
    d.on_estop(t)
    cmds, t = commands(d, t, t + 0.5)
    np.testing.assert_array_equal(cmds, np.repeat(held[None], len(cmds), axis=0))


def test_reset_reanchors_to_the_measured_position_not_the_pre_fault_command():
    d, b, t = phase_executing()
    b.fail_reason = "motor 3 overheat"
    t = run(d, t, t + 0.1)
    assert d.state == DriverState.ERROR
    sagged = b.position + np.array([0.0, -0.4, 0.3, 0.0, 0.0, 0.0])  # the arm sagged while the servos unloaded
    b.position = sagged.copy()
    b.fail_reason = None
    assert d.reset().success
    first = d.tick(t, t).command
    np.testing.assert_allclose(first, sagged, atol=1e-12)
    # and a new chunk arms from there, never stepping from the old command
    assert d.on_chunk(chunk(np.zeros((60, 6)), stamp=t, seq=7), t).success
    cmds, t = commands(d, t, t + 2.0)
    steps = np.abs(np.diff(np.vstack([first, cmds]), axis=0))
    assert steps.max() <= 3.0 * DT + 1e-9  # within the fastest joint's velocity limit


def test_estop_reset_reanchors_to_the_measured_position():
    d, b, t = phase_holding()
    d.on_estop(t)
    t = run(d, t, t + 0.2)
    pushed = b.position + 0.15  # pushed while e-stopped (below the re-anchor bound)
    b.position = pushed.copy()
    assert d.reset().success
    np.testing.assert_allclose(d.tick(t, t).command, pushed, atol=1e-12)


def test_clear_faults_never_clears_a_latched_estop_and_the_command_never_moves():
    """The simulator's episode reset clears faults between episodes; an e-stop it must leave to the
    operator: refused, still latched, chunks still refused, the held command unchanged."""
    d, b, t = phase_executing()
    d.on_estop(t)
    held, t = commands(d, t, t + 0.2)
    result = d.clear_faults()
    assert not result.success and "e-stop latched" in result.message
    assert d.estop_latched and d.state == DriverState.ESTOPPED
    assert not d.on_chunk(chunk(np.zeros((30, 6)), stamp=t, seq=5), t).success
    assert not d.start().success
    cmds, t = commands(d, t, t + 1.0)
    np.testing.assert_array_equal(cmds, np.repeat(held[-1:], len(cmds), axis=0))
    # only the operator's reset clears it
    assert d.reset().success and not d.estop_latched and d.state == DriverState.HOLDING


def test_clear_faults_on_an_estop_over_an_error_keeps_both_held():
    d, b, t = phase_executing()
    b.fail_reason = "motor 3 overheat"
    t = run(d, t, t + 0.1)
    d.on_estop(t)
    b.fail_reason = None
    held, t = commands(d, t, t + 0.2)
    assert not d.clear_faults().success
    assert d.estop_latched and d.error
    cmds, t = commands(d, t, t + 0.5)
    np.testing.assert_array_equal(cmds, np.repeat(held[-1:], len(cmds), axis=0))


def test_clear_faults_leaves_an_error_where_the_arm_really_is():
    d, b, t = phase_executing()
    b.fail_reason = "motor 3 overheat"
    t = run(d, t, t + 0.1)
    assert d.state == DriverState.ERROR
    sagged = b.position + np.array([0.0, -0.4, 0.3, 0.0, 0.0, 0.0])
    b.position = sagged.copy()
    b.fail_reason = None
    result = d.clear_faults()
    assert result.success and "clear_faults" in result.message and "e-stop" not in result.message
    assert d.state == DriverState.HOLDING and not d.error
    np.testing.assert_allclose(d.tick(t, t).command, sagged, atol=1e-12)


def test_clear_faults_after_a_teleported_home_holds_the_new_pose():
    """The sim's episode reset: the arm jumps home, the driver faults on the jump (or is holding),
    and clear_faults re-anchors where the arm now is, never pulling it back."""
    d, b, t = phase_holding()
    home = np.zeros(6)
    b.position = home.copy()
    t = run(d, t, t + 0.05)
    assert d.state == DriverState.ERROR and "tracking error" in d.error
    assert d.clear_faults().success
    cmds, t = commands(d, t, t + 0.3)
    # the arm joints hold home; the gripper (exempt from tracking) is where the arm has it now
    np.testing.assert_allclose(cmds[:, :5], np.zeros((len(cmds), 5)), atol=1e-12)
    np.testing.assert_allclose(cmds, np.repeat(b.position[None], len(cmds), axis=0), atol=1e-12)


def test_step_is_limited_relative_to_the_measured_position():
    d, _ = make_driver()
    s = d.safety
    measured = np.zeros(6)
    previous = np.full(6, 0.6)  # the last command drifted 0.6 rad from the arm
    r = s.filter(np.full(6, 0.61), previous, DT, measured)
    np.testing.assert_allclose(r.command[:5], 0.25)  # safety.max_relative_target_rad of so101
    assert r.command[5] == pytest.approx(0.61)  # the gripper is exempt
    assert "relative" in r.clamped and s.counters.clamps_relative == 1


def test_tracking_error_beyond_the_bound_faults_naming_the_joint():
    d, b, t = phase_holding()
    b.position[2] -= 0.5  # elbow_flex pushed away (a collision, a stalled servo)
    d.tick(t, t)
    assert d.state == DriverState.ERROR
    assert "tracking error on joint 'elbow_flex'" in d.error and "bound 0.35" in d.error
    assert d.counters.tracking_faults == 1
    # in error the driver holds where the arm is now: it never pulls the joint back
    cmds, t = commands(d, t + DT, t + 0.5)
    np.testing.assert_allclose(cmds[:, 2], b.position[2], atol=1e-12)


def test_gripper_blocked_by_an_object_is_not_a_tracking_fault():
    d, b, t = phase_holding()
    b.position[5] += 0.6  # the gripper closed on an object and stays open by 0.6
    run(d, t, t + 0.2)
    assert d.state == DriverState.HOLDING and d.counters.tracking_faults == 0


def test_late_tick_reader_is_not_taken_for_a_clock_jump():
    d, b = make_driver()
    t = run(d, 0.0, 0.5)
    # the chunk callback read the clock after the servo thread did, but took the lock first
    assert d.on_chunk(chunk(ramp_rows(np.zeros(6), np.full(6, 0.5), 60), stamp=t, seq=1), t).success
    d.tick(t - 0.004, t - 0.004)
    assert d.executor.running and "jumped" not in d.last_event
    assert d.counters.chunks_refused == 0
    # a real jump back (a replay that loops) still drops the chunks and holds
    d.tick(t - 3.0, t)
    assert "jumped backwards" in d.last_event and not d.executor.running


# -- bimanual: the peer's commanded positions must be fresh -----------------------------------
def bimanual_left(peer):
    emb = load_embodiment("yam_bimanual")
    arm = emb.arm("left")
    b = create_backend(arm, type_name="kinematic", initial_position=[0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.5])
    d = build_driver(emb, arm, b, {"mode": "actuate", "chunk_timeout_s": 5.0, "execute_steps": 0}, peer_vector=lambda names: peer["value"])
    d.configure()
    d.activate(0.0, 0.0)
    return emb, d, b


@pytest.mark.parametrize("peer_state", ["missing", "stale"])
def test_bimanual_arm_holds_when_the_peer_commands_are_missing_or_stale(peer_state):
    right_home = np.array([0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.5])
    peer = {"value": (None, float("inf")) if peer_state == "missing" else (right_home, 0.8)}
    emb, d, b = bimanual_left(peer)
    start = b.position.copy()
    rows = np.tile(np.r_[0.3, 0.8, 0.8, 0.0, 0.0, 0.0, 0.5], (60, 1))
    names = emb.arm("left").joints
    assert d.on_chunk(chunk(rows, names=names), 0.0).success
    t = run(d, 0.0, 1.0)
    np.testing.assert_allclose(b.position, start, atol=1e-12)
    assert d.counters.refusals_peer_stale > 0
    assert ("no commanded positions from arm 'right'" if peer_state == "missing" else "0.800 s old") in d.last_event
    # the peer comes back fresh: the arm moves
    peer["value"] = (right_home, 0.0)
    assert d.on_chunk(chunk(rows, stamp=t, names=names, seq=2), t).success
    run(d, t, t + 1.5)
    assert np.abs(b.position - start).max() > 0.1


def test_min_arm_distance_without_a_peer_topic_is_refused_at_configure():
    emb = load_embodiment("yam_bimanual")
    arm = emb.arm("left")
    b = create_backend(arm, type_name="kinematic")
    with pytest.raises(ValueError, match="min_arm_distance_m.*peer_commands_topic"):
        build_driver(emb, arm, b, {"mode": "actuate"})


# -- the envelope from the checkpoint's norm stats --------------------------------------------
def write_so101_stats(root, tag="so100_so101_molmoact2"):
    """norm_stats.json as MolmoAct2 checkpoints hold it: q01/q99 per norm tag, model units (degrees,
    old-calibration signs/offsets; gripper 0..100)."""
    import json

    root.mkdir(parents=True, exist_ok=True)
    stats = {"q01": [-30.0, 40.0, 60.0, -45.0, -90.0, 10.0], "q99": [30.0, 120.0, 150.0, 45.0, 90.0, 90.0]}
    (root / "norm_stats.json").write_text(json.dumps({"norm_mode": "q01_q99", "metadata_by_tag": {
        tag: {"action_stats": stats, "state_stats": stats, "action_horizon": 30}}}))
    return root


def test_envelope_from_the_checkpoint_norm_stats_is_in_wire_units():
    import math
    import tempfile
    from pathlib import Path

    from molmoact2_drivers.core.envelope import envelope_for_arm

    emb = load_embodiment("so101")
    with tempfile.TemporaryDirectory() as tmp:
        lo, hi = envelope_for_arm(write_so101_stats(Path(tmp)), emb, emb.arms[0])
    m = 0.05  # safety.envelope_margin, normalised units: 5 % of the half range per side
    deg = math.radians
    # shoulder_pan: plain degrees; shoulder_lift: model = -deg + 90 (sign flip swaps the bounds);
    # elbow_flex: model = deg + 90; gripper 0..100 -> 0..1
    np.testing.assert_allclose([lo[0], hi[0]], [deg(-30 - m * 30), deg(30 + m * 30)])
    np.testing.assert_allclose([lo[1], hi[1]], [deg(90 - (120 + m * 40)), deg(90 - (40 - m * 40))])
    np.testing.assert_allclose([lo[2], hi[2]], [deg(60 - m * 45 - 90), deg(150 + m * 45 - 90)])
    np.testing.assert_allclose([lo[5], hi[5]], [0.1 - m * 0.4, 0.9 + m * 0.4])


def test_driver_given_the_checkpoint_clamps_every_chunk_into_the_envelope_and_counts_it(tmp_path):
    d, b = make_driver(checkpoint=str(write_so101_stats(tmp_path / "ckpt")))
    rows = np.tile(np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.5]), (60, 1))  # shoulder_pan 57 deg: outside [-31.5, 31.5]
    assert d.on_chunk(chunk(rows), 0.0).success
    run(d, 0.0, 3.0)
    assert b.position[0] == pytest.approx(np.radians(31.5))
    assert d.counters.clamps_envelope == 1 and d.status()["clamps_envelope"] == 1


def test_lerobot_fine_tune_directory_finds_the_norm_stats_of_its_base_checkpoint(tmp_path):
    import json

    from molmoact2_drivers.core.envelope import norm_stats_file

    base = write_so101_stats(tmp_path / "hf")
    fine = tmp_path / "fine_tune" / "pretrained_model"
    fine.mkdir(parents=True)
    (fine / "config.json").write_text(json.dumps({"type": "molmoact2", "checkpoint_path": str(base)}))
    assert norm_stats_file(fine) == base / "norm_stats.json"


def test_portable_fine_tune_names_its_base_relative_to_itself_from_any_working_directory(tmp_path, monkeypatch):
    import json

    from molmoact2_drivers.core.envelope import norm_stats_file

    fine = tmp_path / "policy"
    base = write_so101_stats(fine / "base_model")
    (fine / "config.json").write_text(json.dumps({"type": "molmoact2", "checkpoint_path": "base_model"}))
    monkeypatch.chdir(tmp_path.parent)  # not the policy's directory
    assert norm_stats_file(fine).resolve() == (base / "norm_stats.json").resolve()


def test_envelope_refuses_a_checkpoint_without_the_embodiments_norm_tag(tmp_path):
    from molmoact2_drivers.core.envelope import EnvelopeError, envelope_for_arm

    emb = load_embodiment("so101")
    with pytest.raises(EnvelopeError, match="no norm tag 'so100_so101_molmoact2'.*tags: yam_dual_molmoact2"):
        envelope_for_arm(write_so101_stats(tmp_path, tag="yam_dual_molmoact2"), emb, emb.arms[0])


@pytest.mark.model
def test_envelope_reads_the_tiny_checkpoints_norm_stats_for_every_joint_embodiment(tiny_checkpoint_dir):
    from molmoact2_drivers.core.envelope import envelope_for_arm

    for name in ("so101", "yam_bimanual", "franka_droid"):
        emb = load_embodiment(name)
        for arm in emb.arms:
            lo, hi = envelope_for_arm(tiny_checkpoint_dir, emb, arm)
            assert lo.shape == (len(arm.joints),) and np.all(lo < hi)
