"""Claim a ROS_DOMAIN_ID no other process on this machine holds (an flock per id).

Each test run takes one, so parallel runs never cross-talk; the main job takes one when the user
set none, so a self-contained simulation never mixes with another graph on domain 0."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

# Domain ids 1..100 map to distinct DDS port ranges on Linux; 0 is left to interactive use.
FIRST_DOMAIN_ID = 1
LAST_DOMAIN_ID = 100


def claim_ros_domain_id(lock_dir: Path | None = None) -> tuple[int, object]:
    """Return (domain_id, lock file). The id stays ours while the file object lives."""
    lock_dir = lock_dir or Path(tempfile.gettempdir()) / "molmoact2_ros_domain_locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    start = FIRST_DOMAIN_ID + os.getpid() % (LAST_DOMAIN_ID - FIRST_DOMAIN_ID + 1)
    span = LAST_DOMAIN_ID - FIRST_DOMAIN_ID + 1
    for i in range(span):
        domain_id = FIRST_DOMAIN_ID + (start - FIRST_DOMAIN_ID + i) % span
        f = open(lock_dir / f"{domain_id}.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        f.write(str(os.getpid()))
        f.flush()
        return domain_id, f
    raise RuntimeError(f"no free ROS_DOMAIN_ID in {FIRST_DOMAIN_ID}..{LAST_DOMAIN_ID}")


def claim_domain_unless_set() -> object | None:
    """A self-contained run (the main job, scripted demonstrations) claims a free domain unless the
    user set ROS_DOMAIN_ID (to watch it from RViz): never mix with another graph on domain 0.
    Returns the lock to keep alive for the run (None when the user's id is used)."""
    if "ROS_DOMAIN_ID" in os.environ:
        return None
    domain_id, lock = claim_ros_domain_id()
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    return lock
