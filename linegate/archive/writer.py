"""The archive writer: a daemon thread (in the supervisor) draining the queue into the store."""

from __future__ import annotations

import threading
import time
from typing import Any

from linegate.archive.queue import ArchiveConsumer, ArchiveHandle, ArchiveItem
from linegate.archive.store import ArchiveStore

INTERNAL_ERROR = "internal_error"


class ArchiveWriter:
    """Takes frames off the queue and writes them with *store* until :meth:`stop`.

    A slow or failing disk only slows or fails this thread: the queue fills and the producer's
    offers are dropped (counted), the inference loop never waits for it.
    """

    def __init__(
        self, handle: ArchiveHandle, store: ArchiveStore, *, log: Any, poll_s: float = 0.1, expire_every_s: float = 60.0
    ) -> None:
        self._consumer = ArchiveConsumer(handle)
        self._store = store
        self._log = log
        self._poll_s = poll_s
        self._expire_every_ns = int(expire_every_s * 1e9)
        self._stop = threading.Event()
        self._drain_deadline_ns = 0
        self._thread = threading.Thread(target=self._run, name="archive-writer", daemon=True)
        self._internal_errors = 0
        self._final_counters: dict[str, int] | None = None  # the queue's, once the consumer is closed

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float) -> bool:
        """Write what is queued (for up to *timeout_s*), then end the thread; True if it ended in time
        (a write stuck on the disk leaves the daemon thread behind, and False)."""
        self._drain_deadline_ns = time.monotonic_ns() + int(timeout_s * 1e9)
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._log.warning("archive_writer_stuck", queued=self._consumer.counters()["queued"])
            return False
        if self._final_counters is None:
            self._final_counters = self._consumer.counters()
            self._consumer.close()
        return True

    def _run(self) -> None:
        try:
            self._store.scan()
        except Exception as exc:  # scan handles OSError itself; anything else must not end the archive
            self._internal(exc)
        next_expire_ns = time.monotonic_ns() + self._expire_every_ns
        while not self._stop.is_set():
            item = self._consumer.take(self._poll_s)
            if item is not None:
                self._write(item)
            if time.monotonic_ns() >= next_expire_ns:
                self._store.expire()
                next_expire_ns = time.monotonic_ns() + self._expire_every_ns
        while time.monotonic_ns() < self._drain_deadline_ns and (item := self._consumer.take(0)) is not None:
            self._write(item)

    def _write(self, item: ArchiveItem) -> None:
        try:
            self._store.write(item.pixels, item.meta, wall_ns=item.wall_ns, pixel_format=item.pixel_format)
        except Exception as exc:  # the store drops and counts I/O errors; this is for bugs
            self._internal(exc)
        finally:
            self._consumer.done(item.slot)

    def _internal(self, exc: Exception) -> None:
        self._internal_errors += 1
        if self._internal_errors == 1:
            self._log.error("archive_writer_error", error=f"{type(exc).__name__}: {exc}", exc_info=exc)

    def stats(self) -> dict[str, int]:
        """For metrics: the producer's counters (``offered``, ``accepted``, ``dropped_queue_full``,
        ``dropped_invalid``, ``recovered``, ``queued``) and the store's (``written``,
        ``written_bytes``, ``evicted``, ``evicted_bytes``, ``archive_bytes``, ``archive_files``,
        ``dropped_write_error`` and one ``dropped_write_error.<REASON>`` per reason seen)."""
        queue = self._final_counters if self._final_counters is not None else self._consumer.counters()
        out = {
            "offered": queue["offered"],
            "accepted": queue["accepted"],
            "dropped_queue_full": queue["dropped_full"],
            "dropped_invalid": queue["dropped_invalid"],
            "recovered": queue["recovered"],
            "queued": queue["queued"],
            **self._store.stats(),
        }
        if self._internal_errors:
            out["dropped_write_error"] += self._internal_errors
            out[f"dropped_write_error.{INTERNAL_ERROR}"] = self._internal_errors
        return out
