"""Franka DROID: external + wrist cameras, policy, driver through franka_ros2's controller (ros2_control bridge) or franky.

Every knob is a declared launch argument (`ros2 launch launch/franka_droid.launch.py --show-args`); the
nodes, names, parameters and lifecycle order come from config/deployments/franka_droid.yaml, which the
Python runner (`molmoact2-run franka_droid`) reads too.
"""

from molmoact2_common.bringup.launch_mapping import launch_description

DEPLOYMENT = "franka_droid"


def generate_launch_description():
    return launch_description(DEPLOYMENT)
