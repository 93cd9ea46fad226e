"""Bimanual YAM: three cameras, masking, one policy producing 14-D chunks, two i2rt drivers on can_left/can_right.

Every knob is a declared launch argument (`ros2 launch launch/yam_bimanual.launch.py --show-args`); the
nodes, names, parameters and lifecycle order come from config/deployments/yam_bimanual.yaml, which the
Python runner (`molmoact2-run yam_bimanual`) reads too.
"""

from molmoact2_common.bringup.launch_mapping import launch_description

DEPLOYMENT = "yam_bimanual"


def generate_launch_description():
    return launch_description(DEPLOYMENT)
