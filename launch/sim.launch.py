"""Closed loop in MuJoCo simulation (SO-101 by default, robot:=yam_bimanual): sim, cameras, masking, policy on a local checkpoint, driver, /clock.

Every knob is a declared launch argument (`ros2 launch launch/sim.launch.py --show-args`); the
nodes, names, parameters and lifecycle order come from config/deployments/sim.yaml, which the
Python runner (`molmoact2-run sim`) reads too.
"""

from molmoact2_common.bringup.launch_mapping import launch_description

DEPLOYMENT = "sim"


def generate_launch_description():
    return launch_description(DEPLOYMENT)
