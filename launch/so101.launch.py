"""SO-100/101 single arm (config:=so100 for SO-100): cameras, masking, policy, Feetech driver.

Every knob is a declared launch argument (`ros2 launch launch/so101.launch.py --show-args`); the
nodes, names, parameters and lifecycle order come from config/deployments/so101.yaml, which the
Python runner (`molmoact2-run so101`) reads too.
"""

from molmoact2_common.bringup.launch_mapping import launch_description

DEPLOYMENT = "so101"


def generate_launch_description():
    return launch_description(DEPLOYMENT)
