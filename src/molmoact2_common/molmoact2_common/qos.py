"""Every QoS profile of the stack, named once.

Nodes import these names; no node builds a QoSProfile of its own, so that publishers and
subscribers of one topic can never disagree.
"""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Camera frames from drivers (realsense2_camera, usb_cam publish with sensor-data QoS):
# best effort, newest wins.
CAMERA_IMAGE = qos_profile_sensor_data

# Synchronised observations: reliable but keep only the newest, so a slow policy never works
# through a backlog (it always consumes the newest observation).
OBSERVATION = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Action chunks: reliable; a short queue so a driver never misses one during a hiccup.
ACTION_CHUNK = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Joint states from drivers (and from ros2_control's joint_state_broadcaster, which is reliable).
JOINT_STATE = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Latched state: status messages and the current instruction. A late joiner gets the last one.
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
POLICY_STATUS = LATCHED
DRIVER_STATUS = LATCHED
INSTRUCTION = LATCHED

# Episode events (the episode manager's labels, recorded in the bag): every one must reach the
# recorder, so reliable with a deep queue and VOLATILE: the recorder subscribes to a volatile
# topic with a queue of 10 (transient-local publishers get a queue of 1, where a burst of events
# would keep only the newest). Each event carries its whole episode, so a late joiner needs none.
EPISODE_EVENT = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# E-stop: deliberately VOLATILE, so a node that joins late never acts on a stale stop; the
# driver latches a received stop itself until an explicit reset. Never replaces the arm's
# hardware e-stop.
ESTOP = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Operator heartbeat for the deadman: only the newest matters.
HEARTBEAT = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Perception products and visualisation: reliable, short queue.
CHANGE_MASK = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
DEPTH_TOKENS = CHANGE_MASK
VISUALISATION = CHANGE_MASK

# Simulated time. Reliable publisher: compatible with rclpy's best-effort /clock subscription.
CLOCK = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# /diagnostics (diagnostic_aggregator and rqt_robot_monitor subscribe with the default profile).
DIAGNOSTICS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# /rosout as rcl publishes it (reliable, transient local, depth 1000): the lifecycle manager reads
# the error a node logged when it refused a transition, even one logged before it subscribed.
ROSOUT = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1000,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
