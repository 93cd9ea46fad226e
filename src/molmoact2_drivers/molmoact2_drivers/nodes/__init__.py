"""Thin ROS nodes over the core: parameters, topics, services and timers only."""
