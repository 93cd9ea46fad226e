"""Watching the drivers' DriverStatus from a simulated-task node (the scripted expert, the episode
supervisor): which topics, and whether every driver is ready to move its arm."""

from __future__ import annotations

from molmoact2_common import qos
from molmoact2_common.params import ParamSpec
from molmoact2_msgs.msg import DriverStatus

PARAMS = [
    ParamSpec("drivers_namespace", str, "", "where the drivers are: <ns>/driver_status for one arm, <ns>/<arm>/driver_status "
              "for several (the deployments' layout)"),
    ParamSpec("driver_status_topics", "str[]", [], "the drivers' driver_status topics, overriding drivers_namespace"),
]

READY = (DriverStatus.STATE_HOLDING, DriverStatus.STATE_ARMING, DriverStatus.STATE_EXECUTING)


class DriverWatch:
    """The newest DriverStatus of every driver of ``arm_names`` (topics from the PARAMS above)."""

    def __init__(self, node, params: dict, arm_names: list[str], n_arms: int) -> None:
        ns = params["drivers_namespace"].rstrip("/")
        self.topics = list(params["driver_status_topics"]) or (
            [f"{ns}/driver_status"] if n_arms == 1 else [f"{ns}/{a}/driver_status" for a in arm_names])
        self.latest: dict[str, DriverStatus | None] = {t: None for t in self.topics}
        for topic in self.topics:
            node.create_subscription(DriverStatus, topic, lambda m, t=topic: self.latest.__setitem__(t, m), qos.DRIVER_STATUS)

    def ready(self) -> bool:
        """Every driver has spoken and is actuating, started, not e-stopped, holding/arming/executing."""
        return all(m is not None and m.actuation_enabled and m.operator_started and not m.estop_latched and m.state in READY
                   for m in self.latest.values())
