"""Drive the graph from a recorded bag: replay publisher with /clock, cameras, masking, policy (open loop), driver in shadow mode.

Every knob is a declared launch argument (`ros2 launch launch/replay.launch.py --show-args`); the
nodes, names, parameters and lifecycle order come from config/deployments/replay.yaml, which the
Python runner (`molmoact2-run replay`) reads too.
"""

from molmoact2_common.bringup.launch_mapping import launch_description

DEPLOYMENT = "replay"


def generate_launch_description():
    return launch_description(DEPLOYMENT)
