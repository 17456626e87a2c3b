"""The archive directory on real file systems: cap, age, restart, unwritable, read-only, full."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from linegate.archive import ArchiveSection, ArchiveStore
from linegate.archive.settings import ArchiveFormat
from tests.archive.helpers import RecordingLog, noise, remount, tmpfs

DAY_NS = 86_400 * 10**9


def make(directory: Path, max_bytes: int = 10**9, max_age_s: float = 3600.0, fmt: ArchiveFormat = "npy",
         log: RecordingLog | None = None) -> ArchiveStore:  # fmt: skip
    return ArchiveStore(directory, max_bytes=max_bytes, max_age_s=max_age_s, fmt=fmt, log=log or RecordingLog())


def write(store: ArchiveStore, part: int, shape: tuple[int, ...] = (32, 32), verdict: str = "reject") -> bool:
    meta = {"part_id": part, "verdict": verdict, "scores": {"scratch": 0.9}, "model": "m1"}
    return store.write(noise(shape, part), meta, wall_ns=time.time_ns(), pixel_format="Mono8")


def on_disk(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in on_disk(root))


def stems(root: Path) -> set[str]:
    return {p.stem for p in on_disk(root)}


def test_png_entry_holds_the_pixels_and_a_sidecar_with_the_metadata(tmp_path: Path) -> None:
    """<dir>/<YYYYMMDD>/<part>_<verdict>_<seq>.png in RGB order (BGR swapped), and its .json sidecar."""
    store = make(tmp_path, fmt="png")
    bgr = noise((24, 40, 3), 1)
    wall_ns = time.time_ns()
    assert store.write(bgr, {"part_id": 41, "verdict": "reject", "scores": {"a": 0.5}, "model": "m1",
                             "t_acquired_ns": 5}, wall_ns=wall_ns, pixel_format="BGR8")  # fmt: skip
    day = time.strftime("%Y%m%d", time.gmtime(wall_ns / 1e9))
    assert [p.relative_to(tmp_path).as_posix() for p in on_disk(tmp_path)] == [
        f"{day}/41_reject_00000000.json", f"{day}/41_reject_00000000.png"
    ]  # fmt: skip
    with Image.open(tmp_path / day / "41_reject_00000000.png") as img:
        assert img.mode == "RGB" and np.array_equal(np.asarray(img), bgr[:, :, ::-1])
    sidecar = json.loads((tmp_path / day / "41_reject_00000000.json").read_text())
    assert sidecar["scores"] == {"a": 0.5} and sidecar["model"] == "m1" and sidecar["t_acquired_ns"] == 5
    assert sidecar["archive"]["image"] == "41_reject_00000000.png" and sidecar["archive"]["shape"] == [24, 40, 3]
    assert store.stats()["archive_bytes"] == disk_bytes(tmp_path)


def test_odd_part_ids_make_safe_file_names(tmp_path: Path) -> None:
    store = make(tmp_path)
    assert store.write(noise((4, 4), 0), {"part_id": "../a_b/c", "verdict": None}, wall_ns=time.time_ns(),
                       pixel_format="Mono8")  # fmt: skip
    assert {p.name for p in on_disk(tmp_path)} == {"a-b-c_None_00000000.npy", "a-b-c_None_00000000.json"}


def test_stays_under_its_cap_after_writing_far_more_than_it(tmp_path: Path) -> None:
    """Writing ~10x the cap keeps the directory at or under it; the newest entries are the ones kept."""
    cap = 20_000
    store = make(tmp_path, max_bytes=cap)
    for part in range(120):
        assert write(store, part)
        assert disk_bytes(tmp_path) <= cap
    stats = store.stats()
    assert stats["written"] == 120 and stats["evicted"] == 120 - stats["archive_files"] > 90
    assert stats["archive_bytes"] == disk_bytes(tmp_path) and stats["written_bytes"] > 8 * cap
    kept = sorted(int(s.split("_")[0]) for s in stems(tmp_path))
    assert kept == list(range(120 - stats["archive_files"], 120))
    assert stats["dropped_write_error"] == 0


def test_an_image_larger_than_the_cap_is_dropped_and_counted(tmp_path: Path) -> None:
    store = make(tmp_path, max_bytes=5000)
    assert not write(store, 1, shape=(100, 100))
    assert store.stats()["dropped_write_error.larger_than_cap"] == 1 and on_disk(tmp_path) == []


def test_old_entries_expire_and_a_restart_rescans_the_cap_and_the_age(tmp_path: Path) -> None:
    """A restarted store finds what is there: the total is kept, entries past max_age go, sequence
    numbers run on (nothing overwritten), and a smaller cap evicts at once; temp files are removed."""
    first = make(tmp_path, max_age_s=2 * 86_400)
    for part in range(6):
        write(first, part)
    old = time.time() - 3 * 86_400
    for p in on_disk(tmp_path):
        if int(p.name.split("_")[0]) < 2:
            os.utime(p, (old, old))
    leftover = next(iter(on_disk(tmp_path))).parent / ".tmp-9_reject_00000099.npy"
    leftover.write_bytes(b"half")
    (tmp_path / "notes.txt").write_text("not ours")

    second = make(tmp_path, max_age_s=2 * 86_400)
    second.scan()
    assert sorted(int(s.split("_")[0]) for s in stems(tmp_path) if s != "notes") == [2, 3, 4, 5]
    assert second.stats()["evicted"] == 2 and second.files == 4 and not leftover.exists()
    assert second.total_bytes == disk_bytes(tmp_path) - len("not ours")
    write(second, 6)
    assert any(s.endswith("_00000006") for s in stems(tmp_path))

    per_entry = second.total_bytes // second.files
    third = make(tmp_path, max_bytes=per_entry * 2 + 10, max_age_s=2 * 86_400)
    third.scan()
    assert third.files == 2 and disk_bytes(tmp_path) - len("not ours") <= per_entry * 2 + 10
    assert sorted(int(s.split("_")[0]) for s in stems(tmp_path) if s != "notes") == [5, 6]
    assert third.expire(now_ns=time.time_ns() + 3 * DAY_NS) == 2 and third.files == 0
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # emptied day folders go too


def test_a_directory_under_a_regular_file_drops_and_counts_never_raises(tmp_path: Path) -> None:
    """ENOTDIR on every write (root ignores permission bits, a file in the path does not): dropped,
    counted by reason, one warning for the run of failures."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    log = RecordingLog()
    store = make(blocker / "archive", log=log)
    store.scan()
    assert [write(store, part) for part in range(5)] == [False] * 5
    stats = store.stats()
    assert stats["dropped_write_error"] == stats["dropped_write_error.ENOTDIR"] == 5 and stats["written"] == 0
    assert log.events("warning") == ["archive_scan_failed", "archive_write_failed"]
    assert on_disk(tmp_path) == [blocker]


def test_a_read_only_directory_drops_and_counts() -> None:
    """EROFS from a tmpfs mounted read-only."""
    with tmpfs("ro,size=64k") as root:
        log = RecordingLog()
        store = make(root, log=log)
        assert [write(store, part) for part in range(3)] == [False] * 3
        assert store.stats()["dropped_write_error.EROFS"] == 3 and store.stats()["written"] == 0
        assert log.events("warning") == ["archive_write_failed"]


def test_a_full_disk_drops_and_counts_then_recovers_when_space_comes_back() -> None:
    """ENOSPC on a 64 KiB tmpfs (the cap is far larger, so nothing is evicted to make room): the
    writes that do not fit are dropped and counted, no temp file or half entry is left, and after
    the file system grows writes succeed again (logged once as recovered)."""
    with tmpfs("size=64k") as root:
        log = RecordingLog()
        store = make(root, log=log)
        results = [write(store, part, shape=(64, 64)) for part in range(30)]
        stats = store.stats()
        assert stats["written"] == results.count(True) > 0 and stats["dropped_write_error.ENOSPC"] == results.count(
            False
        ) > 0  # fmt: skip
        assert stats["archive_bytes"] == disk_bytes(root)
        assert not [p for p in on_disk(root) if p.name.startswith(".tmp-")]
        assert len(stems(root)) * 2 == len(on_disk(root))  # every image has its sidecar
        assert log.events("warning") == ["archive_write_failed"]
        remount(root, "size=1m")
        assert write(store, 100, shape=(64, 64))
        assert log.events() == ["archive_write_failed", "archive_write_recovered"]


def test_from_settings(tmp_path: Path) -> None:
    settings = ArchiveSection(enabled=True, directory=tmp_path, max_bytes=8192, max_age_hours=1, format="png")
    store = ArchiveStore.from_settings(settings, RecordingLog())
    assert (store.directory, store.max_bytes, store.max_age_ns, store.fmt) == (tmp_path, 8192, 3600 * 10**9, "png")
