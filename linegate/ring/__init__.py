"""Shared-memory frame ring: zero-copy hand-off of frames between processes."""

from linegate.ring.frame_ring import (
    FrameMeta,
    FrameRing,
    RingConsumer,
    RingGeometry,
    RingHandle,
    RingProducer,
    remove_stale,
    ring_path,
)
from linegate.ring.layout import DropReason

__all__ = [
    "DropReason",
    "FrameMeta",
    "FrameRing",
    "RingConsumer",
    "RingGeometry",
    "RingHandle",
    "RingProducer",
    "remove_stale",
    "ring_path",
]
