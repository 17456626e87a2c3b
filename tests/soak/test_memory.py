"""Reading a process tree's memory from /proc: the real one, and a fake /proc for the edge cases."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from linegate.soak.memory import children, cmdline, parent_of, read_memory, tree


def test_own_memory_is_read() -> None:
    m = read_memory(os.getpid())
    assert m is not None and m.rss_kb > 1000
    assert m.pss_kb is None or 0 < m.pss_kb <= m.rss_kb


def test_a_gone_process_reads_as_none() -> None:
    assert read_memory(999_999_999) is None


def test_tree_finds_grandchildren() -> None:
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); " \
           "time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        end = time.monotonic() + 10

        def execed() -> bool:  # a child is in /proc from its fork on, its command line only after its exec
            pids = tree(proc.pid)
            return len(pids) >= 2 and "time.sleep(30)" in cmdline(pids[1])

        while not execed() and time.monotonic() < end:
            time.sleep(0.05)
        pids = tree(proc.pid)
        assert pids[0] == proc.pid and len(pids) == 2
        assert parent_of(pids[1]) == proc.pid
        assert "time.sleep(30)" in cmdline(pids[1])
    finally:
        for pid in tree(proc.pid)[1:]:
            os.kill(pid, 9)
        proc.kill()
        proc.wait()


def _fake(proc: Path, pid: int, ppid: int, comm: str, rss_kb: int | None = None) -> None:
    d = proc / str(pid)
    d.mkdir()
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1\n")
    (d / "status").write_text(f"Name:\t{comm}\n" + (f"VmRSS:\t  {rss_kb} kB\n" if rss_kb is not None else ""))


def test_fake_proc_without_children_files_is_scanned(tmp_path: Path) -> None:
    _fake(tmp_path, 10, 1, "super visor")
    _fake(tmp_path, 11, 10, "a) S 99 (odd", rss_kb=2048)  # a command name with ") " in it
    _fake(tmp_path, 12, 11, "grandchild", rss_kb=100)
    _fake(tmp_path, 13, 1, "unrelated", rss_kb=100)
    (tmp_path / "self").mkdir()
    assert parent_of(11, tmp_path) == 10
    assert children(10, tmp_path) == [11]
    assert tree(10, tmp_path) == [10, 11, 12]
    m = read_memory(11, tmp_path)
    assert m is not None and (m.rss_kb, m.pss_kb) == (2048, None)
    assert read_memory(10, tmp_path) is None  # no VmRSS: a zombie or a kernel thread
    (tmp_path / "12" / "smaps_rollup").write_text("Rss:  100 kB\nPss:   40 kB\n")
    assert read_memory(12, tmp_path) == type(m)(12, 100, 40)
