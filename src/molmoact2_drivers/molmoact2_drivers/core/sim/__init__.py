"""MuJoCo models for simulation and kinematics: the robot models PyPI packages ship (offline)."""
