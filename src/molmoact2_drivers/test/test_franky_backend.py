"""The Franka (franky-control) backend is optional: machines without it still run everything else."""

from __future__ import annotations

import importlib.util

import pytest

from molmoact2_common.embodiment import load_embodiment
from molmoact2_drivers.core.backend import BackendError
from molmoact2_drivers.core.backends import create_backend
from molmoact2_drivers.core.backends.franky import FrankyBackend

HAS_FRANKY = importlib.util.find_spec("franky") is not None


@pytest.mark.skipif(HAS_FRANKY, reason="franky-control is installed here")
def test_missing_franky_control_gives_a_clear_error_not_an_import_crash():
    arm = load_embodiment("franka_droid").arms[0]
    with pytest.raises(BackendError, match=r"franky-control \(pip install franky-control==2.0.0\).*optional"):
        create_backend(arm, {"host": "172.16.0.2"}, type_name="franky")


def test_franky_backend_refuses_an_arm_that_is_not_a_7_joint_fr3():
    with pytest.raises(BackendError, match="FR3 has 7 joints"):
        FrankyBackend("arm", ["a", "b", "gripper"], host="172.16.0.2", gripper="gripper")


def test_franky_backend_is_not_connected_until_connect():
    joints = [f"fr3_joint{i}" for i in range(1, 8)] + ["gripper"]
    b = FrankyBackend("arm", joints, host="172.16.0.2", gripper="gripper")
    assert not b.health().ok
    with pytest.raises(BackendError, match="not connected"):
        b.read_state()
    b.close()  # idempotent, never raises
