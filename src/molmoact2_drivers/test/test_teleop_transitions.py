"""Teleoperation as a driver input, ROS-free, on the kinematic backend: the driver's guarantees at
every teleop transition (arming onto the leader, e-stop, a silent leader, the leader back) and
the same safety filter as for chunks."""

from __future__ import annotations

import numpy as np

from molmoact2_common.embodiment import load_embodiment
from molmoact2_drivers.core.backends import create_backend
from molmoact2_drivers.core.driver_core import ChunkInput, DriverState
from molmoact2_drivers.core.factory import build_driver

SO101 = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
DT = 0.01
VMAX = np.array([2.0, 2.0, 2.0, 2.5, 3.0, 2.0])


def make_driver(**params):
    emb = load_embodiment("so101")
    arm = emb.arms[0]
    backend = create_backend(arm, type_name="kinematic")
    d = build_driver(emb, arm, backend, {"input": "teleop", "teleop_timeout_s": 0.2, **params})
    d.configure()
    d.activate(0.0, 0.0)
    return d, backend


def follow(d, t0, t1, leader):
    """Tick at the servo rate from t0 to t1, the leader sending ``leader(t)`` before every tick
    (None: silent). Returns the commands and the end time."""
    out, t = [], t0
    while t < t1 - 1e-9:
        q = leader(t)
        if q is not None:
            d.on_teleop_target(SO101, q, t, t)
        out.append(d.tick(t, t).command)
        t += DT
    return np.array(out), t


def steps_ok(cmds, start):
    steps = np.abs(np.diff(np.vstack([start, cmds]), axis=0))
    return np.all(steps <= VMAX * DT + 1e-9)


def test_teleop_arms_onto_the_leader_pose_without_a_jump():
    d, b = make_driver()
    leader = np.array([0.8, -0.6, 0.7, 0.5, -0.4, 0.9])
    cmds, t = follow(d, 0.0, 0.05, lambda t: leader)
    assert d.state == DriverState.ARMING, d.last_event
    assert np.all(np.abs(cmds[0]) < 0.05), "the first command is next to where the arm was, not the leader's pose"
    cmds2, t = follow(d, t, 3.0, lambda t: leader)
    assert steps_ok(np.vstack([cmds, cmds2]), np.zeros(6))
    assert d.state == DriverState.EXECUTING
    assert np.allclose(cmds2[-1], leader, atol=1e-6)
    assert np.allclose(b.position, leader, atol=1e-6)


def test_teleop_follows_a_moving_leader_within_velocity_and_position_limits():
    d, b = make_driver()
    follow(d, 0.0, 1.0, lambda t: np.zeros(6))
    # a leader far outside the follower's limits, moving fast: clamped, never a step beyond v_max
    cmds, t = follow(d, 1.0, 3.0, lambda t: np.array([3.0, -3.0, 3.0, 3.0, -3.5, 1.5]) * min(1.0, (t - 1.0) * 5))
    assert steps_ok(cmds, np.zeros(6))
    assert cmds[-1][0] <= 1.919 + 1e-9 and cmds[-1][1] >= -1.745 - 1e-9 and cmds[-1][5] <= 1.0
    assert d.counters.clamps_position > 0 and d.counters.clamps_velocity > 0


def test_teleop_estop_freezes_the_command_while_the_leader_keeps_moving():
    d, b = make_driver()
    cmds, t = follow(d, 0.0, 1.0, lambda t: np.full(6, 0.3) * t)
    assert d.state == DriverState.EXECUTING
    at_estop = cmds[-1].copy()
    d.on_estop(t)
    held, t = follow(d, t, t + 1.0, lambda t: np.full(6, 0.3) * t)
    assert d.state == DriverState.ESTOPPED
    assert np.all(held == at_estop), "after the e-stop the command never moves"
    assert not d.on_teleop_target(SO101, np.zeros(6), t, t).success
    # reset re-anchors; the next target arms from where the arm is, no jump
    assert d.reset().success
    after, t = follow(d, t, t + 0.05, lambda t: np.full(6, -0.5))
    assert d.state == DriverState.ARMING
    assert steps_ok(after, at_estop)


def test_teleop_silent_leader_holds_and_says_why():
    d, b = make_driver()
    cmds, t = follow(d, 0.0, 1.0, lambda t: np.full(6, 0.2) * t)
    assert d.state == DriverState.EXECUTING
    last = cmds[-1].copy()
    held, t = follow(d, t, t + 1.0, lambda t: None)
    assert d.state == DriverState.HOLDING
    assert "no leader target" in d.last_event and "teleop watchdog" in d.last_event
    assert d.counters.watchdog_holds == 1
    # before the watchdog fires the last target (already reached) is held; after it, the last command
    assert np.allclose(held, held[-1]) and np.allclose(held[-1], last, atol=1e-9)


def test_teleop_leader_back_rearms_without_a_jump():
    d, b = make_driver()
    follow(d, 0.0, 1.0, lambda t: np.zeros(6))
    _, t = follow(d, 1.0, 2.0, lambda t: None)
    assert d.state == DriverState.HOLDING
    far = np.array([1.0, -1.0, 1.0, 1.0, -1.0, 1.0])  # the leader was moved while it was silent
    cmds, t = follow(d, t, t + 0.05, lambda t: far)
    assert d.state == DriverState.ARMING and "arming onto the leader" in " ".join(d.events)
    rest, t = follow(d, t, t + 3.0, lambda t: far)
    assert steps_ok(np.vstack([cmds, rest]), np.zeros(6))
    assert d.state == DriverState.EXECUTING and np.allclose(rest[-1], far, atol=1e-6)


def test_teleop_driver_refuses_chunks_and_policy_driver_refuses_teleop_targets():
    d, _ = make_driver()
    r = d.on_chunk(ChunkInput(SO101, 0.0, 1 / 30, 2, np.zeros(12), 1), 0.0)
    assert not r.success and "teleop" in r.message
    p, _ = make_driver(input="policy")
    r = p.on_teleop_target(SO101, np.full(6, 0.3), 0.0, 0.0)
    assert not r.success and "input is policy" in r.message
    assert p.state == DriverState.HOLDING


def test_teleop_target_with_nan_or_missing_joint_is_refused_and_the_arm_holds():
    d, _ = make_driver()
    cmds, t = follow(d, 0.0, 1.0, lambda t: np.full(6, 0.1))
    bad = np.full(6, 0.5)
    bad[2] = np.nan
    r = d.on_teleop_target(SO101, bad, t, t)
    assert not r.success and "elbow_flex" in r.message
    r = d.on_teleop_target(SO101[:5], np.zeros(5), t, t)
    assert not r.success and "gripper" in r.message
    held, t = follow(d, t, t + 0.5, lambda t: None)
    assert np.allclose(held, cmds[-1]), "refused targets never move the arm"


def test_teleop_waits_for_the_operator_start_on_a_real_arm():
    d, _ = make_driver(require_start="always")
    r = d.on_teleop_target(SO101, np.full(6, 0.3), 0.0, 0.0)
    assert not r.success and "start" in r.message and d.state == DriverState.HOLDING
    assert d.start().success
    assert d.on_teleop_target(SO101, np.full(6, 0.3), 0.01, 0.01).success and d.state == DriverState.ARMING
