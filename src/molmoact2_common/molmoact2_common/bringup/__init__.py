"""Bring-up: deployment graphs described once (config/deployments/*.yaml), read by the launch
files and by a Python runner for machines without ``ros2 launch``; a lifecycle manager."""
