"""SO-100/101 teleoperation (config:=so100 for SO-100): an SO leader arm (torque off) drives the
follower's driver (input:=teleop, through its arming ramp and safety filter); cameras for
recording demonstrations.

Every knob is a declared launch argument (`ros2 launch launch/so101_teleop.launch.py --show-args`);
the nodes, names, parameters and lifecycle order come from config/deployments/so101_teleop.yaml,
which the Python runner (`molmoact2-run so101_teleop`) reads too.
"""

from molmoact2_common.bringup.launch_mapping import launch_description

DEPLOYMENT = "so101_teleop"


def generate_launch_description():
    return launch_description(DEPLOYMENT)
