"""rosbag2 I/O without rosbag2_py: writing through ``rosbags`` (mcap or sqlite3, standard
rosbag2 ``metadata.yaml``) and a streaming, damage-tolerant reader.

Writing
  ``BagWriter`` writes split segments ``<bag>/<bag>_<i>.{mcap,db3}`` listed in one rosbag2
  ``metadata.yaml`` (the layout ``ros2 bag record --max-bag-duration`` makes), so ``ros2 bag
  info/play``, ``rosbags`` and the ``mcap`` reader all open it. Message definitions of every
  topic, ours included, are embedded (mcap schemas / the sqlite3 ``message_definitions`` table),
  so a machine without ``molmoact2_msgs`` decodes the bag. The segment being written is flushed
  every ``flush_seconds`` (mcap: the pending chunk is closed and written; sqlite3: committed):
  a crash loses at most the unflushed moments, never the closed segments.

Reading
  ``BagReader.messages`` yields messages in timestamp order whatever order the files hold them
  in (a recorder that flushes per topic, a merged or converted bag, split segments), in bounded
  memory. An mcap file is cut into its chunks, with their time ranges from the summary's chunk
  indexes when the file has a usable summary, else from a first pass over the file (each chunk
  decompressed once); a sqlite3 file is read with ``ORDER BY timestamp`` over the keys, the data
  fetched by row id. The pieces of all files are merged on a heap and a chunk is opened only when
  the merge reaches its start time, so memory holds the chunks whose time ranges overlap the read
  position (for a bag written per topic, about one chunk per topic). A truncated or corrupted
  file does not stop it: each broken record is appended to ``reader.broken`` with its file and
  byte offset (mcap) or row id (sqlite3), and the rest is read. Storage files that
  ``metadata.yaml`` does not list (the segment a crashed recorder was writing) are read too, and
  reported.
"""

from __future__ import annotations

import functools
import heapq
import os
import shutil
import sqlite3
import struct
import tempfile
import time
from binascii import crc32
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

NS = 1_000_000_000
MCAP_MAGIC = b"\x89MCAP0\r\n"
STORAGES = ("mcap", "sqlite3")
_EXT = {"mcap": ".mcap", "sqlite3": ".db3"}
OUR_PACKAGE = "molmoact2_msgs"


class BagError(RuntimeError):
    """A bag that cannot be used at all (no such path, no storage file, unknown type...)."""


# --- types ----------------------------------------------------------------------------------------


def _distro_store():
    from rosbags.typesys import Stores

    distro = os.environ.get("ROS_DISTRO", "jazzy").lower()
    return {"kilted": Stores.ROS2_KILTED, "humble": Stores.ROS2_HUMBLE}.get(distro, Stores.ROS2_JAZZY)


def interface_dirs() -> list[Path]:
    """Directories holding our ``.msg`` files: the colcon install first, then the source tree."""
    out = []
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        d = Path(prefix) / "share" / OUR_PACKAGE / "msg"
        if d.is_dir():
            out.append(d)
    src = Path(__file__).resolve().parents[4] / OUR_PACKAGE / "msg"
    if src.is_dir():
        out.append(src)
    return out


def make_typestore():
    """The ROS 2 standard types of this distro plus our own interfaces, registered from the
    ``.msg`` files of ``molmoact2_msgs`` (so bags carry their full definitions)."""
    from rosbags.typesys import get_types_from_msg, get_typestore

    store = get_typestore(_distro_store())
    dirs = interface_dirs()
    if not dirs:
        raise BagError(f"cannot find the {OUR_PACKAGE} .msg files (AMENT_PREFIX_PATH or the source tree)")
    types: dict[str, Any] = {}
    for path in sorted(dirs[0].glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{OUR_PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


def register_definition(store, msgtype: str, encoding: str, definition: str) -> bool:
    """Register a type from a definition embedded in a bag. False when it cannot be parsed."""
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    if msgtype in store.fielddefs:
        return True
    if not definition:
        return False
    try:
        if encoding == "ros2msg":
            store.register(get_types_from_msg(definition, msgtype))
        elif encoding in ("ros2idl", "omgidl"):
            sep = "=" * 80 + "\n"
            types: dict[str, Any] = {}
            if definition.startswith(sep + "IDL: "):
                for part in definition.split(sep)[1:]:
                    _, idl = part.split("\n", 1)
                    types.update(get_types_from_idl(idl))
            else:
                types.update(get_types_from_idl(definition))
            store.register(types)
        else:
            return False
    except Exception:
        return False
    return msgtype in store.fielddefs


# --- writing --------------------------------------------------------------------------------------


@dataclass
class _Topic:
    name: str
    msgtype: str
    qos: str  # rosbag2 offered_qos_profiles yaml ("" : none known)


class BagWriter:
    """Split, periodically flushed rosbag2 writer (see module docstring).

    ``write`` is not thread-safe: the recorder calls it from its single writer thread.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        storage: str = "mcap",
        typestore=None,
        split_seconds: float = 60.0,
        split_bytes: int = 1 << 30,
        flush_seconds: float = 1.0,
        custom_data: dict[str, str] | None = None,
    ) -> None:
        if storage not in STORAGES:
            raise BagError(f"storage '{storage}' is not supported (one of: {', '.join(STORAGES)})")
        if not split_seconds > 0 or not flush_seconds > 0:
            raise BagError("split_seconds and flush_seconds must be > 0")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"bag '{self.path}' exists already: refusing to overwrite it")
        self.path.mkdir(parents=True)
        self.storage = storage
        self.store = typestore if typestore is not None else make_typestore()
        self.split_ns = int(split_seconds * NS)
        self.split_bytes = int(split_bytes)
        self.flush_seconds = float(flush_seconds)
        self.custom_data = dict(custom_data or {})
        self.topics: dict[str, _Topic] = {}
        self.files: list[dict[str, Any]] = []  # closed segments (rosbag2 'files' entries)
        self.counts: dict[str, int] = {}
        self._seg_index = 0
        self._writer = None
        self._conns: dict[str, Any] = {}
        self._seg_start_ns: int | None = None
        self._seg_bytes = 0
        self._last_flush = time.monotonic()
        self._closed = False
        self._closed_counts: dict[str, int] = {}
        self._write_metadata()  # an empty but valid bag from the first moment

    def add_topic(self, topic: str, msgtype: str, qos: str = "") -> None:
        """Declare a topic (``msgtype`` like ``sensor_msgs/msg/Image``)."""
        if topic in self.topics:
            if self.topics[topic].msgtype != msgtype:
                raise BagError(f"topic '{topic}' declared with type {msgtype} but already recorded as {self.topics[topic].msgtype}")
            return
        if msgtype not in self.store.fielddefs:
            raise BagError(f"message type '{msgtype}' of topic '{topic}' is unknown (no definition to embed)")
        self.topics[topic] = _Topic(topic, msgtype, qos)
        self.counts.setdefault(topic, 0)

    def _open_segment(self, stamp_ns: int) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        name = f"{self.path.name}_{self._seg_index}"
        plugin = StoragePlugin.MCAP if self.storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path / name, version=9, storage_plugin=plugin)
        for k, v in self.custom_data.items():
            self._writer.set_custom_data(k, v)
        self._writer.open()
        self._conns = {}
        self._seg_start_ns = stamp_ns
        self._seg_bytes = 0

    def _conn(self, topic: str):
        conn = self._conns.get(topic)
        if conn is None:
            t = self.topics[topic]
            kwargs = {"typestore": self.store, "serialization_format": "cdr"}
            if t.qos:
                from rosbags.rosbag2.metadata import parse_qos

                kwargs["offered_qos_profiles"] = parse_qos(t.qos)
            conn = self._writer.add_connection(t.name, t.msgtype, **kwargs)
            self._conns[topic] = conn
        return conn

    def write(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        if self._closed:
            raise BagError(f"bag '{self.path}' is closed")
        if topic not in self.topics:
            raise BagError(f"topic '{topic}' was not declared with add_topic")
        ts = int(timestamp_ns)
        if self._writer is not None and (ts - self._seg_start_ns >= self.split_ns or self._seg_bytes >= self.split_bytes):
            self._close_segment()
        if self._writer is None:
            self._open_segment(ts)
        self._writer.write(self._conn(topic), ts, data)
        self._seg_bytes += len(data)
        self.counts[topic] += 1
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Make everything written so far durable in the current segment's file."""
        self._last_flush = time.monotonic()
        storage = getattr(self._writer, "storage", None)
        if storage is None:
            return
        if self.storage == "mcap":
            if storage.chunk.bio.tell():
                storage.close_chunk()
            storage.bio.flush()
            os.fsync(storage.bio.fileno())
        else:
            storage.conn.commit()

    def _close_segment(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()
        seg_dir = writer.path
        meta = yaml.safe_load((seg_dir / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        for rel in meta["relative_file_paths"]:
            os.replace(seg_dir / rel, self.path / rel)
        shutil.rmtree(seg_dir)
        for f in meta.get("files", []):
            self.files.append(f)
        for t in meta.get("topics_with_message_count", []):
            name = t["topic_metadata"]["name"]
            self._closed_counts[name] = self._closed_counts.get(name, 0) + int(t["message_count"])
        self._seg_index += 1
        self._write_metadata()

    def _write_metadata(self) -> None:
        starts = [f["starting_time"]["nanoseconds_since_epoch"] for f in self.files]
        ends = [f["starting_time"]["nanoseconds_since_epoch"] + f["duration"]["nanoseconds"] for f in self.files]
        start = min(starts) if starts else 0
        end = max(ends) if ends else 0
        per_topic = {t: self._closed_counts.get(t, 0) for t in self.topics}
        total = sum(int(f["message_count"]) for f in self.files)
        distro = os.environ.get("ROS_DISTRO", "jazzy")
        info = {
            "version": 9,
            "storage_identifier": self.storage,
            "duration": {"nanoseconds": end - start},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": total,
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": t.name,
                        "type": t.msgtype,
                        "serialization_format": "cdr",
                        "offered_qos_profiles": _qos_as_list(t.qos),
                        "type_description_hash": self.store.hash_rihs01(t.msgtype),
                    },
                    "message_count": per_topic[t.name],
                }
                for t in self.topics.values()
            ],
            "compression_format": "",
            "compression_mode": "",
            "relative_file_paths": [f["path"] for f in self.files],
            "files": self.files,
            "custom_data": self.custom_data,
            "ros_distro": distro,
        }
        tmp = self.path / "metadata.yaml.tmp"
        tmp.write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False))
        os.replace(tmp, self.path / "metadata.yaml")

    def close(self) -> None:
        if self._closed:
            return
        self._close_segment()
        self._closed = True
        self._write_metadata()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _qos_as_list(qos: str) -> Any:
    if not qos:
        return []
    try:
        return yaml.safe_load(qos) or []
    except yaml.YAMLError:
        return []


# --- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicInfo:
    name: str
    msgtype: str
    count: int  # -1 when unknown (file not indexed)


@dataclass(frozen=True)
class BagRecord:
    topic: str
    msgtype: str
    timestamp_ns: int
    data: bytes
    position: str  # "<file> @ byte N" or "<file> row N"


@dataclass(frozen=True)
class BrokenRecord:
    file: str
    position: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "position": self.position, "reason": self.reason}


@dataclass
class _Channel:
    topic: str
    msgtype: str
    encoding: str


class BagReader:
    """Streaming, damage-tolerant reader of a rosbag2 directory (or one .mcap/.db3 file)."""

    def __init__(self, path: str | os.PathLike, typestore=None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag '{self.path}' does not exist")
        self.store = typestore if typestore is not None else make_typestore()
        self.broken: list[BrokenRecord] = []
        self.metadata: dict[str, Any] | None = None
        self.files: list[Path] = []
        self.unlisted: list[Path] = []
        self._resolve_files()
        self._topics: dict[str, TopicInfo] | None = None
        self._undecodable: set[str] = set()
        self._indexes: dict[Path, Any] = {}  # per storage file: its time-ranged pieces (built once)
        # of the last messages() pass: pieces (mcap chunks, sqlite3 files) and the most held open at once
        self.read_stats: dict[str, int] = {"pieces": 0, "max_open_pieces": 0}

    # files -----------------------------------------------------------------------------------

    def _resolve_files(self) -> None:
        if self.path.is_file():
            self.files = [self.path]
            return
        meta_path = self.path / "metadata.yaml"
        listed: list[Path] = []
        if meta_path.is_file():
            try:
                self.metadata = yaml.safe_load(meta_path.read_text())["rosbag2_bagfile_information"]
                listed = [self.path / p for p in self.metadata.get("relative_file_paths", [])]
            except Exception as exc:
                self.broken.append(BrokenRecord("metadata.yaml", "whole file", f"unreadable metadata: {exc}"))
        found = sorted(p for p in self.path.rglob("*") if p.suffix in (".mcap", ".db3") and p.is_file())
        listed_set = {p.resolve() for p in listed}
        self.unlisted = [p for p in found if p.resolve() not in listed_set]
        missing = [p for p in listed if not p.is_file()]
        for p in missing:
            self.broken.append(BrokenRecord(p.name, "whole file", "listed in metadata.yaml but missing"))
        self.files = [p for p in listed if p.is_file()] + self.unlisted
        for p in (self.unlisted if self.metadata is not None else []):
            self.broken.append(BrokenRecord(
                str(p.relative_to(self.path)), "whole file",
                "not listed in metadata.yaml (a segment a recorder was writing when it stopped): read as far as it is intact",
            ))
        if not self.files:
            raise BagError(f"'{self.path}' holds no rosbag2 storage file (.mcap or .db3)")

    def _name(self, p: Path) -> str:
        return str(p.relative_to(self.path)) if self.path.is_dir() else p.name

    # topics ----------------------------------------------------------------------------------

    def topics(self) -> dict[str, TopicInfo]:
        """Topic -> type and message count, from metadata.yaml where it covers every file,
        otherwise from the files' own channel tables (a scan)."""
        if self._topics is not None:
            return self._topics
        out: dict[str, TopicInfo] = {}
        if self.metadata and not self.unlisted:
            for t in self.metadata.get("topics_with_message_count", []):
                md = t["topic_metadata"]
                out[md["name"]] = TopicInfo(md["name"], md["type"], int(t.get("message_count", -1)))
        if not out or self.unlisted:
            for p in self.files:
                for topic, msgtype in self._scan_channels(p):
                    if topic not in out:
                        out[topic] = TopicInfo(topic, msgtype, -1)
        self._topics = out
        return out

    def _scan_channels(self, p: Path) -> list[tuple[str, str]]:
        if p.suffix == ".db3":
            try:
                con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
                try:
                    return [(r[0], r[1]) for r in con.execute("SELECT name, type FROM topics")]
                finally:
                    con.close()
            except sqlite3.DatabaseError:
                return []
        seen: dict[str, str] = {}
        for kind, payload in _McapScanner(p, self._name(p), [], channels_only=True):
            if kind == "channel":
                seen.setdefault(payload.topic, payload.msgtype)
        return list(seen.items())

    # messages --------------------------------------------------------------------------------

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagRecord]:
        """Records in timestamp order, whatever order the files hold them in (ties: file order).

        Each storage file is cut into time-ranged pieces: an mcap file into its chunks (their
        time ranges from the summary's chunk indexes when the file has a usable summary, else
        from a first pass over the file), a sqlite3 file into one ``ORDER BY timestamp`` query.
        The pieces of every file are merged on a heap; a piece is opened only when the merge
        reaches its start time, so memory holds the pieces whose time ranges overlap the read
        position (a bag recorded per topic: about one chunk per topic), never the whole bag.
        """
        wanted = set(topics) if topics is not None else None
        sources: list[tuple[int, tuple[int, int], Any]] = []
        for i, p in enumerate(self.files):
            sources += self._sqlite_sources(i, p, wanted) if p.suffix == ".db3" else self._mcap_sources(i, p, wanted)
        yield from self._merge(sources)

    def _merge(self, sources: list[tuple[int, tuple[int, int], Any]]) -> Iterator[BagRecord]:
        sources.sort(key=lambda s: (s[0], s[1]))
        heap: list[tuple[int, int, BagRecord, Iterator[BagRecord]]] = []
        seq = 0
        i = 0
        last = None
        self.read_stats = {"pieces": len(sources), "max_open_pieces": 0}
        while i < len(sources) or heap:
            if i < len(sources) and (not heap or sources[i][0] <= heap[0][0]):
                it = iter(sources[i][2]())
                i += 1
                rec = next(it, None)
                if rec is not None:
                    heapq.heappush(heap, (rec.timestamp_ns, seq, rec, it))
                    seq += 1
                    self.read_stats["max_open_pieces"] = max(self.read_stats["max_open_pieces"], len(heap))
                continue
            _, _, rec, it = heapq.heappop(heap)
            nxt = next(it, None)
            if nxt is not None:
                heapq.heappush(heap, (nxt.timestamp_ns, seq, nxt, it))
                seq += 1
            if last is not None and rec.timestamp_ns < last:
                # only a chunk whose header lies about its time range gets here
                self.broken.append(BrokenRecord(rec.position.split(" ")[0], rec.position,
                                                f"{rec.topic}: message stamped before its chunk's declared start time: skipped "
                                                "(it cannot be delivered in time order)"))
                continue
            last = rec.timestamp_ns
            yield rec

    # mcap ------------------------------------------------------------------------------------

    def _mcap_sources(self, i: int, p: Path, wanted: set[str] | None):
        idx = self._indexes.get(p)
        if idx is None:
            idx = self._indexes[p] = _McapIndex(p, self._name(p), self.broken)
            for name, encoding, definition in idx.scanner.schemas.values():
                if name not in self.store.fielddefs:
                    register_definition(self.store, name, encoding, definition)
        cids = None if wanted is None else {c for c, ch in idx.scanner.channels.items() if ch.topic in wanted}
        out = []
        for span in idx.spans:
            if span.start_ns > span.end_ns:
                continue  # a chunk without messages
            if cids is not None and span.channels is not None and not (span.channels & cids):
                continue
            out.append((span.start_ns, (i, span.offset), functools.partial(idx.records, span, wanted)))
        return out

    # sqlite3 ---------------------------------------------------------------------------------

    def _sqlite_sources(self, i: int, p: Path, wanted: set[str] | None):
        if p not in self._indexes:
            self._indexes[p] = self._sqlite_index(p)
        idx = self._indexes[p]
        if idx is None:
            return []
        topics, start = idx
        ids = None if wanted is None else sorted(t for t, (name, _) in topics.items() if name in wanted)
        if ids is not None and not ids:
            return []
        return [(start, (i, 0), functools.partial(self._sqlite_records, p, topics, ids))]

    def _sqlite_index(self, p: Path):
        name = self._name(p)
        try:
            con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
            topics = {r[0]: (r[1], r[2]) for r in con.execute("SELECT id, name, type FROM topics")}
        except sqlite3.DatabaseError as exc:
            self.broken.append(BrokenRecord(name, "whole file", f"not a readable sqlite3 bag: {exc}"))
            return None
        try:
            try:
                for typ, enc, definition in con.execute(
                    "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"
                ):
                    if typ not in self.store.fielddefs:
                        register_definition(self.store, typ, enc, definition)
            except sqlite3.DatabaseError:
                pass  # older bags have no message_definitions table
            try:
                start = con.execute("SELECT min(timestamp) FROM messages").fetchone()[0]
            except sqlite3.DatabaseError:
                start = None
        finally:
            con.close()
        return topics, (int(start) if start is not None else -1)

    def _sqlite_records(self, p: Path, topics: dict, ids: list[int] | None) -> Iterator[BagRecord]:
        """``ORDER BY timestamp, id`` over the keys only (the rosbag2 timestamp index serves it;
        without one SQLite's sorter spills to temporary files), the data fetched by row id in
        batches. A damaged file: the keys after the last delivered one are salvaged row by row
        into a temporary key table, sorted there, and read on."""
        name = self._name(p)
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True, check_same_thread=False)
        where = f" WHERE topic_id IN ({','.join('?' * len(ids))})" if ids is not None else ""
        last: tuple[int, int] | None = None
        try:
            try:
                cur = con.execute(f"SELECT timestamp, id, topic_id, length(data) FROM messages{where} ORDER BY timestamp, id",
                                  ids or ())
                while True:
                    keys = cur.fetchmany(256)
                    if not keys:
                        return
                    for batch in _by_size(keys):
                        yield from self._sqlite_fetch(con, name, topics, batch)
                        last = (batch[-1][0], batch[-1][1])
            except sqlite3.DatabaseError:
                pass
            yield from self._sqlite_salvage(con, name, topics, ids, last)
        finally:
            con.close()

    def _sqlite_fetch(self, con, name: str, topics: dict, keys) -> Iterator[BagRecord]:
        """The records of ``keys`` (timestamp, id, topic_id, ...) in that order."""
        qs = ",".join("?" * len(keys))
        try:
            data = dict(con.execute(f"SELECT id, data FROM messages WHERE id IN ({qs})", [k[1] for k in keys]).fetchall())
        except sqlite3.DatabaseError:
            data = {}
            for _, rid, *_ in keys:
                try:
                    r = con.execute("SELECT data FROM messages WHERE id = ?", (rid,)).fetchone()
                except sqlite3.DatabaseError as exc:
                    self.broken.append(BrokenRecord(name, f"row {rid}", f"unreadable row: {exc}"))
                    continue
                if r is not None:
                    data[rid] = r[0]
        for ts, rid, tid, *_ in keys:
            if rid not in data:
                continue
            if tid not in topics:
                self.broken.append(BrokenRecord(name, f"row {rid}", f"unknown topic id {tid}"))
                continue
            topic, msgtype = topics[tid]
            yield BagRecord(topic, msgtype, int(ts), bytes(data[rid]), f"{name} row {rid}")

    def _sqlite_salvage(self, con, name: str, topics: dict, ids: list[int] | None, after: tuple[int, int] | None):
        wanted = set(ids) if ids is not None else None
        with tempfile.TemporaryDirectory(prefix="bagkeys-") as tmp:
            keys_db = sqlite3.connect(str(Path(tmp) / "keys.db"))
            try:
                keys_db.execute("CREATE TABLE k(ts INTEGER, id INTEGER, tid INTEGER)")
                for rid, tid, ts in self._sqlite_walk(con, name):
                    if wanted is not None and tid not in wanted:
                        continue
                    if after is not None and (ts, rid) <= after:
                        continue
                    keys_db.execute("INSERT INTO k VALUES (?, ?, ?)", (ts, rid, tid))
                keys_db.commit()
                cur = keys_db.execute("SELECT ts, id, tid FROM k ORDER BY ts, id")
                while True:
                    keys = cur.fetchmany(16)
                    if not keys:
                        return
                    yield from self._sqlite_fetch(con, name, topics, keys)
            finally:
                keys_db.close()

    def _sqlite_walk(self, con, name: str) -> Iterator[tuple[int, int, int]]:
        """(id, topic_id, timestamp) of every readable row in id order; damaged pages are
        walked row by row and what cannot be read is reported."""
        last = 0
        batch = 256
        while True:
            try:
                rows = con.execute(
                    "SELECT id, topic_id, timestamp FROM messages WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
                ).fetchall()
            except sqlite3.DatabaseError:
                rows = None
            if rows is None:
                rows = []
                bad_run = 0
                rid = last
                while len(rows) < batch and bad_run < 4096:
                    rid += 1
                    try:
                        r = con.execute("SELECT id, topic_id, timestamp FROM messages WHERE id = ?", (rid,)).fetchone()
                    except sqlite3.DatabaseError as exc:
                        self.broken.append(BrokenRecord(name, f"row {rid}", f"unreadable row: {exc}"))
                        bad_run += 1
                        continue
                    if r is None:
                        bad_run += 1
                        continue
                    bad_run = 0
                    rows.append(r)
            if not rows:
                return
            for rid, tid, ts in rows:
                last = rid
                yield int(rid), tid, int(ts)

    def decode(self, rec: BagRecord) -> Any | None:
        """The message (rosbags dataclass) or None; a record that does not decode is reported."""
        if rec.msgtype not in self.store.fielddefs:
            if rec.msgtype not in self._undecodable:
                self._undecodable.add(rec.msgtype)
                self.broken.append(BrokenRecord(rec.position.split(" ")[0], rec.position,
                                                f"type '{rec.msgtype}' has no definition in the bag or this installation"))
            return None
        try:
            return self.store.deserialize_cdr(rec.data, rec.msgtype)
        except Exception as exc:
            self.broken.append(BrokenRecord(rec.position.split(" ")[0], rec.position,
                                            f"{rec.topic}: message does not decode as {rec.msgtype}: {type(exc).__name__}: {exc}"))
            return None


class _McapScanner:
    """Iterates the records of one mcap file from the start (no summary needed): yields
    ("schema", (name, encoding, data)), ("channel", _Channel), ("message", (channel, log_time,
    data, position, channel_id, end_offset)) and, with ``expand_chunks=False``, ("chunk",
    (body, offset)) instead of a chunk's records. Damage is appended to ``broken`` and skipped
    where the framing allows."""

    def __init__(self, path: Path, name: str, broken: list[BrokenRecord], channels_only: bool = False) -> None:
        self.path = path
        self.name = name
        self.broken = broken
        self.channels_only = channels_only
        self.schemas: dict[int, tuple[str, str, str]] = {}
        self.channels: dict[int, _Channel] = {}

    def _bad(self, position: str, reason: str) -> None:
        self.broken.append(BrokenRecord(self.name, position, reason))

    def __iter__(self):
        return self.scan()

    def scan(self, expand_chunks: bool = True, start: int | None = None, end: int | None = None):
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            if start is None:
                if f.read(8) != MCAP_MAGIC:
                    self._bad("byte 0", "not an mcap file (bad magic)")
                    return
            else:
                f.seek(start)
            while True:
                off = f.tell()
                if end is not None and off >= end:
                    return
                head = f.read(9)
                if not head:
                    self._bad(f"byte {off}", f"file ends without a footer (truncated at {size} bytes)")
                    return
                if len(head) < 9:
                    self._bad(f"byte {off}", f"truncated record header (file is {size} bytes)")
                    return
                op = head[0]
                (length,) = struct.unpack_from("<Q", head, 1)
                if length > size - off - 9:
                    self._bad(f"byte {off}", f"record (opcode 0x{op:02x}) of {length} bytes runs past the end of the file ({size} bytes): truncated or corrupted")
                    return
                if op in (0x02, 0x0F):  # footer / data end: the summary follows
                    return
                if op == 0x06 and not expand_chunks:
                    yield "chunk", (f.read(length), off)
                elif op in (0x03, 0x04, 0x05, 0x06):
                    body = f.read(length)
                    try:
                        yield from self._record(op, body, off, top_level=True)
                    except (struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
                        self._bad(f"byte {off}", f"malformed record (opcode 0x{op:02x}): {exc}")
                else:
                    f.seek(length, 1)

    def chunk_records(self, body: bytes, off: int):
        """The records of one chunk record's body (header damage reported, not raised)."""
        try:
            yield from self._chunk(body, off)
        except (struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
            self._bad(f"byte {off}", f"malformed record (opcode 0x06): {exc}")

    def read_chunk(self, off: int):
        """The records of the chunk record at byte ``off``."""
        with open(self.path, "rb") as f:
            f.seek(off)
            head = f.read(9)
            if len(head) < 9 or head[0] != 0x06:
                self._bad(f"byte {off}", "the summary's chunk index points at no chunk record: chunk skipped")
                return
            (length,) = struct.unpack_from("<Q", head, 1)
            body = f.read(length)
        if len(body) != length:
            self._bad(f"byte {off}", "chunk runs past the end of the file: chunk skipped")
            return
        yield from self.chunk_records(body, off)

    def _record(self, op: int, body: bytes, off: int, top_level: bool):
        if op == 0x03:
            (sid,) = struct.unpack_from("<H", body, 0)
            name, p = _string(body, 2)
            enc, p = _string(body, p)
            (n,) = struct.unpack_from("<I", body, p)
            data = body[p + 4: p + 4 + n].decode()
            self.schemas[sid] = (name, enc, data)
            yield "schema", (name, enc, data)
        elif op == 0x04:
            cid, sid = struct.unpack_from("<HH", body, 0)
            topic, p = _string(body, 4)
            enc, p = _string(body, p)
            schema = self.schemas.get(sid)
            ch = _Channel(topic, schema[0] if schema else "", enc)
            self.channels[cid] = ch
            yield "channel", ch
        elif op == 0x05:
            if self.channels_only:
                return
            cid, _seq, log_time, _pub = struct.unpack_from("<HIQQ", body, 0)
            ch = self.channels.get(cid)
            if ch is None:
                self._bad(f"byte {off}", f"message on unknown channel {cid}")
                return
            yield "message", (ch, log_time, body[22:], f"{self.name} @ byte {off}", cid, off + 9 + len(body))
        elif op == 0x06 and top_level:
            yield from self._chunk(body, off)

    def _chunk(self, body: bytes, off: int):
        _start, _end, usize, crc = struct.unpack_from("<QQQI", body, 0)
        comp, p = _string(body, 28)
        (clen,) = struct.unpack_from("<Q", body, p)
        data = body[p + 8: p + 8 + clen]
        if len(data) != clen:
            self._bad(f"byte {off}", "chunk shorter than its declared length")
            return
        try:
            if comp == "":
                raw = data
            elif comp == "zstd":
                import zstandard

                raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=usize)
            elif comp == "lz4":
                import lz4.frame

                raw = lz4.frame.decompress(data)
            else:
                self._bad(f"byte {off}", f"chunk compression '{comp}' is not supported")
                return
        except Exception as exc:
            self._bad(f"byte {off}", f"chunk does not decompress ({comp}): {exc}")
            return
        if len(raw) != usize:
            self._bad(f"byte {off}", f"chunk decompresses to {len(raw)} bytes, header says {usize}")
            return
        if crc and crc32(raw) != crc:
            self._bad(f"byte {off}", "chunk checksum mismatch: chunk skipped")
            return
        q = 0
        base = off + 9 + p + 8
        while q < len(raw):
            if len(raw) - q < 9:
                self._bad(f"byte {base + q}", "truncated record inside a chunk")
                return
            op = raw[q]
            (length,) = struct.unpack_from("<Q", raw, q + 1)
            if length > len(raw) - q - 9:
                self._bad(f"byte {base + q}", f"record inside a chunk runs past the chunk's end (opcode 0x{op:02x}): rest of the chunk skipped")
                return
            try:
                yield from self._record(op, raw[q + 9: q + 9 + length], base + q, top_level=False)
            except (struct.error, UnicodeDecodeError, ValueError, IndexError) as exc:
                self._bad(f"byte {base + q}", f"malformed record inside a chunk (opcode 0x{op:02x}): {exc}")
            q += 9 + length


_FETCH_BYTES = 16 << 20  # sqlite3: the data of one fetch (a batch of rows) stays under this


def _by_size(keys: list) -> Iterator[list]:
    """Consecutive runs of (timestamp, id, topic_id, size) keys whose data add up to at most
    ``_FETCH_BYTES`` (one row at least)."""
    batch, total = [], 0
    for k in keys:
        size = int(k[3] or 0)
        if batch and total + size > _FETCH_BYTES:
            yield batch
            batch, total = [], 0
        batch.append(k)
        total += size
    if batch:
        yield batch


def _string(buf: bytes, p: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, p)
    if p + 4 + n > len(buf):
        raise ValueError("string runs past the record")
    return buf[p + 4: p + 4 + n].decode(), p + 4 + n


@dataclass
class _Span:
    """A time-ranged piece of an mcap file: one chunk, or a run of messages outside chunks."""

    kind: str  # "chunk" | "run"
    start_ns: int
    end_ns: int
    offset: int  # the chunk record's (or the run's first record's) byte offset
    end_offset: int  # run: the byte after its last record
    channels: frozenset[int] | None  # channel ids it holds; None: not known
    reported: bool = False  # its damage has been reported once


_RUN_BYTES = 4 << 20


class _McapIndex:
    """The pieces of one mcap file with their time ranges, and every schema and channel.

    From the summary when the file has a usable one (footer, summary section with chunk
    indexes, and a data section that a header-only walk finds to hold no message outside the
    indexed chunks); otherwise from a first pass that decompresses each chunk once, reports the
    damage it meets and notes each chunk's real time range (a truncated bag, a writer that wrote
    no summary or no chunks).
    """

    def __init__(self, path: Path, name: str, broken: list[BrokenRecord]) -> None:
        self.path = path
        self.name = name
        self.broken = broken
        self.spans: list[_Span] = []
        self.scanner = _McapScanner(path, name, broken)
        self.from_summary = False
        try:
            self.from_summary = self._from_summary()
        except (OSError, struct.error, UnicodeDecodeError, ValueError, IndexError):
            self.from_summary = False
        if not self.from_summary:
            self.scanner.schemas.clear()
            self.scanner.channels.clear()
            self.spans = []
            self._from_scan()

    def _from_summary(self) -> bool:
        size = self.path.stat().st_size
        if size < 8 + 29 + 8:
            return False
        with open(self.path, "rb") as f:
            f.seek(size - 8)
            if f.read(8) != MCAP_MAGIC:
                return False
            f.seek(size - 8 - 29)
            foot = f.read(29)
            if foot[0] != 0x02 or struct.unpack_from("<Q", foot, 1)[0] != 20:
                return False
            summary_start, _summary_offsets, _crc = struct.unpack_from("<QQI", foot, 9)
            if not 8 <= summary_start <= size - 37:
                return False
            f.seek(summary_start)
            summary = f.read(size - 37 - summary_start)
            spans = []
            q = 0
            while q < len(summary):
                op = summary[q]
                (length,) = struct.unpack_from("<Q", summary, q + 1)
                body = summary[q + 9: q + 9 + length]
                if len(body) != length:
                    return False
                if op in (0x03, 0x04):
                    for _ in self.scanner._record(op, body, summary_start + q, top_level=False):
                        pass
                elif op == 0x08:
                    start, end, offset, _length = struct.unpack_from("<QQQQ", body, 0)
                    (n,) = struct.unpack_from("<I", body, 32)
                    cids = frozenset(struct.unpack_from("<H", body, 36 + 10 * k)[0] for k in range(n // 10))
                    spans.append(_Span("chunk", start, end, offset, 0, cids or None))
                q += 9 + length
            if not spans:
                return False
            # the data section must hold no message the chunk indexes miss (headers only: no payload is read)
            chunks = set()
            f.seek(8)
            while True:
                off = f.tell()
                if off >= summary_start:
                    break
                head = f.read(9)
                if len(head) < 9:
                    return False
                op = head[0]
                (length,) = struct.unpack_from("<Q", head, 1)
                if off + 9 + length > summary_start:
                    return False
                if op == 0x05:
                    return False
                if op == 0x06:
                    chunks.add(off)
                if op == 0x0F:
                    break
                f.seek(length, 1)
        if chunks != {s.offset for s in spans}:
            return False
        self.spans = spans
        return True

    def _from_scan(self) -> None:
        run: _Span | None = None
        for kind, payload in self.scanner.scan(expand_chunks=False):
            if kind == "chunk":
                run = None
                body, off = payload
                lo, hi, cids = None, None, set()
                for k, p in self.scanner.chunk_records(body, off):
                    if k == "message":
                        t = p[1]
                        lo = t if lo is None or t < lo else lo
                        hi = t if hi is None or t > hi else hi
                        cids.add(p[4])
                if lo is not None:
                    self.spans.append(_Span("chunk", lo, hi, off, 0, frozenset(cids), reported=True))
            elif kind == "message":
                _ch, t, _data, position, cid, end = payload
                off = int(position.rsplit(" ", 1)[1])
                if run is None or end - run.offset > _RUN_BYTES:
                    run = _Span("run", t, t, off, end, frozenset(), reported=True)
                    self.spans.append(run)
                run.start_ns, run.end_ns = min(run.start_ns, t), max(run.end_ns, t)
                run.end_offset = end
                run.channels = run.channels | {cid}

    def records(self, span: _Span, wanted: set[str] | None) -> Iterator[BagRecord]:
        """The messages of one piece, in time order (ties: file order)."""
        scanner = _McapScanner(self.path, self.name, self.broken if not span.reported else [])
        scanner.schemas, scanner.channels = self.scanner.schemas, self.scanner.channels
        span.reported = True
        if span.kind == "chunk":
            items = scanner.read_chunk(span.offset)
        else:
            items = scanner.scan(start=span.offset, end=span.end_offset)
        out = [BagRecord(p[0].topic, p[0].msgtype, p[1], p[2], p[3]) for k, p in items
               if k == "message" and (wanted is None or p[0].topic in wanted)]
        out.sort(key=lambda r: r.timestamp_ns)
        return iter(out)
