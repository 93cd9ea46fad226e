"""The simulator's steps per tick (core.sim.pacing): the wall clock's lead, never past a due frame,
and never stuck short of one."""

from __future__ import annotations

from molmoact2_drivers.core.sim.pacing import physics_steps

DT = 0.002


def test_steps_follow_the_wall_clocks_lead_without_a_camera():
    assert physics_steps(0.0105, DT, 1.0) == 5
    assert physics_steps(0.0015, DT, 1.0) == 0  # less than a step behind: wait


def test_steps_stop_at_the_next_camera_frame():
    assert physics_steps(0.1, DT, 1.0, next_frame=1.0 + 1 / 30) == 17  # the frame's step, not past it
    assert physics_steps(0.004, DT, 1.0, next_frame=1.0 + 1 / 30) == 2  # the lead is shorter


def test_a_frame_due_within_a_sliver_of_a_step_still_gets_its_step_so_the_sim_never_stalls():
    # simulated time summed in floating point can end 1e-9 s short of a frame's time; rounding that
    # down to zero steps stopped the sim for good in a 40-episode demonstration run (no /clock)
    assert physics_steps(0.1, DT, 1.0, next_frame=1.0 + 1.5e-9) == 1
    assert physics_steps(0.0015, DT, 1.0, next_frame=1.0 + 1.5e-9) == 0  # still waits for the wall clock
