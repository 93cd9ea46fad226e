"""How far the simulator advances on one timer tick (no ROS): as many physics steps as the wall
clock's lead allows, never past a camera frame that is due (it renders at its simulated time)."""

from __future__ import annotations

import math


def physics_steps(lag_s: float, dt: float, sim_time: float, next_frame: float | None = None) -> int:
    """Steps of ``dt`` to take now, ``lag_s`` behind the wall clock. A frame due within a sliver of
    a step (simulated time accumulated in floating point lands 1e-9 s short of it) still gets its
    one step: rounding that sliver down to no step stopped the simulation for good, the frame never
    rendered and the clock never moved."""
    n = int(lag_s / dt)
    if next_frame is not None and next_frame > sim_time:
        n = min(n, max(1, math.ceil((next_frame - sim_time) / dt - 1e-6)))
    return n
