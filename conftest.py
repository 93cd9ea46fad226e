"""Test-session set-up shared by every package's tests.

Each pytest run takes a ROS_DOMAIN_ID of its own before anything initialises rclpy: with
LOCALHOST discovery alone, parallel runs on one machine still cross-talk.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "tests"))
# MuJoCo picks its OpenGL platform when it is first imported (by whichever test module comes first):
# headless offscreen rendering (EGL), as the sim node uses, for tests that render in-process.
os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

from molmoact2_common.domain import claim_ros_domain_id  # noqa: E402

_DOMAIN_LOCK = None


def pytest_configure(config):
    global _DOMAIN_LOCK
    if "ROS_DOMAIN_ID" not in os.environ or os.environ.get("MOLMOACT2_TEST_REUSE_DOMAIN") != "1":
        domain_id, _DOMAIN_LOCK = claim_ros_domain_id()
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ.setdefault("MOLMOACT2_ROS_ROOT", str(ROOT))
    # Nothing in the tests may reach a hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def pytest_report_header(config):
    return f"ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID')} ROS_DISTRO={os.environ.get('ROS_DISTRO', '?')}"


@pytest.fixture
def ros():
    """A fresh rclpy context for one test, torn down afterwards."""
    from support.ros_harness import RosTestContext

    ctx = RosTestContext()
    try:
        yield ctx
    finally:
        ctx.close()


# --- tiny offline MolmoAct2 checkpoints (VLA inference) -----------------------------------------
# Built once per builder version into build/test-checkpoints/<fingerprint>/ and reused; the build
# takes a few seconds and needs no network. Tests that use them need the model stack (mark `model`).


def _tiny_checkpoint_root() -> Path:
    return Path(os.environ.get("MOLMOACT2_TEST_CHECKPOINTS", ROOT / "build" / "test-checkpoints"))


@pytest.fixture(scope="session")
def tiny_checkpoint_dir() -> Path:
    """A tiny random-weight MolmoAct2 checkpoint in the released HF layout (continuous + discrete)."""
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    from molmoact2_policy.core.tiny_checkpoint import cached_tiny_checkpoint

    return cached_tiny_checkpoint(_tiny_checkpoint_root(), think=False)


@pytest.fixture(scope="session")
def tiny_think_checkpoint_dir() -> Path:
    """The MolmoAct2-Think variant of the tiny checkpoint (depth reasoning, 10x10 codes)."""
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    from molmoact2_policy.core.tiny_checkpoint import cached_tiny_checkpoint

    return cached_tiny_checkpoint(_tiny_checkpoint_root(), think=True)
