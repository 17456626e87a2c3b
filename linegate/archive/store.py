"""The archive directory: atomic image + sidecar writes, kept under a byte cap and an age limit.

Layout: ``<directory>/<YYYYMMDD>/<part_id>_<verdict>_<seq>.<png|npy>`` and, beside each image, a
``.json`` sidecar of the same stem holding the frame's metadata (plus an ``archive`` object: the
image's name, shape, pixel format and the UTC time it was offered). The day is the UTC day the frame
was offered; ``seq`` runs on across days and restarts (continued from the highest one found).

Each file is written to ``.tmp-<name>`` and renamed into place, so a reader never sees half a
file. The image and its sidecar are one entry: evicted together, counted together against
``max_bytes``. The cap is kept before writing (oldest entries go first to make room), so the
directory never holds more than ``max_bytes`` of entries; entries older than ``max_age_s`` go too.
At the first write (or :meth:`ArchiveStore.scan`) the directory is scanned, so a restart keeps the
cap; leftover temp files from a killed run are removed then.

Nothing here raises to the caller for a failing disk: a write that fails (ENOSPC, EACCES, EROFS,
ENOTDIR, any OSError; or an image Pillow cannot encode) drops the image and counts it by reason,
and a warning is logged when the reason changes.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.archive.settings import ArchiveFormat, ArchiveSection

TMP_PREFIX = ".tmp-"
EXTENSIONS = frozenset({".png", ".npy", ".json"})
_DAY = re.compile(r"^\d{8}$")
_STEM = re.compile(r"^[^_]+_[^_]+_(\d+)$")
_UNSAFE = re.compile(r"[^A-Za-z0-9.-]")

ENCODE_ERROR = "encode_error"
LARGER_THAN_CAP = "larger_than_cap"
OVER_CAP = "over_cap"  # could not evict enough (old files not removable)


@dataclass(frozen=True)
class _Entry:
    mtime_ns: int
    day: Path
    stem: str
    names: tuple[str, ...]
    size: int


def _label(value: Any, default: str) -> str:
    """A file-name-safe form of *value* (no ``_``: it separates the name's fields)."""
    text = _UNSAFE.sub("-", str(value))[:64].strip(".-")
    return text or default


def _reason(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def encode(pixels: npt.NDArray[np.uint8], fmt: ArchiveFormat, pixel_format: str) -> bytes:
    """The image file's bytes: PNG (RGB order, zlib level 1) or ``np.save`` of the array as it is."""
    buf = io.BytesIO()
    if fmt == "npy":
        np.save(buf, pixels, allow_pickle=False)
        return buf.getvalue()
    from PIL import Image

    array = pixels
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    elif pixel_format == "BGR8" and array.ndim == 3 and array.shape[2] == 3:
        array = array[:, :, ::-1]
    elif pixel_format == "BGRa8" and array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, [2, 1, 0, 3]]
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _write_atomic(day: Path, name: str, data: bytes) -> None:
    tmp = day / f"{TMP_PREFIX}{name}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, day / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class ArchiveStore:
    """Writes archive entries into *directory*; used by one thread (the writer)."""

    def __init__(self, directory: Path, *, max_bytes: int, max_age_s: float, fmt: ArchiveFormat, log: Any) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_age_ns = int(max_age_s * 1e9)
        self.fmt: ArchiveFormat = fmt
        self._log = log
        self._entries: deque[_Entry] = deque()
        self._per_day: Counter[Path] = Counter()
        self._scanned = False
        self._next_seq = 0
        self._failing: str | None = None
        self.total_bytes = 0
        self.written = 0
        self.written_bytes = 0
        self.evicted = 0
        self.evicted_bytes = 0
        self.dropped: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, settings: ArchiveSection, log: Any) -> ArchiveStore:
        return cls(
            settings.directory, max_bytes=settings.max_bytes, max_age_s=settings.max_age_s, fmt=settings.format,
            log=log,
        )  # fmt: skip

    # -- start -------------------------------------------------------------------------------

    def scan(self) -> None:
        """Take stock of what a previous run left (then expire and evict to the limits)."""
        self._scanned = True
        found: list[_Entry] = []
        try:
            days = [d for d in os.scandir(self.directory) if d.is_dir(follow_symlinks=False) and _DAY.match(d.name)]
            for day in days:
                found.extend(self._scan_day(Path(day.path)))
        except FileNotFoundError:
            pass  # created at the first write
        except OSError as exc:
            self._log.warning("archive_scan_failed", directory=str(self.directory), reason=_reason(exc), error=str(exc))
        found.sort(key=lambda e: (e.mtime_ns, e.stem))
        for entry in found:
            self._add(entry)
            match = _STEM.match(entry.stem)
            if match:
                self._next_seq = max(self._next_seq, int(match.group(1)) + 1)
        self.expire()
        self._evict_until(0)

    def _scan_day(self, day: Path) -> list[_Entry]:
        groups: dict[str, tuple[list[str], int, int]] = {}
        for f in os.scandir(day):
            if not f.is_file(follow_symlinks=False):
                continue
            if f.name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(f.path)
                continue
            stem, ext = os.path.splitext(f.name)
            if ext not in EXTENSIONS or not _STEM.match(stem):
                continue  # not ours: left alone and not counted
            st = f.stat(follow_symlinks=False)
            names, size, mtime = groups.get(stem, ([], 0, 0))
            groups[stem] = ([*names, f.name], size + st.st_size, max(mtime, st.st_mtime_ns))
        return [_Entry(mtime, day, stem, tuple(names), size) for stem, (names, size, mtime) in groups.items()]

    # -- writing -----------------------------------------------------------------------------

    def write(self, pixels: npt.NDArray[np.uint8], meta: dict[str, Any], *, wall_ns: int, pixel_format: str) -> bool:
        """Archive one frame; False if it was dropped (counted in :attr:`dropped` by reason)."""
        if not self._scanned:
            self.scan()
        seq = self._next_seq
        self._next_seq += 1
        stem = f"{_label(meta.get('part_id'), 'unknown')}_{_label(meta.get('verdict'), 'unknown')}_{seq:08d}"
        image_name = f"{stem}.{self.fmt}"
        offered = datetime.fromtimestamp(wall_ns / 1e9, tz=timezone.utc)
        try:
            image = encode(pixels, self.fmt, pixel_format)
            info = {"image": image_name, "shape": list(pixels.shape), "pixel_format": pixel_format,
                    "offered_utc": offered.isoformat(timespec="milliseconds"), "seq": seq}  # fmt: skip
            sidecar = json.dumps({**meta, "archive": info}, default=str).encode()
        except Exception as exc:  # Pillow/numpy refusing an odd array must not stop the writer
            return self._drop(ENCODE_ERROR, f"{type(exc).__name__}: {exc}")
        size = len(image) + len(sidecar)
        if size > self.max_bytes:
            return self._drop(LARGER_THAN_CAP, f"{size} bytes > max_bytes {self.max_bytes}")
        self.expire()
        if not self._evict_until(size):
            return self._drop(OVER_CAP, "older entries could not be removed")
        day = self.directory / offered.strftime("%Y%m%d")
        done: list[str] = []
        try:
            day.mkdir(parents=True, exist_ok=True)
            for name, data in ((image_name, image), (f"{stem}.json", sidecar)):
                _write_atomic(day, name, data)
                done.append(name)
        except OSError as exc:
            for name in done:  # no image without its sidecar
                with contextlib.suppress(OSError):
                    os.unlink(day / name)
            return self._drop(_reason(exc), str(exc))
        self._add(_Entry(time.time_ns(), day, stem, tuple(done), size))
        self.written += 1
        self.written_bytes += size
        if self._failing is not None:
            self._log.info("archive_write_recovered", after=self._failing, dropped=sum(self.dropped.values()))
            self._failing = None
        return True

    def _drop(self, reason: str, detail: str) -> bool:
        self.dropped[reason] += 1
        if reason != self._failing:
            self._log.warning(
                "archive_write_failed", reason=reason, error=detail, directory=str(self.directory),
                dropped=sum(self.dropped.values()),
            )  # fmt: skip
            self._failing = reason
        return False

    # -- limits ------------------------------------------------------------------------------

    def expire(self, now_ns: int | None = None) -> int:
        """Remove entries older than the age limit; returns how many went."""
        cutoff = (time.time_ns() if now_ns is None else now_ns) - self.max_age_ns
        removed = 0
        while self._entries and self._entries[0].mtime_ns < cutoff:
            if not self._evict_oldest():
                break
            removed += 1
        return removed

    def _evict_until(self, incoming: int) -> bool:
        """Evict oldest entries until *incoming* more bytes fit under the cap; False if they cannot."""
        while self._entries and self.total_bytes + incoming > self.max_bytes:
            if not self._evict_oldest():
                break
        return self.total_bytes + incoming <= self.max_bytes

    def _evict_oldest(self) -> bool:
        entry = self._entries[0]
        for name in entry.names:
            try:
                os.unlink(entry.day / name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._drop_evict(entry, exc)
                return False
        self._entries.popleft()
        self.total_bytes -= entry.size
        self.evicted += 1
        self.evicted_bytes += entry.size
        self._per_day[entry.day] -= 1
        if self._per_day[entry.day] <= 0:
            del self._per_day[entry.day]
            with contextlib.suppress(OSError):
                os.rmdir(entry.day)
        return True

    def _drop_evict(self, entry: _Entry, exc: OSError) -> None:
        reason = f"evict_{_reason(exc)}"
        if reason != self._failing:
            self._log.warning("archive_evict_failed", reason=reason, error=str(exc), entry=str(entry.day / entry.stem))
            self._failing = reason

    def _add(self, entry: _Entry) -> None:
        self._entries.append(entry)
        self._per_day[entry.day] += 1
        self.total_bytes += entry.size

    # -- reading -----------------------------------------------------------------------------

    @property
    def files(self) -> int:
        """Entries (image + sidecar) in the archive."""
        return len(self._entries)

    def stats(self) -> dict[str, int]:
        """Counters; write drops as ``dropped_write_error`` (total) and ``dropped_write_error.<REASON>``."""
        dropped = dict(self.dropped)
        return {
            "written": self.written,
            "written_bytes": self.written_bytes,
            "evicted": self.evicted,
            "evicted_bytes": self.evicted_bytes,
            "archive_bytes": self.total_bytes,
            "archive_files": self.files,
            "dropped_write_error": sum(dropped.values()),
            **{f"dropped_write_error.{reason}": n for reason, n in sorted(dropped.items())},
        }
