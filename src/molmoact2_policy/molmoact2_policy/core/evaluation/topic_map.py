"""Which bag topics feed which policy inputs, and how a bag's joint names map onto the
embodiment's. Files live in ``config/evaluation/*.yaml``; without one the map is derived from
the embodiment config (each camera's ``source.topic``, each arm's ``joint_states_topic``)::

    cameras:                       # model camera name -> topic (sensor_msgs/Image or CompressedImage)
      top: /camera_top/color/image_raw/compressed
    joint_states: [/left/joint_states, /right/joint_states]
    joint_map: {joint_1: left_joint1}   # bag joint name -> embodiment joint name (optional)
    action_chunks: /action_chunk # optional: tells whether the bag was driven by this policy
    instruction: /instruction           # optional std_msgs/String
    sync: {camera_max_age: 0.2, camera_max_skew: 0.1, joint_max_age: 0.2, joint_max_skew: 0.1}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from molmoact2_common.embodiment import Embodiment, config_root

from .bagio import TopicInfo

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
JOINT_TYPE = "sensor_msgs/msg/JointState"
CHUNK_TYPE = "molmoact2_msgs/msg/ActionChunk"
DEFAULT_INSTRUCTION_TOPIC = "/instruction"


class TopicMapError(ValueError):
    """A topic map that does not fit the bag or the embodiment; the message lists both sides."""


@dataclass
class TopicMap:
    cameras: dict[str, str]
    joint_states: list[str]
    joint_map: dict[str, str] = field(default_factory=dict)
    action_chunks: str = ""
    instruction: str = ""
    sync: dict[str, float] = field(default_factory=dict)
    source: str = "embodiment defaults"

    def required_topics(self) -> list[str]:
        return list(self.cameras.values()) + list(self.joint_states)

    def check_bag(self, topics: Mapping[str, TopicInfo]) -> None:
        """Refuse a bag without the mapped topics (listing what it has) or with wrong types."""
        missing = [t for t in self.required_topics() if t not in topics]
        if missing:
            have = "\n  ".join(f"{t} ({i.msgtype}, {i.count if i.count >= 0 else '?'} msgs)" for t, i in sorted(topics.items()))
            raise TopicMapError(
                f"the bag lacks topic(s) {', '.join(missing)} (topic map: {self.source}).\n"
                f"The bag has:\n  {have or '(no topics)'}\n"
                "Point the topic map (--topic-map, config/evaluation/*.yaml) at the bag's topic names."
            )
        for cam, t in self.cameras.items():
            if topics[t].msgtype not in IMAGE_TYPES:
                raise TopicMapError(f"camera '{cam}' is mapped to '{t}' of type {topics[t].msgtype}, not an image")
        for t in self.joint_states:
            if topics[t].msgtype != JOINT_TYPE:
                raise TopicMapError(f"joint-state topic '{t}' has type {topics[t].msgtype}, not {JOINT_TYPE}")

    def chunk_topics(self, topics: Mapping[str, TopicInfo]) -> list[str]:
        if self.action_chunks:
            return [self.action_chunks] if self.action_chunks in topics else []
        return [t for t, i in topics.items() if i.msgtype == CHUNK_TYPE]


def default_topic_map(emb: Embodiment) -> TopicMap:
    cams = {}
    for c in emb.cameras_in_model_order():
        cams[c.name] = str(c.source.get("topic") or f"/cameras/{c.name}/image_raw")
    joints: list[str] = []
    for arm in emb.arms:
        # the camera node's convention: joint_states (one arm) or <arm>/joint_states (several)
        default = "/joint_states" if len(emb.arms) == 1 else f"/{arm.name}/joint_states"
        t = str(arm.backend.get("joint_states_topic") or default)
        if t not in joints:
            joints.append(t)
    # the live graph's names: the policy node's latched instruction and its chunks
    return TopicMap(cams, joints, instruction=DEFAULT_INSTRUCTION_TOPIC, source=f"defaults of embodiment '{emb.name}'")


def resolve_topic_map_path(name_or_path: str | os.PathLike) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return config_root() / "evaluation" / f"{name_or_path}.yaml"


def load_topic_map(name_or_path: str | os.PathLike | None, emb: Embodiment) -> TopicMap:
    if not name_or_path:
        return default_topic_map(emb)
    path = resolve_topic_map_path(name_or_path)
    if not path.is_file():
        have = sorted(x.stem for x in (config_root() / "evaluation").glob("*.yaml"))
        raise TopicMapError(f"topic map '{name_or_path}' not found at {path} (available: {', '.join(have)})")
    raw = yaml.safe_load(path.read_text()) or {}
    base = default_topic_map(emb)
    cams = dict(raw.get("cameras") or base.cameras)
    unknown = [c for c in cams if c not in emb.model.camera_order]
    missing = [c for c in emb.model.camera_order if c not in cams]
    if unknown or missing:
        raise TopicMapError(
            f"{path}: 'cameras' must name the model's cameras {emb.model.camera_order} "
            f"(unknown: {unknown or 'none'}, missing: {missing or 'none'})"
        )
    js = raw.get("joint_states") or base.joint_states
    if isinstance(js, str):
        js = [js]
    jmap = {str(k): str(v) for k, v in (raw.get("joint_map") or {}).items()}
    bad = sorted(v for v in jmap.values() if v not in emb.joint_names)
    if bad:
        raise TopicMapError(f"{path}: 'joint_map' maps onto joints the embodiment does not have: {', '.join(bad)}")
    sync = {str(k): float(v) for k, v in (raw.get("sync") or {}).items()}
    return TopicMap({c: str(cams[c]) for c in emb.model.camera_order}, [str(t) for t in js], jmap,
                    str(raw.get("action_chunks") or ""), str(raw.get("instruction") or base.instruction), sync, str(path))


class JointNameMapper:
    """Bag joint names -> embodiment names, through the topic map; refuses what it cannot map."""

    def __init__(self, joint_map: Mapping[str, str], embodiment_joints: Sequence[str], required: Sequence[str]) -> None:
        self.map = dict(joint_map)
        self.known = set(embodiment_joints)
        self.required = list(required)
        self._seen: dict[str, tuple[str, ...]] = {}

    def names(self, topic: str, names: Sequence[str]) -> tuple[str, ...]:
        key = tuple(names)
        mapped = tuple(self.map.get(n, n) for n in key)
        if self._seen.get(topic) != key:
            self._seen[topic] = key
        return mapped

    def check_complete(self) -> None:
        """After every joint topic was seen once: all required joints must be covered."""
        covered = {self.map.get(n, n) for names in self._seen.values() for n in names}
        missing = [j for j in self.required if j not in covered]
        if missing:
            bag_names = sorted({n for names in self._seen.values() for n in names})
            unmatched = [n for n in bag_names if self.map.get(n, n) not in self.known]
            raise TopicMapError(
                "the bag's joint names do not match the embodiment's: "
                f"embodiment joints with no bag joint: {', '.join(missing)}; "
                f"bag joints matching no embodiment joint: {', '.join(unmatched) or 'none'}. "
                "Map them by name with 'joint_map' (bag name -> embodiment name) in the topic map."
            )
