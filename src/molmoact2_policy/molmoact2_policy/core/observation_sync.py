"""Observation synchroniser: the newest frame of every camera in model order plus the newest
joint states merged by name across several sources, with per-source staleness.

ROS-free: times are integers of nanoseconds passed in explicitly (a source's capture stamp
with each input, and ``now`` when assembling), so the camera node drives it with its clock and
bag replay drives it with the recorded stamps.

Staleness, per source:
- *age*: ``now - stamp > max_age`` (a camera that stopped, a driver that died);
- *skew*: within a group (cameras; joint sources) a source whose stamp is more than
  ``max_skew`` behind the newest of its group (one camera lagging the others, one arm's driver
  lagging the other's).
A stale input is never passed as fresh: the assembled observation flags it and names why.

A live clock that jumps back (``note_time`` told a time earlier than the previous one: a bag
replayed with ``--loop`` restarting /clock) resets the synchroniser: every kept input is dropped, so
the replay's new frames, stamped earlier than the last ones kept, are taken again instead of being
ignored as out of order, and nothing from before the jump is passed on. The camera node tells the
time before every input and every assembly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

NS = 1_000_000_000


def seconds_to_ns(seconds: float) -> int:
    return int(round(float(seconds) * NS))


class SyncError(ValueError):
    """Input the synchroniser refuses (unknown camera, conflicting joint names, bad sizes)."""


@dataclass(frozen=True)
class CameraFrame:
    camera: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    stamp_ns: int  # the source's capture stamp
    frame_id: str = ""


@dataclass(frozen=True)
class JointSample:
    source: str
    names: tuple[str, ...]
    positions: np.ndarray
    velocities: np.ndarray | None
    efforts: np.ndarray | None
    stamp_ns: int


@dataclass
class SourceState:
    name: str
    stamp_ns: int | None  # None: never received
    stale: bool
    reason: str  # "" when fresh; "never received", "age 0.412 s > max_age 0.200 s", ...


@dataclass
class SyncedObservation:
    """One assembled step. ``complete`` is False while a camera or joint source has never been
    received (nothing to send yet); ``stale`` is True when any source is stale."""

    now_ns: int
    camera_names: list[str]
    frames: list[CameraFrame | None]
    cameras: list[SourceState]
    joint_names: list[str]
    joint_positions: np.ndarray
    joint_velocities: np.ndarray | None
    joint_efforts: np.ndarray | None
    joint_stamp_ns: int | None  # oldest contributing source's stamp
    joint_sources: list[SourceState]
    missing_joints: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return (
            all(f is not None for f in self.frames)
            and all(s.stamp_ns is not None for s in self.joint_sources)
            and not self.missing_joints
        )

    @property
    def stale(self) -> bool:
        return any(s.stale for s in self.cameras) or any(s.stale for s in self.joint_sources)

    def stale_reasons(self) -> dict[str, str]:
        """Source name -> why it is stale (cameras as ``camera:<name>``, joints as ``joints:<source>``)."""
        out = {f"camera:{s.name}": s.reason for s in self.cameras if s.stale}
        out.update({f"joints:{s.name}": s.reason for s in self.joint_sources if s.stale})
        if self.missing_joints:
            out["joints"] = "missing joints: " + ", ".join(self.missing_joints)
        return out

    @property
    def camera_stamps_ns(self) -> list[int]:
        return [s.stamp_ns if s.stamp_ns is not None else 0 for s in self.cameras]


class ObservationSynchronizer:
    """Keeps the newest input per source and assembles ``SyncedObservation``s on demand.

    camera_order: camera names in the order the model expects them.
    joint_sources: names of the joint-state sources (one per arm driver); an empty list accepts
        any source name as it arrives (a single-arm robot that does not name its source).
    joint_order: the merged joint order (the embodiment's joint names). Joints that no source
        has reported are listed in ``missing_joints``; joints not in the order are appended in
        arrival order. Empty: arrival order.
    Times in seconds for the limits; stamps in integer nanoseconds.
    """

    def __init__(
        self,
        camera_order: Sequence[str],
        joint_sources: Sequence[str] = (),
        joint_order: Sequence[str] = (),
        camera_max_age: float = 0.2,
        camera_max_skew: float = 0.1,
        joint_max_age: float = 0.2,
        joint_max_skew: float = 0.1,
    ) -> None:
        if not camera_order:
            raise SyncError("camera_order is empty: the synchroniser needs at least one camera")
        if len(set(camera_order)) != len(camera_order):
            raise SyncError(f"camera_order has duplicate names: {list(camera_order)}")
        for name, value in (
            ("camera_max_age", camera_max_age),
            ("camera_max_skew", camera_max_skew),
            ("joint_max_age", joint_max_age),
            ("joint_max_skew", joint_max_skew),
        ):
            if not float(value) > 0:
                raise SyncError(f"{name} must be > 0 seconds, got {value!r}")
        self.camera_order = list(camera_order)
        self.fixed_sources = list(joint_sources)
        self.joint_order = list(joint_order)
        self.camera_max_age_ns = seconds_to_ns(camera_max_age)
        self.camera_max_skew_ns = seconds_to_ns(camera_max_skew)
        self.joint_max_age_ns = seconds_to_ns(joint_max_age)
        self.joint_max_skew_ns = seconds_to_ns(joint_max_skew)
        self._frames: dict[str, CameraFrame] = {}
        self._joints: dict[str, JointSample] = {}
        self._owner: dict[str, str] = {}  # joint name -> source that reports it
        self._last_now_ns: int | None = None
        self.clock_resets = 0  # how often a clock jumping back reset the synchroniser

    # --- inputs -------------------------------------------------------------------------------

    def add_frame(self, camera: str, image: np.ndarray, stamp_ns: int, frame_id: str = "") -> None:
        if camera not in self.camera_order:
            raise SyncError(f"unknown camera '{camera}' (cameras: {', '.join(self.camera_order)})")
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise SyncError(f"camera '{camera}': frame must be an (H, W, 3) uint8 RGB array, got {getattr(image, 'shape', type(image))}")
        prev = self._frames.get(camera)
        if prev is not None and int(stamp_ns) < prev.stamp_ns:
            return  # out of order: the newest frame wins
        self._frames[camera] = CameraFrame(camera, image, int(stamp_ns), frame_id)

    def add_joint_state(
        self,
        source: str,
        names: Sequence[str],
        positions: Sequence[float],
        stamp_ns: int,
        velocities: Sequence[float] | None = None,
        efforts: Sequence[float] | None = None,
    ) -> None:
        if self.fixed_sources and source not in self.fixed_sources:
            raise SyncError(f"unknown joint-state source '{source}' (sources: {', '.join(self.fixed_sources)})")
        names = tuple(str(n) for n in names)
        pos = np.asarray(positions, dtype=np.float64).reshape(-1)
        if len(names) != pos.size:
            raise SyncError(f"joint-state source '{source}': {len(names)} names but {pos.size} positions")
        if len(set(names)) != len(names):
            raise SyncError(f"joint-state source '{source}' repeats joint names: {list(names)}")
        vel = _optional(velocities, len(names), "velocities", source)
        eff = _optional(efforts, len(names), "efforts", source)
        for n in names:
            owner = self._owner.get(n)
            if owner is not None and owner != source:
                raise SyncError(
                    f"joint '{n}' is reported by both '{owner}' and '{source}': joint names must be unique across the robot"
                )
        prev = self._joints.get(source)
        if prev is not None and int(stamp_ns) < prev.stamp_ns:
            return
        if prev is not None:
            for n in prev.names:
                if n not in names:
                    self._owner.pop(n, None)
        for n in names:
            self._owner[n] = source
        self._joints[source] = JointSample(source, names, pos, vel, eff, int(stamp_ns))

    def reset(self) -> None:
        self._frames.clear()
        self._joints.clear()
        self._owner.clear()

    # --- output -------------------------------------------------------------------------------

    def note_time(self, now_ns: int) -> bool:
        """Tell the synchroniser the clock's time; a time earlier than the last one resets it (True)."""
        now_ns = int(now_ns)
        jumped = self._last_now_ns is not None and now_ns < self._last_now_ns
        if jumped:
            self.reset()
            self.clock_resets += 1
        self._last_now_ns = now_ns
        return jumped

    def assemble(self, now_ns: int) -> SyncedObservation:
        """The observation at ``now_ns`` (a pure function of the kept inputs and ``now_ns``: it never
        resets; a live clock is told with ``note_time``)."""
        now_ns = int(now_ns)
        frames = [self._frames.get(c) for c in self.camera_order]
        cams = _states(
            [(c, f.stamp_ns if f else None) for c, f in zip(self.camera_order, frames)],
            now_ns, self.camera_max_age_ns, self.camera_max_skew_ns,
        )
        source_names = self.fixed_sources or list(self._joints)
        samples = [self._joints.get(s) for s in source_names]
        jsrc = _states(
            [(s, j.stamp_ns if j else None) for s, j in zip(source_names, samples)],
            now_ns, self.joint_max_age_ns, self.joint_max_skew_ns,
        )
        by_name: dict[str, tuple[float, float | None, float | None]] = {}
        arrival: list[str] = []
        have_vel = have_eff = bool(samples) and all(j is not None for j in samples)
        for j in samples:
            if j is None:
                continue
            have_vel = have_vel and j.velocities is not None
            have_eff = have_eff and j.efforts is not None
            for i, n in enumerate(j.names):
                by_name[n] = (
                    float(j.positions[i]),
                    float(j.velocities[i]) if j.velocities is not None else None,
                    float(j.efforts[i]) if j.efforts is not None else None,
                )
                arrival.append(n)
        order = [n for n in self.joint_order if n in by_name] + [n for n in arrival if n not in self.joint_order]
        missing = [n for n in self.joint_order if n not in by_name]
        stamps = [j.stamp_ns for j in samples if j is not None]
        return SyncedObservation(
            now_ns=now_ns,
            camera_names=list(self.camera_order),
            frames=frames,
            cameras=cams,
            joint_names=order,
            joint_positions=np.array([by_name[n][0] for n in order], dtype=np.float64),
            joint_velocities=np.array([by_name[n][1] for n in order], dtype=np.float64) if have_vel else None,
            joint_efforts=np.array([by_name[n][2] for n in order], dtype=np.float64) if have_eff else None,
            joint_stamp_ns=min(stamps) if stamps else None,
            joint_sources=jsrc,
            missing_joints=missing,
        )


def _optional(values: Iterable[float] | None, n: int, what: str, source: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        return None  # JointState leaves velocity/effort empty when it does not report them
    if arr.size != n:
        raise SyncError(f"joint-state source '{source}': {arr.size} {what} for {n} joints")
    return arr


def _states(items: list[tuple[str, int | None]], now_ns: int, max_age_ns: int, max_skew_ns: int) -> list[SourceState]:
    known = [s for _, s in items if s is not None]
    newest = max(known) if known else None
    out = []
    for name, stamp in items:
        if stamp is None:
            out.append(SourceState(name, None, True, "never received"))
            continue
        age = now_ns - stamp
        if age > max_age_ns:
            out.append(SourceState(name, stamp, True, f"age {age / NS:.3f} s > max_age {max_age_ns / NS:.3f} s"))
            continue
        skew = newest - stamp
        if skew > max_skew_ns:
            out.append(SourceState(name, stamp, True, f"{skew / NS:.3f} s behind the newest source > max_skew {max_skew_ns / NS:.3f} s"))
            continue
        out.append(SourceState(name, stamp, False, ""))
    return out
