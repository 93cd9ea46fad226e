"""Bimanual YAM teleoperation: two leader YAMs (i2rt gravity compensation, teaching handles) drive
the two followers' drivers (input:=teleop, through their arming ramps and safety filters).

Every knob is a declared launch argument (`ros2 launch launch/yam_bimanual_teleop.launch.py
--show-args`); the nodes, names, parameters and lifecycle order come from
config/deployments/yam_bimanual_teleop.yaml, which `molmoact2-run yam_bimanual_teleop` reads too.
"""

from molmoact2_common.bringup.launch_mapping import launch_description

DEPLOYMENT = "yam_bimanual_teleop"


def generate_launch_description():
    return launch_description(DEPLOYMENT)
