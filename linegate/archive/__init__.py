"""Reject image archive: rejected frames and a 1-in-N sample of passes, with their metadata,
written off the hot path under a byte cap and an age limit; drops are counted, never waited for.

Wiring (supervisor creates, inference offers, a supervisor thread writes)::

    queue = ArchiveQueue.create(geometry, settings.queue_frames, instance=name)  # supervisor
    writer = ArchiveWriter(queue.handle, ArchiveStore.from_settings(settings, log), log=log)
    writer.start()
    # Process(args=(..., queue.handle)) -> in the inference worker:
    producer, sampler = ArchiveProducer(handle), ArchiveSampler(settings.passes_one_in)
    if sampler.wants(reject): producer.offer(pixels, {"part_id": ..., "verdict": "reject", ...})
    # at shutdown: writer.stop(timeout_s); writer.stats(); queue.close()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from linegate.archive.queue import ArchiveConsumer, ArchiveHandle, ArchiveItem, ArchiveProducer, ArchiveQueue
    from linegate.archive.sampling import ArchiveSampler
    from linegate.archive.settings import ArchiveSection
    from linegate.archive.store import ArchiveStore
    from linegate.archive.writer import ArchiveWriter

_MODULE_OF = {
    "ArchiveConsumer": "queue", "ArchiveHandle": "queue", "ArchiveItem": "queue", "ArchiveProducer": "queue",
    "ArchiveQueue": "queue", "ArchiveSampler": "sampling", "ArchiveSection": "settings", "ArchiveStore": "store",
    "ArchiveWriter": "writer",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    """Imported on first use: the configuration needs only ``settings`` (no numpy, no Pillow)."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'linegate.archive' has no attribute {name!r}")
    return getattr(importlib.import_module(f"linegate.archive.{_MODULE_OF[name]}"), name)


__all__ = [
    "ArchiveConsumer",
    "ArchiveHandle",
    "ArchiveItem",
    "ArchiveProducer",
    "ArchiveQueue",
    "ArchiveSampler",
    "ArchiveSection",
    "ArchiveStore",
    "ArchiveWriter",
]
