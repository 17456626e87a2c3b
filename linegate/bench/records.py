"""Per-frame timestamps of both sides, read back from their records, and matched to the PLC's events.

All times are ``time.monotonic_ns()`` of this host: linegate's ``t_acquired_ns`` (right after the
camera fetch returns), the naive script's ``t_in_hand_ns``, and the PLC simulator's ``t_ns`` (when it
applied a write). One clock, so the differences are latencies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Event = dict[str, Any]


@dataclass
class Frame:
    """One frame of one side: in hand, verdict, and for a reject the first PLC write and its reply."""

    part_id: int
    frame_id: int
    t_hand: int
    t_verdict: int
    reject: bool
    t_sent: int | None = None
    t_reply: int | None = None
    basis: str = "model"


def read_jsonl(path: Path) -> list[Event]:
    """The JSON object lines of *path* (other lines, and a last line cut short, skipped)."""
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def linegate_frames(log: Path) -> tuple[list[Frame], int]:
    """linegate's frame records (with each reject's delivery) and how many were fail-safe verdicts."""
    return frames_of_records(read_jsonl(log))


def frames_of_records(records: Sequence[Event]) -> tuple[list[Frame], int]:
    sent = {r["part_id"]: r for r in records if r.get("event") == "reject_delivered"}
    frames, fail_safe = [], 0
    for r in records:
        if r.get("event") != "frame":
            continue
        fail_safe += r["basis"] != "model"
        d = sent.get(r["part_id"])
        frames.append(Frame(
            r["part_id"], r["frame_id"], r["t_acquired_ns"], r.get("t_done_ns") or r["t_acquired_ns"],
            r["verdict"] == "reject",
            None if d is None else d["t_pulse_ns"],
            None if d is None else d["t_pulse_ns"] + round(d["confirm_ms"] * 1e6),
            r["basis"],
        ))
    return frames, fail_safe


def naive_frames(out: Path) -> list[Frame]:
    """The naive script's output (one JSON line per frame)."""
    return [
        Frame(r["part_id"], r["frame_id"], r["t_in_hand_ns"], r["t_verdict_ns"], r["verdict"] == "reject",
              r.get("t_sent_ns"), r.get("t_on_ns"))
        for r in read_jsonl(out)
    ]


def plc_times(frames: Sequence[Frame], events: Sequence[Event]) -> dict[int, int]:
    """part id -> when the PLC got its reject. By the part id the PLC saw; by send order if it saw none."""
    if events and all(int(e["part_id"]) != 0 for e in events):
        got: dict[int, int] = {}
        for e in events:
            got.setdefault(int(e["part_id"]), int(e["t_ns"]))
        return got
    sent = sorted((f.t_sent, f.part_id) for f in frames if f.reject and f.t_sent is not None)
    times = sorted(int(e["t_ns"]) for e in events)
    got, i = {}, 0
    for t_sent, part_id in sent:
        while i < len(times) and times[i] < t_sent:
            i += 1
        if i == len(times):
            break
        got[part_id] = times[i]
        i += 1
    return got


def in_window(events: Sequence[Event], t0: int, t1: int) -> list[Event]:
    """The events stamped between *t0* and *t1* (ns, inclusive)."""
    return [e for e in events if t0 <= int(e["t_ns"]) <= t1]


def rising_edges(edges: Sequence[Event], coil: int) -> list[Event]:
    """The simulator's ``coil_edge`` events that switched *coil* ON."""
    return [e for e in edges if int(e["coil"]) == coil and int(e["value"]) == 1]
