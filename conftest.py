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

import pytest  # noqa: E402

from support.domain import claim_ros_domain_id  # noqa: E402

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
