"""Recording, replay evaluation and LeRobot export (ROS-free).

- ``bagio``: rosbag2 (mcap, sqlite3) writing with split segments and periodic flushes, and a
  streaming reader that survives truncated and corrupted files (broken records are reported
  with their positions, the rest is read).
- ``recorder``: a queue + writer thread so that recording never blocks the graph.
- ``topic_map``: which bag topics feed which cameras / joint sources, joint name mapping.
- ``metrics``: open-loop comparison of predicted chunks with what the robot did next.
- ``evaluate``: the evaluation loop (bag -> synchronised observations -> backend -> metrics).
- ``report``: JSON + Markdown/HTML with PNG plots.
- ``export``: bag -> LeRobot dataset v3.0.
"""
