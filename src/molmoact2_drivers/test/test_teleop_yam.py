"""YAM teleoperation on the wire: a leader YAM in i2rt's gravity-compensation idle on one emulated
Damiao bus, the follower YAM's driver (input teleop) on another, both unmodified i2rt over
python-can's virtual bus (the one transport substitution, ``emulators.can_transport``).

The leader here has no end effector (``no_gripper``): the emulator has no teaching-handle encoder
(i2rt's passive encoder board at 0x50E), so the teaching-handle path is not exercised here.
ROS-free: the cores are driven the way the nodes drive them (leader poll -> on_teleop_target,
the servo tick), so python-can's in-process virtual bus can carry both arms.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("i2rt")

from emulators.can_transport import virtual_socketcan  # noqa: E402
from emulators.damiao_can import YAM_MOTORS, DamiaoBusEmulator  # noqa: E402
from molmoact2_common.embodiment import load_embodiment  # noqa: E402
from molmoact2_drivers.core.backends import create_backend  # noqa: E402
from molmoact2_drivers.core.driver_core import DriverState  # noqa: E402
from molmoact2_drivers.core.factory import build_driver  # noqa: E402
from molmoact2_drivers.core.leader import LeaderCore, YamLeader  # noqa: E402

GRIPPER_LIMITS = [0.0, 6.5]


class Rig:
    """The leader's poll and the follower's servo tick at 100 Hz on one thread, as the nodes run them."""

    def __init__(self, leader: LeaderCore, driver) -> None:
        self.leader, self.driver = leader, driver
        self.leader_events: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            sample = self.leader.poll()
            self.leader_events += sample.events
            if sample.positions is not None:
                self.driver.on_teleop_target(self.leader.source.joint_names, sample.positions, t, t)
            self.driver.tick(t, t)
            time.sleep(max(0.0, 0.01 - (time.monotonic() - t)))


def wait_until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


@pytest.fixture
def rig():
    emb = load_embodiment("yam_bimanual")
    arm = emb.arm("left")
    with virtual_socketcan(), DamiaoBusEmulator("can_leader_left", motors=YAM_MOTORS[:6], gripper_id=None) as lemu, \
            DamiaoBusEmulator("can_left") as femu:
        leader = LeaderCore(YamLeader("leader_left", list(arm.joints), channel="can_leader_left", gripper_type="no_gripper",
                                      fixed_gripper=0.5))
        # two emulated buses, two i2rt control threads and the driver loop share one process on the
        # test machine's cores: the feedback watchdog gets 190 ms as in test_yam_node.py (under half
        # the emulated motors' 400 ms command timeout); 100 ms tripped on a 289 ms GIL stall in CI.
        # The watchdog itself is tested in test_yam_backend.py.
        backend = create_backend(arm, {"gripper_limits": GRIPPER_LIMITS, "feedback_timeout_s": 0.19})
        driver = build_driver(emb, arm, backend, {"input": "teleop", "mode": "actuate", "require_start": "never",
                                                  "min_arm_distance_check": False, "teleop_timeout_s": 0.2})
        leader.start()
        driver.configure()
        driver.activate(time.monotonic(), time.monotonic())
        r = Rig(leader, driver)
        r.thread.start()
        try:
            yield lemu, femu, r, arm
        finally:
            r.stop.set()
            r.thread.join(5)
            driver.shutdown()
            leader.close()


def test_yam_leader_in_gravity_compensation_moves_the_follower_within_its_limits(rig):
    lemu, femu, r, arm = rig
    assert wait_until(lambda: r.driver.state == DriverState.EXECUTING), r.driver.last_event
    assert all(lemu.motor(i).enabled for i in range(1, 7))
    # the leader floats: i2rt's idle commands no position gain (kp = 0)
    t = time.monotonic()
    assert wait_until(lambda: len(lemu.mit_commands_since(t, 1)) > 5)
    assert all(cmd[2] == pytest.approx(0.0, abs=1e-6) for _, cmd in lemu.mit_commands_since(t, 1))
    t0 = time.monotonic()
    with lemu.lock:
        lemu.motors[2].q = 0.6  # the operator moves the leader's shoulder
        lemu.motors[1].q = 3.3  # and its base beyond the follower's joint limit (3.142; i2rt allows the leader 3.39)
    lo, hi = arm.position_limits[arm.joints[0]]
    assert wait_until(lambda: abs(femu.motor(2).q - 0.6) < 0.03, 15), r.driver.last_event
    assert wait_until(lambda: abs(femu.motor(1).q - hi) < 0.03, 15), r.driver.last_event
    goals = np.array([cmd[0] for _, cmd in femu.mit_commands_since(t0, 1)])
    assert goals.max() <= hi + 1e-3, "the follower's goals stay inside its joint limit"
    assert r.driver.counters.clamps_position > 0


def test_yam_leader_bus_gone_makes_the_follower_hold_and_reports_it(rig):
    lemu, femu, r, arm = rig
    assert wait_until(lambda: r.driver.state == DriverState.EXECUTING), r.driver.last_event
    lemu.go_silent()
    assert wait_until(lambda: any(e.startswith("leader lost") for e in r.leader_events), 5), r.leader_events
    assert wait_until(lambda: r.driver.state == DriverState.HOLDING, 5)
    assert "no leader target" in r.driver.last_event
    t = time.monotonic()
    assert wait_until(lambda: len(femu.mit_commands_since(t, 2)) > 20)
    held = [cmd[0] for _, cmd in femu.mit_commands_since(t, 2)]
    assert max(held) - min(held) < 1e-3, "the follower holds one position while its leader is gone"


def test_estop_during_yam_teleop_freezes_the_follower(rig):
    lemu, femu, r, arm = rig
    assert wait_until(lambda: r.driver.state == DriverState.EXECUTING), r.driver.last_event
    r.driver.on_estop(time.monotonic())
    t = time.monotonic()
    with lemu.lock:
        lemu.motors[2].q = 0.8
    assert wait_until(lambda: len(femu.mit_commands_since(t, 2)) > 50)
    held = [cmd[0] for _, cmd in femu.mit_commands_since(t, 2)]
    assert max(held) - min(held) < 1e-3 and abs(held[-1] - 0.8) > 0.5
