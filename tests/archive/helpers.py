"""Test helpers for the archive: a small tmpfs (root only), a log that records, frames, a child producer."""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linegate.archive import ArchiveHandle, ArchiveProducer, ArchiveSampler


class RecordingLog:
    """Stands in for the structlog logger: keeps ``(level, event, fields)``."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def _add(self, level: str, event: str, **fields: Any) -> None:
        self.records.append((level, event, fields))

    def debug(self, event: str, **fields: Any) -> None:
        self._add("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._add("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._add("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._add("error", event, **fields)

    def events(self, level: str | None = None) -> list[str]:
        return [e for lv, e, _ in self.records if level is None or lv == level]


def mount_tmpfs(path: Path, options: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True)


@contextlib.contextmanager
def tmpfs(options: str) -> Iterator[Path]:
    """A fresh tmpfs mounted with *options* (e.g. ``size=64k``, ``ro``); skips the test where it cannot be."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (used to make a full or read-only directory)")
    with tempfile.TemporaryDirectory(prefix="lg-archive-mnt-") as d:
        path = Path(d)
        try:
            mount_tmpfs(path, options)
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"cannot mount a tmpfs here ({exc}); the full/read-only directory cases need one")
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Incompressible pixels, so PNG sizes are predictable."""
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def produce(
    handle: ArchiveHandle, frames: int, passes_one_in: int, shape: tuple[int, ...], results: Any, noisy: bool = False
) -> None:
    """Child process: an inference loop's archive side. Frame *i* is a reject when i % 3 == 0,
    its pixels all equal i % 256 (or noise: incompressible). Sends back the offers' results
    (None: not sampled)."""
    producer = ArchiveProducer(handle)
    sampler = ArchiveSampler(passes_one_in)
    out: list[bool | None] = []
    for i in range(frames):
        reject = i % 3 == 0
        if not sampler.wants(reject):
            out.append(None)
            continue
        meta = {"part_id": i, "verdict": "reject" if reject else "pass", "scores": {"scratch": np.float32(0.25)},
                "model": "m1", "t_acquired_ns": 1000 + i}  # fmt: skip
        pixels = noise(shape, i) if noisy else np.full(shape, i % 256, dtype=np.uint8)
        out.append(producer.offer(pixels, meta))
    results.send(out)
    results.close()
    producer.close()
