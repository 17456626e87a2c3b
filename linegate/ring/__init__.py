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
from linegate.ring.ring_set import FrameSource, RingSet

__all__ = [
    "DropReason",
    "FrameMeta",
    "FrameRing",
    "FrameSource",
    "RingConsumer",
    "RingGeometry",
    "RingHandle",
    "RingProducer",
    "RingSet",
    "remove_stale",
    "ring_path",
]
