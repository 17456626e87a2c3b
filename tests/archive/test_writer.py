"""The writer thread with a real spawned producer: sampling, drain on stop, stuck and failing disks.

Latency is not timed here (see tests/bench/bench_archive.py): the producer's side of a stuck or
failing writer shows in the counts, offers refused at once and counted as drops, every one
accounted for."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.archive import ArchiveProducer, ArchiveQueue, ArchiveStore, ArchiveWriter
from linegate.ring import RingGeometry
from tests.archive.helpers import RecordingLog, produce, tmpfs

CTX = mp.get_context("spawn")
SHAPE = (48, 64)
GEOMETRY = RingGeometry(*SHAPE, 1, "Mono8")


class StalledStore(ArchiveStore):
    """A real store whose writes hang until released: a disk that stopped answering."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.entered = threading.Event()

    def write(self, pixels: npt.NDArray[np.uint8], meta: dict[str, Any], *, wall_ns: int, pixel_format: str) -> bool:
        self.entered.set()
        self.release.wait(30)
        return super().write(pixels, meta, wall_ns=wall_ns, pixel_format=pixel_format)


def store_in(
    directory: Path, cls: type[ArchiveStore] = ArchiveStore, max_bytes: int = 10**9, log: RecordingLog | None = None
) -> ArchiveStore:
    return cls(directory, max_bytes=max_bytes, max_age_s=3600, fmt="png", log=log or RecordingLog())


def run_producer(
    queue: ArchiveQueue, frames: int, passes_one_in: int, shape: tuple[int, ...] = SHAPE, noisy: bool = False
) -> list[bool | None]:
    reader, writer = CTX.Pipe(duplex=False)
    proc = CTX.Process(target=produce, args=(queue.handle, frames, passes_one_in, shape, writer, noisy))
    proc.start()
    writer.close()
    try:
        results: list[bool | None] = reader.recv()
    finally:
        proc.join(20)
    assert proc.exitcode == 0
    return results


def archived_parts(root: Path) -> list[int]:
    return sorted(int(p.name.split("_")[0]) for p in root.rglob("*.png"))


def accounted(stats: dict[str, int]) -> None:
    """Every offer is written, dropped for a full queue or dropped by the disk; nothing vanishes."""
    assert stats["offered"] == stats["accepted"] + stats["dropped_queue_full"] + stats["dropped_invalid"]
    assert stats["accepted"] == stats["written"] + stats["dropped_write_error"] + stats["queued"]


def test_rejects_and_sampled_passes_are_written_and_stop_drains_the_queue(tmp_path: Path) -> None:
    """A child offers 30 frames (10 rejects, 1 in 4 of the 20 passes) while the writer is not yet
    running; start then stop at once still writes every queued one."""
    with ArchiveQueue.create(GEOMETRY, 16, instance="tw") as queue:
        writer = ArchiveWriter(queue.handle, store_in(tmp_path), log=RecordingLog())
        results = run_producer(queue, 30, passes_one_in=4)
        writer.start()
        assert writer.stop(10)
        stats = writer.stats()
    offered = [i for i, r in enumerate(results) if r is not None]
    assert len(offered) == 10 + 5 and all(results[i] for i in offered)
    assert archived_parts(tmp_path) == offered
    assert stats["written"] == 15 and stats["queued"] == 0 and stats["dropped_queue_full"] == 0
    accounted(stats)


def test_a_stuck_writer_never_holds_up_the_producer(tmp_path: Path) -> None:
    """The disk hangs on the first write: the child's offers beyond the free slots return False and
    are counted, the child finishes all 40 offers, and once the disk answers the queued ones are written."""
    with ArchiveQueue.create(GEOMETRY, 4, instance="tw") as queue:
        store = store_in(tmp_path, StalledStore)
        assert isinstance(store, StalledStore)
        writer = ArchiveWriter(queue.handle, store, log=RecordingLog())
        writer.start()
        producer = ArchiveProducer(queue.handle)
        assert producer.offer(np.zeros(SHAPE, np.uint8), {"part_id": 999, "verdict": "reject"})
        producer.close()
        assert store.entered.wait(10)  # the writer is stuck inside a write
        results = run_producer(queue, 40, passes_one_in=1)
        during = writer.stats()
        store.release.set()
        assert writer.stop(10)
        stats = writer.stats()
    assert results == [True] * 3 + [False] * 37  # the writer holds the 4th slot (part 999) while stuck
    assert during["dropped_queue_full"] == 37 and during["written"] == 0 and during["queued"] == 3
    assert stats["written"] == 4 and archived_parts(tmp_path) == [0, 1, 2, 999]
    accounted(stats)


def test_an_unwritable_directory_counts_every_drop(tmp_path: Path) -> None:
    """The archive root lies under a regular file (ENOTDIR even for root): nothing written, each
    frame dropped by the queue or counted by reason, the producer unaffected."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    log = RecordingLog()
    with ArchiveQueue.create(GEOMETRY, 8, instance="tw") as queue:
        writer = ArchiveWriter(queue.handle, store_in(blocker / "archive", log=log), log=log)
        writer.start()
        results = run_producer(queue, 30, passes_one_in=1)
        assert writer.stop(10)
        stats = writer.stats()
    assert stats["offered"] == 30 and stats["written"] == 0
    assert stats["dropped_write_error.ENOTDIR"] == stats["accepted"] == results.count(True) > 0
    accounted(stats)
    assert "archive_write_failed" in log.events("warning") and not log.events("error")


def test_a_full_directory_counts_every_drop() -> None:
    """A 64 KiB tmpfs holds three 128x128 noise PNGs; the 8-slot queue takes at least 8 of the 40
    offers, so at least 5 hit ENOSPC: counted by reason, the rest dropped by the queue, none lost."""
    shape = (128, 128)
    with tmpfs("size=64k") as root, ArchiveQueue.create(RingGeometry(*shape, 1, "Mono8"), 8, instance="tw") as queue:
        writer = ArchiveWriter(queue.handle, store_in(root), log=RecordingLog())
        writer.start()
        results = run_producer(queue, 40, passes_one_in=1, shape=shape, noisy=True)
        assert writer.stop(10)
        stats = writer.stats()
        on_disk = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert stats["offered"] == 40 and stats["accepted"] == results.count(True) >= 8
    assert stats["written"] > 0 and stats["dropped_write_error.ENOSPC"] >= 5
    assert stats["archive_bytes"] == on_disk
    accounted(stats)


def test_stop_before_start_and_twice(tmp_path: Path) -> None:
    with ArchiveQueue.create(GEOMETRY, 2, instance="tw") as queue:
        writer = ArchiveWriter(queue.handle, store_in(tmp_path), log=RecordingLog(), poll_s=0.01)
        assert writer.stop(1) and writer.stop(1)
        assert writer.stats()["written"] == 0
        other = ArchiveWriter(queue.handle, store_in(tmp_path), log=RecordingLog(), poll_s=0.01)
        other.start()
        time.sleep(0.05)
        assert other.stop(1) and other.stop(1) and not other.running
