"""A node in another process for interface round-trip tests.

Usage: echo_node.py TOPIC=pkg/msg/Type ...   republishes each TOPIC on TOPIC/echo, and serves
``/echo/set_instruction`` (SetInstruction) answering with the instruction it was given.
"""

from __future__ import annotations

import importlib
import sys

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from molmoact2_common.node_main import run_node
from molmoact2_msgs.srv import SetInstruction


def load_type(spec: str):
    pkg, kind, name = spec.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class EchoNode(Node):
    def __init__(self, topics: dict[str, str]) -> None:
        super().__init__("echo_node")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._keep = []
        for topic, type_spec in topics.items():
            msg_type = load_type(type_spec)
            pub = self.create_publisher(msg_type, f"{topic}/echo", qos)
            self._keep.append(self.create_subscription(msg_type, topic, pub.publish, qos))
            self._keep.append(pub)
        self.create_service(SetInstruction, "/echo/set_instruction", self._on_set_instruction)

    def _on_set_instruction(self, request, response):
        response.success = bool(request.instruction.strip())
        response.message = f"echo: {request.instruction}"
        return response


def main() -> None:
    topics = dict(arg.split("=", 1) for arg in sys.argv[1:] if "=" in arg and not arg.startswith("--"))
    sys.exit(run_node(lambda: EchoNode(topics), args=[]))


if __name__ == "__main__":
    main()
