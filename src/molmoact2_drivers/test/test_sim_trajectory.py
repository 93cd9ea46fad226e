"""The simulated JointTrajectoryController (core.sim.trajectory) behaves as ros2_controllers' JTC:
validation, replacement on arrival, interpolation in time; and the bridge's streaming scheme (one
point a lookahead ahead every servo tick) gives continuous motion at the stream's velocity."""

from __future__ import annotations

import numpy as np
import pytest

from molmoact2_drivers.core.sim.trajectory import SimJointTrajectoryController, Trajectory, TrajectoryPoint

ARM = [f"fr3_joint{i}" for i in range(1, 8)]


def _one_point(q, t=0.03, names=ARM, vel=None, stamp=0.0):
    return Trajectory(list(names), [TrajectoryPoint(t, list(q), list(vel) if vel is not None else [])], stamp)


def test_sim_jtc_interpolates_from_the_current_state_to_a_point_time_from_start_ahead():
    jtc = SimJointTrajectoryController(ARM, np.zeros(7))
    assert jtc.receive(_one_point(np.full(7, 0.3), t=0.1), now=10.0) == ""
    np.testing.assert_allclose(jtc.sample(10.0)[0], 0.0)
    np.testing.assert_allclose(jtc.sample(10.05)[0], 0.15)  # linear: positions only
    np.testing.assert_allclose(jtc.sample(10.05)[1], 3.0)
    np.testing.assert_allclose(jtc.sample(10.1)[0], 0.3)
    np.testing.assert_allclose(jtc.sample(11.0)[0], 0.3)  # after the last point: held
    np.testing.assert_allclose(jtc.sample(11.0)[1], 0.0)


def test_sim_jtc_new_trajectory_replaces_the_running_one_from_where_the_joints_are():
    jtc = SimJointTrajectoryController(ARM, np.zeros(7))
    jtc.receive(_one_point(np.full(7, 1.0), t=1.0), now=0.0)
    jtc.receive(_one_point(np.full(7, -1.0), t=1.0), now=0.5)  # mid-way, at 0.5
    np.testing.assert_allclose(jtc.sample(0.5)[0], 0.5)  # no jump at the replacement
    np.testing.assert_allclose(jtc.sample(1.0)[0], -0.25)
    np.testing.assert_allclose(jtc.sample(1.5)[0], -1.0)


def test_sim_jtc_stamped_trajectory_starts_at_its_stamp():
    jtc = SimJointTrajectoryController(ARM, np.zeros(7))
    jtc.receive(_one_point(np.full(7, 1.0), t=1.0, stamp=2.0), now=1.0)
    np.testing.assert_allclose(jtc.sample(2.0)[0], 0.5)  # from the arrival state (t=1) to the point at t=3
    np.testing.assert_allclose(jtc.sample(3.0)[0], 1.0)


@pytest.mark.parametrize("traj,error", [
    (_one_point(np.zeros(8), names=ARM + ["gripper"]), "don't match the controller joints"),
    (_one_point(np.zeros(6), names=ARM[:6]), "don't match the controller joints"),
    (Trajectory(ARM, []), "Empty trajectory received"),
    (Trajectory(ARM, [TrajectoryPoint(0.2, [0.0] * 7), TrajectoryPoint(0.1, [0.0] * 7)]), "not strictly increasing"),
    (_one_point(np.zeros(7), vel=np.full(7, 0.1)), "Velocity of last trajectory point of joint fr3_joint1 is not zero"),
    (_one_point(np.zeros(7), stamp=1.0), "ends in the past"),
    (Trajectory(ARM, [TrajectoryPoint(0.1, [0.0] * 6)]), "positions (6)"),
])
def test_sim_jtc_rejects_what_jtc_rejects_and_keeps_the_running_trajectory(traj, error):
    jtc = SimJointTrajectoryController(ARM, np.zeros(7))
    jtc.receive(_one_point(np.full(7, 0.2), t=1.0), now=5.0)
    assert error in jtc.receive(traj, now=5.5)
    assert jtc.rejected == 1 and jtc.accepted == 1
    np.testing.assert_allclose(jtc.sample(6.0)[0], 0.2)


def test_sim_jtc_refuses_a_joint_it_does_not_have_even_with_partial_goals():
    # the old Franka config sent its gripper column on fr3_arm_controller: JTC refuses the whole message
    jtc = SimJointTrajectoryController(ARM, np.zeros(7), allow_partial_joints_goal=True)
    assert "Incoming joint gripper doesn't match" in jtc.receive(_one_point(np.zeros(8), names=ARM + ["gripper"]), now=0.0)


def test_sim_jtc_partial_goal_holds_the_omitted_joints():
    jtc = SimJointTrajectoryController(ARM + ["gripper"], np.full(8, 0.5), allow_partial_joints_goal=True)
    assert jtc.receive(_one_point(np.zeros(7), t=0.1), now=0.0) == ""
    q, _ = jtc.sample(1.0)
    np.testing.assert_allclose(q[:7], 0.0)
    assert q[7] == 0.5


def test_sim_jtc_points_with_velocities_are_cubic_and_continuous_in_velocity():
    jtc = SimJointTrajectoryController(["j"], np.zeros(1))
    traj = Trajectory(["j"], [TrajectoryPoint(0.5, [0.5], [1.0]), TrajectoryPoint(1.0, [1.0], [0.0])])
    assert jtc.receive(traj, now=0.0) == ""
    q, v = jtc.sample(0.5)
    np.testing.assert_allclose([q[0], v[0]], [0.5, 1.0])
    qa, va = jtc.sample(0.5 - 1e-6)
    qb, vb = jtc.sample(0.5 + 1e-6)
    assert abs(va[0] - vb[0]) < 1e-4  # no velocity step at the knot
    assert jtc.sample(1.0)[0][0] == pytest.approx(1.0)


def test_streaming_one_point_a_lookahead_ahead_moves_continuously_at_the_stream_velocity():
    # the bridge's scheme: every 10 ms servo tick a trajectory with the new target 30 ms ahead;
    # the controller samples at 1 kHz. The joint never stops between ticks and settles to the
    # target stream's velocity without exceeding it.
    period, lookahead, v = 0.01, 0.03, 0.5
    jtc = SimJointTrajectoryController(["j"], np.zeros(1))
    t, q_prev, vel = 0.0, 0.0, []
    for k in range(1, 201):  # 2 s
        jtc.receive(_one_point([v * k * period], t=lookahead, names=["j"]), now=t)
        for _ in range(10):  # 1 kHz
            t = round(t + 0.001, 9)
            q = jtc.sample(t)[0][0]
            vel.append((q - q_prev) / 0.001)
            q_prev = q
    vel = np.asarray(vel)
    assert vel.min() > 0.0, "the joint stopped between servo ticks"
    assert vel.max() <= v * (1 + 1e-6)
    np.testing.assert_allclose(vel[-500:], v, rtol=1e-3)  # settled onto the stream's velocity
    # ...and, a step change to hold: it stops at the last target, no overshoot
    hold = v * 200 * period
    for _ in range(10):
        jtc.receive(_one_point([hold], t=lookahead, names=["j"]), now=t)
        t = round(t + period, 9)
    assert jtc.sample(t + 1.0)[0][0] == pytest.approx(hold)
