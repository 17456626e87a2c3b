"""The compiled reserve-and-copy writes exactly what reserve + copy writes, or nothing at all."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Iterator

import numpy as np
import pytest

from linegate.ring import FrameRing, RingGeometry, RingProducer

GEOMETRY = RingGeometry(48, 64, 1, "Mono8")
SLOTS = 4


@pytest.fixture
def pair() -> Iterator[tuple[RingProducer, RingProducer]]:
    """Two empty rings of one geometry: the first written through the compiled call, the second
    through the Python path."""
    ctx = mp.get_context("spawn")
    rings = [
        FrameRing.create(
            ctx,
            instance=f"cw{os.getpid()}{name}",
            geometry=GEOMETRY,
            slots=SLOTS,
            journal_size=8,
            when_full="drop_newest",
        )
        for name in ("a", "b")
    ]
    compiled, python = RingProducer(rings[0].handle), RingProducer(rings[1].handle, compiled=False)
    yield compiled, python
    for producer in (compiled, python):
        producer.close()
    for ring in rings:
        ring.close()


def mapping(producer: RingProducer) -> bytes:
    return bytes(producer._m.mm)


def frame(value: int) -> np.ndarray:
    pixels = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) * 7 + value).astype(np.uint8)
    pixels.setflags(write=False)  # as a camera's buffer
    return pixels


def test_compiled_write_matches_reserve_and_copy_byte_for_byte(pair: tuple[RingProducer, RingProducer]) -> None:
    """Frames with part ids past 2**53 and a full ring: after every step both mappings are equal;
    when the ring is full the compiled call declines, changing nothing, and reserve journals the frame."""
    compiled, python = pair
    parts = [1, 2**62 + 3, 7, 2**40 + 5, 9, 10]  # 7 and 2**40 + 5 below the highest: last_part_id keeps it
    for i, part in enumerate(parts):
        pixels, t_acquired = frame(i), 10**12 + i
        before = mapping(compiled)
        slot = compiled.reserve_and_copy(100 + i, part, t_acquired, pixels)
        if i < SLOTS:
            assert slot is not None
        else:  # full (nobody consumes): declined with nothing written, then the Python path
            assert slot is None and mapping(compiled) == before
            assert compiled.reserve(100 + i, part, t_acquired)[1] is None
        _seq, expected = python.reserve(100 + i, part, t_acquired)
        if expected is not None:
            np.copyto(python.pixels(expected), pixels)
        assert slot == expected
        assert mapping(compiled) == mapping(python), f"after frame {i}"
        if slot is not None:
            for producer in (compiled, python):
                assert producer.publish(slot, 2 * 10**12 + i)
            assert mapping(compiled) == mapping(python), f"after publishing frame {i}"


def test_compiled_write_declines_while_the_lock_is_held(pair: tuple[RingProducer, RingProducer]) -> None:
    """The ring's lock held elsewhere: nothing is written, the holder's pid kept with the lock is
    left alone, and the caller is told (it waits in reserve). A write leaves the lock free, no
    holder named."""
    compiled, _ = pair
    before = mapping(compiled)
    assert compiled._lock.acquire(timeout=1.0)
    try:
        assert compiled.reserve_and_copy(1, 1, 1, frame(0)) is None
        assert mapping(compiled) == before
        assert compiled._lock.owner == os.getpid()
    finally:
        compiled._lock.release()
    assert compiled.reserve_and_copy(1, 1, 1, frame(0)) == 0
    assert compiled._lock.owner == 0 and compiled._lock.acquire(timeout=0)
    compiled._lock.release()


def test_compiled_write_takes_only_whole_contiguous_frames(pair: tuple[RingProducer, RingProducer]) -> None:
    """Strided, wrongly shaped or wrongly typed pixels, or a producer made without it: declined,
    nothing written."""
    compiled, python = pair
    before = mapping(compiled)
    wide = np.zeros((48, 128), np.uint8)
    for pixels in (wide[:, ::2], np.zeros((48, 63), np.uint8), np.zeros((48, 64), np.uint16)):
        assert compiled.reserve_and_copy(1, 1, 1, pixels) is None
    assert mapping(compiled) == before
    assert python.reserve_and_copy(1, 1, 1, frame(0)) is None


def test_without_numba_the_producer_says_why_and_the_python_path_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    """numba failing in this process (absent, or not compiling here): the producer still works, every
    frame through reserve + copy, and it says why the compiled call is not there."""
    from linegate.ring import compiled_write

    def no_numba() -> None:
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(compiled_write, "compiled", no_numba)
    ring = FrameRing.create(
        mp.get_context("spawn"),
        instance=f"cw{os.getpid()}c",
        geometry=GEOMETRY,
        slots=SLOTS,
        journal_size=8,
        when_full="drop_newest",
    )
    producer = RingProducer(ring.handle)
    try:
        assert producer.compiled_fallback == "ImportError: No module named 'numba'"
        assert producer.reserve_and_copy(1, 1, 1, frame(0)) is None
        assert producer.reserve(1, 1, 1)[1] == 0
    finally:
        producer.close()
        ring.close()
