"""Recording that never blocks the graph: callbacks only enqueue serialized messages; one
writer thread owns the ``BagWriter``. When the queue is over its byte budget, new messages are
dropped and counted (the graph never waits on the disk). The writer flushes whenever the queue
runs dry for ``flush_seconds`` and at least every ``flush_seconds`` while busy."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from .bagio import BagWriter

_STOP = object()


@dataclass
class RecorderStats:
    received: int = 0
    written: int = 0
    dropped: int = 0
    errors: int = 0
    last_error: str = ""


class Recorder:
    def __init__(self, writer: BagWriter, max_queue_bytes: int = 256 << 20) -> None:
        self.writer = writer
        self.max_queue_bytes = int(max_queue_bytes)
        self.stats = RecorderStats()
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="bag-writer", daemon=True)
        self._thread.start()

    def add_topic(self, topic: str, msgtype: str, qos: str = "") -> None:
        """Declared in order with the messages (the writer thread applies it)."""
        self._q.put(("topic", topic, msgtype, qos))

    def put(self, topic: str, timestamp_ns: int, data: bytes) -> bool:
        """Enqueue one serialized message; never blocks. False when dropped (queue full or closed)."""
        n = len(data)
        with self._lock:
            self.stats.received += 1
            if self._closed or self._queued_bytes + n > self.max_queue_bytes:
                self.stats.dropped += 1
                return False
            self._queued_bytes += n
        self._q.put(("msg", topic, int(timestamp_ns), data))
        return True

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def _run(self) -> None:
        flush_s = self.writer.flush_seconds
        while True:
            try:
                item = self._q.get(timeout=flush_s)
            except queue.Empty:
                self._safe(self.writer.flush)
                continue
            if item is _STOP:
                # closed here: sqlite3 connections belong to the thread that opened them
                self._safe(self.writer.close)
                return
            if item[0] == "topic":
                self._safe(self.writer.add_topic, item[1], item[2], item[3])
                continue
            _, topic, ts, data = item
            with self._lock:
                self._queued_bytes -= len(data)
            if self._safe(self.writer.write, topic, ts, data):
                self.stats.written += 1

    def _safe(self, fn, *args) -> bool:
        try:
            fn(*args)
            return True
        except Exception as exc:  # a bad message must not kill the recording
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            return False

    def close(self, timeout: float = 30.0) -> RecorderStats:
        """Write what is queued, close the bag (metadata.yaml complete)."""
        with self._lock:
            if self._closed:
                return self.stats
            self._closed = True
        self._q.put(_STOP)
        self._thread.join(timeout)
        return self.stats
