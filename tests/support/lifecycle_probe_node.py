"""A minimal lifecycle node for bring-up tests: configure fails when asked to (parameter
``fail_configure``), logging the reason the way our real nodes do; ``start`` Trigger service."""

from __future__ import annotations

import sys
import time

from rclpy.lifecycle import TransitionCallbackReturn
from std_srvs.srv import Trigger

from molmoact2_common.lifecycle import StackLifecycleNode
from molmoact2_common.node_main import run_node

class LifecycleProbe(StackLifecycleNode):
    def __init__(self) -> None:
        super().__init__("lifecycle_probe")
        self.declare_parameter("fail_configure", False)
        # events go to a file (appends are synchronous: none is lost when the process is stopped
        # right after its last transition); CLOCK_MONOTONIC orders them across processes
        self.declare_parameter("events_file", "")
        # a deactivation that takes this long (a driver ramping to hold): tear-downs that overlap
        # a second signal
        self.declare_parameter("deactivate_s", 0.0)
        # what an arm driver declares about its backend (the lifecycle manager reads them before
        # it arms a driver automatically)
        for name in ("embodiment", "arm", "backend", "backend_options"):
            self.declare_parameter(name, "")
        self.create_service(Trigger, "~/start", self._on_start)

    def _event(self, what: str) -> None:
        path = self.get_parameter("events_file").value
        if path:
            with open(path, "a") as f:
                f.write(f"{time.monotonic_ns()}:{self.get_fully_qualified_name()}:{what}\n")

    def on_configure(self, state):
        if self.get_parameter("fail_configure").value:
            self.get_logger().error("configure refused: camera 'top' has no source (probe)")
            return TransitionCallbackReturn.FAILURE
        self._event("configure")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        self._event("activate")
        return super().on_activate(state)

    def on_deactivate(self, state):
        time.sleep(self.get_parameter("deactivate_s").value)  # the slow work a transition stands for
        self._event("deactivate")
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        self._event("cleanup")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state):
        self._event("shutdown")
        return TransitionCallbackReturn.SUCCESS

    def _on_start(self, request, response):
        self._event("start")
        response.success = True
        response.message = "started"
        return response


def main() -> None:
    sys.exit(run_node(LifecycleProbe))


if __name__ == "__main__":
    main()
