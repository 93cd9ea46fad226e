"""ROS-free logic: imports neither rclpy nor message types; tested without ROS."""
