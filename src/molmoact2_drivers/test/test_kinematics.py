"""Forward kinematics derived from the packages' MuJoCo models, and the workspace checks built on it."""

from __future__ import annotations

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

from molmoact2_common.embodiment import load_embodiment  # noqa: E402
from molmoact2_drivers.core.kinematics import chain_for_arm, chain_for_spec  # noqa: E402
from molmoact2_drivers.core.sim.models import MODELS  # noqa: E402


@pytest.mark.parametrize("name", sorted(MODELS))
def test_numpy_forward_kinematics_matches_mujoco_for_random_poses(name):
    spec = MODELS[name]
    chain = chain_for_spec(spec)
    model = mujoco.MjModel.from_xml_path(str(spec.path("xml")))
    data = mujoco.MjData(model)
    jids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in spec.arm_joints]
    rng = np.random.default_rng(1)
    for _ in range(25):
        q = np.array([rng.uniform(*model.jnt_range[j]) for j in jids])
        data.qpos[:] = 0
        for j, v in zip(jids, q):
            data.qpos[model.jnt_qposadr[j]] = v
        mujoco.mj_kinematics(model, data)
        if spec.tip_site:
            ref = data.site_xpos[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, spec.tip_site)]
        else:
            ref = data.xpos[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, spec.tip_body)]
        np.testing.assert_allclose(chain.tool(q), ref, atol=1e-9)
        # every body on the chain too
        for (p, _), link in zip(chain.frames(q)[:-1], chain.links):
            np.testing.assert_allclose(p, data.xpos[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, link.name)], atol=1e-9)


def test_bimanual_chains_are_placed_at_their_base_poses_and_skip_the_gripper_column():
    emb = load_embodiment("yam_bimanual")
    left, right = (chain_for_arm(emb, a) for a in emb.arms)
    q = np.zeros(7)
    q[6] = 0.7  # the gripper opening does not move the kinematic chain
    dl, dr = left.points(q), right.points(q)
    np.testing.assert_allclose(dl[:, 1] - dr[:, 1], 0.61, atol=1e-9)
    q2 = q.copy()
    q2[6] = 0.0
    np.testing.assert_allclose(left.points(q2), dl)


def test_workspace_refuses_a_command_below_the_table_and_holds():
    from molmoact2_drivers.core.backends import create_backend
    from molmoact2_drivers.core.factory import build_driver

    emb = load_embodiment("yam_bimanual")
    arm = emb.arm("left")
    backend = create_backend(arm, type_name="kinematic", initial_position=[0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.5])
    # the right arm, fresh, at rest at its own home: far away
    right_home = (np.array([0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.5]), 0.0)
    driver = build_driver(emb, arm, backend, {"mode": "actuate"}, peer_vector=lambda names: right_home)
    driver.configure()
    driver.activate(0.0, 0.0)
    chain = chain_for_arm(emb, arm)
    assert chain.points(backend.position)[:, 2].min() >= 0
    # find a pose that puts part of the arm under the table
    rng = np.random.default_rng(0)
    found = None
    for _ in range(5000):
        q = np.array([*rng.uniform([-2.6, 0.0, 0.0, -1.6, -1.5, -2.0], [3.1, 3.6, 3.1, 1.5, 1.5, 2.0]), 0.5])
        if chain.points(q)[:, 2].min() < -0.05:
            found = q
            break
    assert found is not None
    res = driver.safety.filter(found, backend.position.copy(), dt=10.0)  # no velocity clamp in the way
    assert res.refused and "below the table" in res.refused
    np.testing.assert_array_equal(res.command, backend.position)
    assert driver.counters.refusals_workspace == 1


def test_minimum_distance_between_the_arms_refuses_a_command_that_brings_them_together():
    from molmoact2_drivers.core.backends import create_backend
    from molmoact2_drivers.core.factory import build_driver

    emb = load_embodiment("yam_bimanual")
    arm = emb.arm("left")
    peer = {"q": None}
    backend = create_backend(arm, type_name="kinematic", initial_position=[0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.5])
    driver = build_driver(emb, arm, backend, {"mode": "actuate"},
                          peer_vector=lambda names: (peer["q"], 0.0 if peer["q"] is not None else float("inf")))
    left = chain_for_arm(emb, arm)
    right = chain_for_arm(emb, emb.arm("right"))
    start = backend.position.copy()
    # the right arm reaches towards the left one; search the left arm's poses that meet it
    rq = np.array([1.5, 1.5, 1.2, 0.0, 0.0, 0.0, 0.5])
    peer["q"] = rq
    rng = np.random.default_rng(0)
    closest = None
    for _ in range(5000):
        q = np.array([*rng.uniform([-2.6, 0.0, 0.0, -1.6, -1.5, -2.0], [3.1, 3.6, 3.1, 1.5, 1.5, 2.0]), 0.5])
        d = np.linalg.norm(left.points(q)[:, None] - right.points(rq)[None], axis=2).min()
        if left.points(q)[:, 2].min() >= 0 and (closest is None or d < closest[0]):
            closest = (d, q)
    assert closest[0] < 0.05, "test set-up: some pose must bring the arms within 5 cm"
    res = driver.safety.filter(closest[1], start, dt=10.0)
    assert "apart" in res.refused
    assert driver.counters.refusals_workspace == 1
    far = np.array([*start[:6] + 0.1, 0.5])
    assert not driver.safety.filter(far, start, dt=10.0).refused
