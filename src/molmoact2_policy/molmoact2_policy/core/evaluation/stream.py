"""Bag -> observations at the policy rate, with the live graph's synchronisation rules
(``core.observation_sync``) driven by the recorded stamps. Streams: one pass, constant memory
(the newest undecoded frame per camera is kept; images are decoded only at observation ticks).
The reader delivers messages in timestamp order whatever the bag's file order; a record older
than one already consumed would be applied to a past tick, so it is never used (counted in
``out_of_order`` and reported as broken).

Times: each input's stamp is its header stamp (the capture time, as the live synchroniser sees
it), or the bag's receive time when the header stamp is zero or ``stamps='receive'``. Ticks run
on the bag's receive clock every ``1/rate`` seconds from the moment every source has spoken.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from molmoact2_common.embodiment import Embodiment

from ..image_codec import ImageCodecError, decode_compressed, decode_raw
from ..observation_sync import ObservationSynchronizer, SyncedObservation, SyncError
from .bagio import BagReader, BrokenRecord
from .topic_map import JointNameMapper, TopicMap

NS = 1_000_000_000


@dataclass
class Tick:
    index: int
    time_ns: int
    obs: SyncedObservation


@dataclass
class JointUpdate:
    time_ns: int  # receive time (bag clock)
    names: tuple[str, ...]  # embodiment names
    positions: np.ndarray


@dataclass
class ChunkSeen:
    time_ns: int
    model_id: str
    sequence: int


@dataclass
class InstructionSeen:
    time_ns: int
    text: str


def _stamp(msg, log_ns: int, mode: str) -> int:
    if mode == "receive":
        return log_ns
    st = msg.header.stamp
    ns = int(st.sec) * NS + int(st.nanosec)
    return ns if ns > 0 else log_ns


def image_to_rgb(msg, msgtype: str) -> np.ndarray:
    if msgtype.endswith("CompressedImage"):
        return decode_compressed(msg.format, msg.data)
    return decode_raw(msg.encoding, msg.data, msg.height, msg.width, msg.step, bool(msg.is_bigendian))


class ObservationStream:
    def __init__(self, reader: BagReader, topic_map: TopicMap, emb: Embodiment, rate_hz: float | None = None,
                 stamps: str = "header", progress=None) -> None:
        if stamps not in ("header", "receive"):
            raise ValueError("stamps must be 'header' or 'receive'")
        self.reader = reader
        self.map = topic_map
        self.emb = emb
        self.rate_hz = float(rate_hz or emb.control_rate_hz)
        self.stamps = stamps
        self.progress = progress
        topics = reader.topics()
        topic_map.check_bag(topics)
        self.types = {t: i.msgtype for t, i in topics.items()}
        self.chunk_topics = topic_map.chunk_topics(topics)
        self.cam_of = {t: c for c, t in topic_map.cameras.items()}
        sync = {"camera_max_age": 0.2, "camera_max_skew": 0.1, "joint_max_age": 0.2, "joint_max_skew": 0.1}
        sync.update(topic_map.sync)
        self.sync = ObservationSynchronizer(emb.model.camera_order, list(topic_map.joint_states), emb.joint_names, **sync)
        needed = list(dict.fromkeys(emb.model.state_joints + emb.model.action_joints))
        self.mapper = JointNameMapper(topic_map.joint_map, emb.joint_names, needed)
        self.image_errors = 0
        self.out_of_order = 0  # records older than one already consumed (the reader guarantees none)

    def topics_to_read(self) -> list[str]:
        out = self.map.required_topics() + self.chunk_topics
        if self.map.instruction and self.map.instruction in self.types:
            out.append(self.map.instruction)
        return out

    def __iter__(self) -> Iterator[Tick | JointUpdate | ChunkSeen | InstructionSeen]:
        step = int(round(NS / self.rate_hz))
        pending: dict[str, tuple[int, object, str]] = {}  # camera -> (stamp, undecoded msg, type)
        seen_cams: set[str] = set()
        seen_joints: set[str] = set()
        checked = False
        next_tick: int | None = None
        index = 0
        last_ts = 0
        newest = None
        for rec in self.reader.messages(self.topics_to_read()):
            ts = rec.timestamp_ns
            if self.progress is not None:
                self.progress.update(1)
            if newest is not None and ts < newest:
                # ticks up to `newest` may be out already: never apply a message to the past
                self.out_of_order += 1
                self.reader.broken.append(BrokenRecord(rec.position.split(" ")[0], rec.position,
                                                       f"{rec.topic}: delivered out of time order: not used"))
                continue
            newest = ts
            while next_tick is not None and next_tick < ts:
                tick = self._tick(index, next_tick, pending)
                if tick is not None:
                    yield tick
                index += 1
                next_tick += step
            msg = self.reader.decode(rec)
            if msg is None:
                continue
            last_ts = ts
            if rec.topic in self.cam_of:
                cam = self.cam_of[rec.topic]
                pending[cam] = (_stamp(msg, ts, self.stamps), msg, rec.msgtype, rec.position)
                seen_cams.add(cam)
            elif rec.topic in self.map.joint_states:
                names = self.mapper.names(rec.topic, list(msg.name))
                pos = np.asarray(msg.position, dtype=np.float64)
                vel = np.asarray(msg.velocity, dtype=np.float64) if len(msg.velocity) == len(names) else None
                try:
                    self.sync.add_joint_state(rec.topic, names, pos, _stamp(msg, ts, self.stamps), velocities=vel)
                except SyncError as exc:  # a malformed JointState: reported, the rest goes on
                    self.reader.broken.append(BrokenRecord(rec.position.split(" ")[0], rec.position, f"{rec.topic}: {exc}"))
                    continue
                seen_joints.add(rec.topic)
                if not checked and seen_joints == set(self.map.joint_states):
                    self.mapper.check_complete()
                    checked = True
                yield JointUpdate(ts, names, pos)
            elif rec.topic in self.chunk_topics:
                yield ChunkSeen(ts, str(msg.model_id), int(msg.sequence))
            elif rec.topic == self.map.instruction:
                yield InstructionSeen(ts, str(msg.data))
            if next_tick is None and checked and len(seen_cams) == len(self.map.cameras):
                next_tick = ts
        while next_tick is not None and next_tick <= last_ts:
            tick = self._tick(index, next_tick, pending)
            if tick is not None:
                yield tick
            index += 1
            next_tick += step

    def _tick(self, index: int, now_ns: int, pending) -> Tick | None:
        for cam in list(pending):
            stamp, msg, msgtype, position = pending.pop(cam)
            try:
                self.sync.add_frame(cam, image_to_rgb(msg, msgtype), stamp)
            except (ImageCodecError, SyncError) as exc:
                self.image_errors += 1
                self.reader.broken.append(BrokenRecord(position.split(" ")[0], position, f"camera '{cam}': {exc}"))
        return Tick(index, now_ns, self.sync.assemble(now_ns))
