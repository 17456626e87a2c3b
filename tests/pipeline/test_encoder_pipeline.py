"""Encoder tracking inside a whole `linegate run`: camera simulator -> ring -> model -> PLC worker,
which fires each reject when the belt, read from `linegate plc-sim --encoder-cps`, has carried its part
from the camera to the ejector.

The simulator's encoder is exact (start + cps * (t - t0)) and it stamps every coil edge with its count,
so each pulse is checked at the PLC against where its part was when its frame was acquired (the frame
record's ``t_acquired_ns``): the whole chain (acquisition time, the ring, the verdict's hand-off, the
part's placement on the belt, the fire decision and the write) is in that one number.
"""

from __future__ import annotations

import time
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from linegate.config.loader import load_config
from linegate.demo.runner import PlcSimProcess, free_port, sim_args
from tests.pipeline.harness import (
    LinegateRun,
    assert_every_frame_and_reject_accounted,
    demo_config_file,
    records,
    run_linegate,
)

pytestmark = pytest.mark.peer

FRAMES = 300
CPS = 20_000  # counts per second: 20 per ms
EJECTOR = 2_000  # 100 ms of belt from the camera to the ejector
TOLERANCE = 200  # 10 ms
MAX_READ_MS = 10.0  # the default
SLACK = CPS * MAX_READ_MS / 2 / 1000  # a reading's moment, and so a part's position, is known to this


def position(listening: dict, t_ns: int) -> float:  # type: ignore[type-arg]
    return float(listening["encoder_start"]) + listening["encoder_cps"] * (t_ns - listening["encoder_t0_ns"]) / 1e9


TRACKING = (
    f'\n[plc.tracking]\nby = "encoder"\nejector_counts = {EJECTOR}\ntolerance_counts = {TOLERANCE}\npoll_ms = 2.0\n'
)
S7_SCAN_MS = 5.0  # the S7 simulator serves the PLC block as of its last scan, as a real PLC's DB
S7_LINK = (
    '\n[plc.s7]\nhost = "127.0.0.1"\nport = {port}\ntimeout_ms = 50.0\ndb = 100\nbyte_base = 0\nreject_byte = 60\n'
)


@pytest.mark.parametrize("protocol", ["modbus", "s7"])
def test_a_whole_run_fires_each_reject_where_its_part_meets_the_ejector(tmp_path: Path, protocol: str) -> None:
    """300 frames of the demo with tracking.by = "encoder": every frame one record, every reject
    exactly one pulse or one undelivered report, and each pulse lands at the PLC when the belt has
    moved ejector_counts (within tolerance) since its frame was acquired. Over S7 the count read is
    the one of the PLC's last scan (one scan more slack) and pulses carry no part id: they are
    matched to the delivered records in order."""
    port = free_port()
    tracking = TRACKING
    replace = {"timeout_ms = 20.0": "timeout_ms = 50.0"}
    if protocol == "s7":
        replace['protocol = "modbus"'] = 'protocol = "s7"'
        tracking += S7_LINK.format(port=port)
    config, _instance = demo_config_file(tmp_path, port, replace, tracking)
    plc = load_config(config).plc
    assert plc.tracking.by == "encoder"
    sim = PlcSimProcess(port, part_id_register=0, args=[*sim_args(plc), "--encoder-cps", str(CPS)])
    log = tmp_path / "frames.jsonl"
    try:
        result = run_linegate("run", "--config", str(config), "--max-frames", str(FRAMES), "--log-file", str(log))
    finally:
        sim.stop()
    assert "reconciled" in result.stderr, result.stderr
    assert sim.listening is not None and sim.listening["encoder_cps"] == CPS

    every = records(log)
    frames = {r["part_id"]: r for r in every if r["event"] == "frame"}
    assert sorted(frames) == list(range(1, FRAMES + 1))
    rejected = {p for p, r in frames.items() if r["verdict"] == "reject"}
    delivered = {r["part_id"]: r for r in every if r["event"] == "reject_delivered"}
    undelivered = {r["part_id"]: r for r in every if r["event"] == "reject_undelivered"}
    assert rejected and set(delivered) | set(undelivered) == rejected and not set(delivered) & set(undelivered)
    # The demo decides in about a millisecond and the ejector is 100 ms away, so a reject misses its
    # window only when no fresh reading came while its part was in front of the ejector (this
    # machine's CPUs are shared with the simulators: a stalled read). It is then reported, never fired.
    assert {r["reason"] for r in undelivered.values()} <= {"too_late", "position_unknown"}
    # Most are fired (a tracking that fails loses them all); how many miss is a figure of the machine's
    # load, printed below, not a goal a shared CI machine can hold.
    assert len(undelivered) <= 0.5 * len(rejected), list(undelivered.values())[:3]
    # ... and the operator is told: a reject that did not reach the PLC ends the run non-zero.
    assert result.returncode == (1 if undelivered else 0), result.stderr
    assert ("did not reach the PLC" in result.stderr) == bool(undelivered), result.stderr

    coil = 0 if protocol == "modbus" else 60
    scan = CPS * S7_SCAN_MS / 1000 if protocol == "s7" else 0.0
    rising = [e for e in sim.edges if e["coil"] == coil and e["value"] == 1]
    if protocol == "s7":
        assert len(rising) == len(delivered)
        in_order = sorted(delivered.values(), key=lambda r: r["t_pulse_ns"])
        assert all(r["t_pulse_ns"] < e["t_ns"] for e, r in zip(rising, in_order, strict=True))
        rising = [{**e, "part_id": r["part_id"]} for e, r in zip(rising, in_order, strict=True)]
    assert sorted(e["part_id"] for e in rising) == sorted(delivered)  # each one pulse, none extra
    offsets = []
    for e in rising:
        record = delivered[e["part_id"]]
        at_acquisition = position(sim.listening, frames[e["part_id"]]["t_acquired_ns"])
        fired_at = position(sim.listening, e["t_ns"])
        assert abs(e["encoder"] - fired_at) <= 2  # the PLC's own count agrees with the formula
        offset = fired_at - at_acquisition
        offsets.append(offset)
        # Sent only while a fresh reading put the part within [ejector, ejector + tolerance]; the belt
        # moves on from that reading until the write reaches the PLC (the record says how long).
        t_read_ns = record["t_pulse_ns"] - record["reading_age_ms"] * 1e6
        in_flight = CPS * (e["t_ns"] - t_read_ns) / 1e9
        assert 0 <= record["late_counts"] <= TOLERANCE, record
        low, high = EJECTOR - SLACK - scan, EJECTOR + TOLERANCE + in_flight + 2 * SLACK + scan
        assert low <= offset <= high, (offset, in_flight, record)
    print(
        f"\nencoder tracking in a whole run ({protocol}): {len(rising)} rejects fired of {FRAMES} frames "
        f"({len(undelivered)} missed their window), "
        f"belt from acquisition to pulse {min(offsets):.0f}..{max(offsets):.0f} counts "
        f"(ejector {EJECTOR}, tolerance {TOLERANCE}); fired past due by linegate's reading: "
        f"p50 {median(r['late_counts'] for r in delivered.values()):.0f}, "
        f"max {max(r['late_counts'] for r in delivered.values())} counts"
    )


def check_pulse_positions(
    sim: PlcSimProcess, frames: dict[int, dict[str, Any]], delivered: dict[int, dict[str, Any]], unknown: set[int]
) -> list[float]:
    """Each rising edge *sim* saw landed where its part, by *sim*'s own belt, met the ejector. An edge
    linegate did not count as delivered must be one it reported as delivery_unknown (*unknown*: the ON
    reached the PLC as it died, and no reply came back to say so); it has no pulse record to check."""
    assert sim.listening is not None
    offsets = []
    for e in (e for e in sim.edges if e["coil"] == 0 and e["value"] == 1):
        if e["part_id"] not in delivered:
            assert e["part_id"] in unknown, e
            continue
        record = delivered[e["part_id"]]
        offset = position(sim.listening, e["t_ns"]) - position(sim.listening, frames[e["part_id"]]["t_acquired_ns"])
        in_flight = CPS * (e["t_ns"] - (record["t_pulse_ns"] - record["reading_age_ms"] * 1e6)) / 1e9
        assert EJECTOR - SLACK <= offset <= EJECTOR + TOLERANCE + in_flight + 2 * SLACK, (offset, in_flight, record)
        offsets.append(offset)
    return offsets


def test_a_plc_restart_that_resets_the_encoder_fires_nothing_blind(tmp_path: Path) -> None:
    """The PLC dies mid-run and comes back with its encoder count reset (1,000,000 -> 0): rejects
    held over the outage are reported (their parts' positions are on the old count), none is fired
    on the new count unless its frame was acquired on it, and each pulse on either side of the
    restart lands where its part met the ejector by that PLC's own belt."""
    port = free_port()
    config, _ = demo_config_file(tmp_path, port, append=TRACKING)
    args = [*sim_args(load_config(config).plc), "--encoder-cps", str(CPS)]
    first = PlcSimProcess(port, args=[*args, "--encoder-start", "1000000"])
    run = LinegateRun(tmp_path, port, append=TRACKING)
    second = None
    try:
        run.wait_for(lambda: len(first.rising_part_ids(0)) >= 12, 60, "12 pulses at the first PLC")
        first.kill()
        time.sleep(1.0)
        second = PlcSimProcess(port, args=[*args, "--encoder-start", "0"])
        run.wait_event("plc_connected", count=2, timeout_s=30)
        run.wait_for(lambda: len(second.rising_part_ids(0)) >= 12, 60, "12 pulses at the restarted PLC")
        stderr = run.stop()
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, first.rising_part_ids(0) + second.rising_part_ids(0))
    frames = {r["part_id"]: r for r in recs if r["event"] == "frame"}
    delivered = {r["part_id"]: r for r in recs if r["event"] == "reject_delivered"}
    reasons = {r["reason"] for r in recs if r["event"] == "reject_undelivered"}
    unknown = {r["part_id"] for r in recs if r["event"] == "reject_undelivered" and r["reason"] == "delivery_unknown"}
    # delivery_unknown: a pulse whose ON went out as the PLC died (applied or not, no read-back can tell)
    allowed = {"plc_unreachable", "position_lost", "position_unknown", "too_late", "shutdown", "delivery_unknown"}
    assert reasons and reasons <= allowed, reasons
    assert second.listening is not None
    restarted_at = second.listening["encoder_t0_ns"]
    assert all(frames[p]["t_acquired_ns"] > restarted_at for p in second.rising_part_ids(0))  # nothing blind
    before = check_pulse_positions(first, frames, delivered, unknown)
    after = check_pulse_positions(second, frames, delivered, unknown)
    print(
        f"\nPLC restart with encoder reset: {len(before)} pulses before, {len(after)} after "
        f"({len(unknown)} more reported delivery_unknown); "
        f"undelivered by reason {sorted(reasons)}; belt from acquisition to pulse "
        f"{min(before + after):.0f}..{max(before + after):.0f} counts"
    )
