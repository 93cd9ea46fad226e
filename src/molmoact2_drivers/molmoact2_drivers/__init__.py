"""Arm drivers for MolmoAct2 deployments: chunk executor, safety layer, lifecycle driver node; YAM, SO-100/101, Franka, MuJoCo sim and ros2_control backends. No torch."""
