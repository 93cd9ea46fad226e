"""Shared pieces of the MolmoAct2 ROS 2 stack (no torch: drivers-only machines import this)."""
