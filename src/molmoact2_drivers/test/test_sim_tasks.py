"""Simulated tasks (core.sim.tasks) and the scripted expert (core.expert), without ROS: the success
detector counts a scripted success and not a miss, and a seed fixes the scene."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")

from molmoact2_common.embodiment import load_embodiment  # noqa: E402
from molmoact2_drivers.core.expert import ScriptedExpert, servo_chunk  # noqa: E402
from molmoact2_drivers.core.sim.models import SimModelError  # noqa: E402
from molmoact2_drivers.core.sim.multi_arm import MultiArmSim  # noqa: E402
from molmoact2_drivers.core.sim.tasks import make_task  # noqa: E402


def _setup(emb_name: str, task_name: str):
    emb = load_embodiment(emb_name)
    task = make_task(task_name, emb_name)
    sim = MultiArmSim(emb, markers=task.markers(emb))
    task.check(sim)
    return emb, sim, task


def _run_plan(sim, task, plan, extra_s: float = 1.0):
    status = task.evaluate(sim)
    while sim.time < plan.end + extra_s:
        q = plan.sample(sim.time)
        for a in sim.arms:
            sim.set_target(a.name, q[sim.slices[a.name]])
        sim.step(5)
        status = task.evaluate(sim)
        if status.success:
            break
    return status


def test_touch_cube_success_counts_a_scripted_success_and_not_a_miss():
    emb, sim, task = _setup("so101", "touch_cube")
    expert = ScriptedExpert(emb)
    task.reset(sim, 3)
    assert not task.evaluate(sim).success
    plan = expert.plan_reach(sim.read()[0], sim.time, task.goals)
    hit = _run_plan(sim, task, plan)
    assert hit.success and hit.touching
    assert hit.success_time is not None and hit.success_time > 0
    # the same seed again, the expert aims 10 cm to the side of the cube: a miss
    task.reset(sim, 3)
    assert not task.evaluate(sim).success  # a reset clears the latched success
    block = np.asarray(task.goals["arm"])
    miss_goal = block + np.array([0.0, 0.10 if block[1] < 0 else -0.10, 0.0])
    plan = expert.plan_reach(sim.read()[0], sim.time, {"arm": miss_goal})
    miss = _run_plan(sim, task, plan)
    assert not miss.success and not miss.contact
    assert miss.distances["arm"] > 0.08
    np.testing.assert_allclose(miss.tips["arm"], miss_goal, atol=0.02)  # it did reach where it aimed


def test_expert_detour_is_seeded_inside_the_limits_and_the_plan_still_touches_the_cube():
    emb, sim, task = _setup("so101", "touch_cube")
    expert = ScriptedExpert(emb)
    task.reset(sim, 5)
    q0 = sim.read()[0]
    via = expert.detour(q0, 0.35, seed=5)
    np.testing.assert_array_equal(via, expert.detour(q0, 0.35, seed=5))  # the scene seed decides it
    assert not np.allclose(via, expert.detour(q0, 0.35, seed=6))
    col = expert.columns["arm"]
    lo, hi = expert.limits["arm"]
    moved = np.abs(via[col] - q0[col])
    assert np.all(moved <= 0.35 + 1e-12) and moved.max() > 0.05
    assert np.all(via[col] >= lo) and np.all(via[col] <= hi)
    grip = expert.gripper_column["arm"]
    assert via[grip] == q0[grip]
    plan = expert.plan_reach(q0, sim.time, task.goals, via=via)
    np.testing.assert_allclose(plan.q[1], via)  # the first waypoint is the via pose
    np.testing.assert_allclose(expert.tool_points(plan.q[-1])["arm"], task.goals["arm"], atol=0.01)  # onto the cube
    hit = _run_plan(sim, task, plan)
    assert hit.success and hit.touching


def test_servo_chunk_continues_itself_from_any_of_its_rows_and_closes_on_the_goal_at_the_top_speed():
    q_from, q_goal = np.array([0.0, 0.2, -0.1, 0.0]), np.array([0.9, -0.3, 0.4, 0.05])
    dt, speed, tau = 1 / 30, 0.8, 0.25
    table = servo_chunk(q_from, q_goal, 60, dt, speed, tau)
    np.testing.assert_array_equal(table[0], q_from)
    # a function of where the arm is: re-planned from row k it is the rest of the same chunk
    for k in (1, 7, 25, 40):
        np.testing.assert_allclose(servo_chunk(table[k], q_goal, 60 - k, dt, speed, tau), table[k:], atol=1e-9)
    step = np.abs(np.diff(table, axis=0)).max(axis=1) / dt
    assert step.max() <= speed + 1e-9 and step[0] == pytest.approx(speed)  # the joint with most to go at the top speed
    # straight in joint space, monotone, no overshoot, and all but closed after 60 steps
    frac = (table - q_from) / (q_goal - q_from)
    np.testing.assert_allclose(frac, frac[:, :1].repeat(4, axis=1), atol=1e-12)
    assert np.all(np.diff(frac[:, 0]) > 0) and frac[-1, 0] < 1.0
    assert np.abs(table[-1] - q_goal).max() < 0.01
    np.testing.assert_array_equal(servo_chunk(q_goal, q_goal, 5, dt, speed, tau), np.tile(q_goal, (5, 1)))


def test_servo_expert_from_jittered_starts_reaches_the_same_pose_and_touches_the_cube():
    emb = load_embodiment("so101")
    task = make_task("touch_cube", "so101", start_jitter_rad=0.3)
    sim = MultiArmSim(emb, markers=task.markers(emb))
    task.check(sim)
    expert = ScriptedExpert(emb)
    col = expert.columns["arm"]
    starts, poses = [], []
    for _ in range(2):
        task.reset(sim, 4)
        q0 = sim.read()[0]
        starts.append(q0)
        goal = expert.reach_pose(q0, task.goals)
        poses.append(goal)
        dt, t_end, command = 1 / 30, sim.time + 4.0, q0.copy()
        status = task.evaluate(sim)
        while sim.time < t_end and not status.success:  # re-planned every tick, from its own command
            command = servo_chunk(command, goal, 2, dt, 0.8, 0.25)[1]
            sim.set_target("arm", command)
            t_next = sim.time + dt
            while sim.time < t_next - 1e-9:
                sim.step(1)
            status = task.evaluate(sim)
        assert status.success and status.touching
    np.testing.assert_array_equal(starts[0], starts[1])  # the seed decides the start pose
    np.testing.assert_allclose(poses[0], poses[1])
    task.reset(sim, 9)
    # from another start the same goal gives the same pose (IK from a fixed seed, not from the arm)
    goal_9 = {"arm": np.asarray(task.goals["arm"])}
    np.testing.assert_allclose(expert.reach_pose(sim.read()[0], goal_9)[col], expert.reach_pose(starts[0], goal_9)[col], atol=1e-9)
    assert not np.allclose(sim.read()[0][col], starts[0][col])


def test_start_jitter_is_seeded_inside_its_bound_and_leaves_the_scene_as_the_seed_places_it():
    emb = load_embodiment("so101")
    plain, jittered = make_task("touch_cube", "so101"), make_task("touch_cube", "so101", start_jitter_rad=0.3)
    sim_a, sim_b = MultiArmSim(emb), MultiArmSim(emb)
    plain.check(sim_a)
    jittered.check(sim_b)
    home = sim_a.read()[0].copy()
    arm_cols = [i for i, j in enumerate(emb.arm("arm").joints) if j != emb.arm("arm").gripper]
    offsets = []
    for seed in (2, 3, 2):
        plain.reset(sim_a, seed)
        jittered.reset(sim_b, seed)
        np.testing.assert_allclose(sim_a.read()[0], home)  # no jitter: home
        np.testing.assert_allclose(jittered.objects["block"], plain.objects["block"])  # the same scene
        q = sim_b.read()[0]
        offsets.append(q - home)
        np.testing.assert_allclose(sim_b.sims[0].target, q, atol=1e-9)  # targeting where it is: at rest there
    assert np.all(np.abs(offsets[0][arm_cols]) <= 0.3 + 1e-9) and np.abs(offsets[0][arm_cols]).max() > 0.05
    np.testing.assert_allclose(offsets[0], offsets[2])
    assert not np.allclose(offsets[0], offsets[1])
    gripper = emb.arm("arm").joints.index(emb.arm("arm").gripper)
    assert offsets[0][gripper] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="start_jitter_rad"):
        make_task("touch_cube", "so101", start_jitter_rad=-0.1)


def test_task_randomisation_is_deterministic_for_a_seed():
    _, sim, task = _setup("so101", "touch_cube")
    _, sim2, task2 = _setup("so101", "touch_cube")
    placed = {}
    for seed in (0, 1, 2, 0):
        task.reset(sim, seed)
        placed.setdefault(seed, []).append(task.evaluate(sim).objects["block"])
    task2.reset(sim2, 1)
    placed[1].append(task2.evaluate(sim2).objects["block"])
    np.testing.assert_allclose(placed[0][0], placed[0][1])
    np.testing.assert_allclose(placed[1][0], placed[1][1])
    assert np.linalg.norm(np.subtract(placed[0][0][:2], placed[1][0][:2])) > 1e-3
    assert np.linalg.norm(np.subtract(placed[1][0][:2], placed[2][0][:2])) > 1e-3
    for p in (placed[0][0], placed[1][0], placed[2][0]):
        assert 0.20 <= p[0] <= 0.30 and -0.10 <= p[1] <= 0.10
    # the episode counter advances on every reset
    assert task.episode == 3


def test_yam_reach_targets_success_detector():
    emb, sim, task = _setup("yam_bimanual", "reach_targets")
    expert = ScriptedExpert(emb)
    task.reset(sim, 5)
    goals = {k: np.asarray(v) for k, v in task.goals.items()}
    # the markers are where the targets are, in the rendered scene
    for arm, g in goals.items():
        np.testing.assert_allclose(sim.scene_data.mocap_pos[sim.markers[f"{arm}_target"]], g)
    # only the left arm reaches: no success
    plan = expert.plan_reach(sim.read()[0], sim.time, {"left": goals["left"]}, approach=False)
    one = _run_plan(sim, task, plan)
    assert not one.success and one.distances["left"] < task.radius_m < one.distances["right"]
    # both reach: success
    plan = expert.plan_reach(sim.read()[0], sim.time, goals, approach=False)
    both = _run_plan(sim, task, plan)
    assert both.success
    assert max(both.distances.values()) <= task.radius_m


def test_a_task_on_the_wrong_embodiment_is_refused_naming_both():
    with pytest.raises(SimModelError, match="touch_cube.*so101.*yam_bimanual"):
        make_task("touch_cube", "yam_bimanual")
    with pytest.raises(SimModelError, match="unknown task 'fly'"):
        make_task("fly", "so101")
