"""The simulated PLC program (PLC side of the handshake), pure: driven with explicit times."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Any

import pytest

from linegate.plc.interface import FaultCode, Result, Verdict, VisionState, decode_plc_block, encode_vision_block
from linegate.plc.plc_program import PlcProgram, ProgramConfig

MS = 1_000_000
READY = VisionState(alive=1, ready=True, fault_code=FaultCode.NONE, toggle=False, waiting=0)


def block(seq: int, *, alive: int = 1, part_id: int = 1000, state: VisionState = READY) -> list[int]:
    """A vision block carrying result *seq* (0: no result)."""
    result = Result(seq, part_id, Verdict.REJECT, 0, 1, 0.75) if seq else None
    return encode_vision_block(VisionState(alive, state.ready, state.fault_code, state.toggle, 0), result)


# Each step: (t_ms, seq written or None for a scan only, events expected from that step, ack_seq after it).
Step = tuple[int, "int | None", list[str], int]
ACK_CASES: dict[str, tuple[dict[str, Any], list[Step]]] = {
    "prompt ack; alive re-writes of an acked seq are neither results nor duplicates": (
        {},
        [(0, 1, ["result"], 1), (100, 1, [], 1), (200, 2, ["result"], 2), (300, 2, [], 2)],
    ),
    "seq 0 means no result": (
        {},
        [(0, 0, [], 0), (10, 0, [], 0), (20, 1, ["result"], 1)],
    ),
    "delayed ack: a re-write before it is a duplicate, the ack appears at the delay": (
        {"ack_delay_ms": 50},
        [(0, 1, ["result"], 0), (20, 1, ["duplicate_result"], 0), (49, None, [], 0), (50, None, [], 1),
         (60, 1, [], 1)],
    ),
    "every ack ignored: each re-write is a duplicate, ack never written": (
        {"ignore_ack_share": 1.0},
        [(0, 1, ["result"], 0), (100, 1, ["duplicate_result"], 0), (200, 1, ["duplicate_result"], 0)],
    ),
    "half the acks ignored, evenly: the re-write after an ignored ack is acked": (
        {"ignore_ack_share": 0.5},
        [(0, 1, ["result"], 1), (10, 2, ["result"], 1), (110, 2, ["duplicate_result"], 2), (120, 2, [], 2)],
    ),
    "the seq wraps 65535 -> 1: both are new": (
        {},
        [(0, 65535, ["result"], 65535), (10, 1, ["result"], 1)],
    ),
    "a new seq replaces a pending ack (the PLC acks the latest)": (
        {"ack_delay_ms": 50},
        [(0, 1, ["result"], 0), (10, 2, ["result"], 0), (55, None, [], 0), (60, None, [], 2)],
    ),
}


@pytest.mark.parametrize("config, steps", ACK_CASES.values(), ids=list(ACK_CASES))
def test_results_duplicates_and_acks(config: dict[str, Any], steps: list[Step]) -> None:
    """Each new seq is recorded once, a re-write of an unacked seq is a duplicate, ack_seq follows the rules."""
    program = PlcProgram(ProgramConfig(**config), 0)
    for t_ms, seq, expected, ack in steps:
        events = [] if seq is None else program.on_vision_block(block(seq), t_ms * MS)
        names = [e["event"] for e in events if e["event"] != "vision_status"]
        assert names == expected, f"at {t_ms} ms"
        assert decode_plc_block(program.scan(t_ms * MS)).ack_seq == ack, f"at {t_ms} ms"
    recorded = [s for _, s, names, _ in steps if "result" in names]
    assert [e["seq"] for e in program.results] == recorded
    assert program.duplicates == sum(names.count("duplicate_result") for _, _, names, _ in steps)


def test_result_event_carries_the_decoded_result_and_write_time() -> None:
    """A result event has seq, 32-bit part id, verdict, basis, class, score and the write's time."""
    words = encode_vision_block(READY, Result(7, 0x0001_0002, Verdict.PASS, 3, 4, 0.1234))
    (status, result) = PlcProgram(ProgramConfig(), 0).on_vision_block(words, 5 * MS)
    assert status["event"] == "vision_status"
    assert result == {"event": "result", "seq": 7, "part_id": 65538, "verdict": 1, "basis": 3, "class_index": 4,
                      "score": 0.1234, "t_ns": 5 * MS}


def test_vision_status_only_when_ready_or_fault_changes() -> None:
    """vision_status is emitted on the first write and on ready/fault changes, not on alive ticks."""
    program = PlcProgram(ProgramConfig(), 0)
    starting = VisionState(1, False, FaultCode.STARTING, False, 0)
    camera = VisionState(1, False, FaultCode.CAMERA_DOWN, False, 0)
    writes = [starting, starting, READY, READY, READY, camera, READY]
    seen = []
    for alive, state in enumerate(writes, start=1):
        for event in program.on_vision_block(block(0, alive=alive, state=state), alive * MS):
            seen.append((event["ready"], event["fault"], event["fault_code"], event["alive"]))
    assert seen == [(False, True, 1, 1), (True, False, 0, 3), (False, True, 2, 6), (True, False, 0, 7)]


# (alive_ms, [(t_ms, action)], expected plc_alive after each step); action: "scan", "freeze", "thaw"
ALIVE_CASES: dict[str, tuple[float, list[tuple[int, str, int]]]] = {
    "counts one per period": (10, [(0, "scan", 0), (9, "scan", 0), (10, "scan", 1), (35, "scan", 3)]),
    "frozen stays, thawed continues": (
        10, [(25, "scan", 2), (25, "freeze", 2), (500, "scan", 2), (500, "thaw", 2), (530, "scan", 5)]),
    "alive_ms 0 is frozen from the start": (0, [(0, "scan", 0), (10_000, "scan", 0), (10_000, "thaw", 0)]),
    "wraps 65535 -> 0": (1, [(65_535, "scan", 65_535), (65_536, "scan", 0), (65_538, "scan", 2)]),
}


@pytest.mark.parametrize("alive_ms, steps", ALIVE_CASES.values(), ids=list(ALIVE_CASES))
def test_plc_alive_counts_and_can_be_frozen(alive_ms: float, steps: list[tuple[int, str, int]]) -> None:
    """plc_alive counts up every alive_ms (wrapping u16) and stops while frozen."""
    program = PlcProgram(ProgramConfig(alive_ms=alive_ms), 0)
    for t_ms, action, expected in steps:
        if action != "scan":
            program.freeze_alive(action == "freeze", t_ms * MS)
        assert decode_plc_block(program.scan(t_ms * MS)).alive == expected, f"{action} at {t_ms} ms"


ENCODER_CASES = [
    # (encoder_start, counts per second, t_ms, expected)
    (0, 0.0, 10_000, 0),
    (0, 1000.0, 1500, 1500),
    (0xFFFF_FFF0, 1000.0, 1000, 984),
    (0xFFFF_FFFF, 1.0, 1000, 0),
    (5, 2_000_000.0, 3_600_000, (5 + 2_000_000 * 3600) & 0xFFFF_FFFF),
]


@pytest.mark.parametrize("start, cps, t_ms, expected", ENCODER_CASES)
def test_encoder_advances_at_its_rate_and_wraps_u32(start: int, cps: float, t_ms: int, expected: int) -> None:
    """The encoder words hold start + cps x elapsed, wrapping at 2**32, high word first."""
    program = PlcProgram(ProgramConfig(encoder_start=start, encoder_cps=cps), 1_000 * MS)
    words = program.scan(1_000 * MS + t_ms * MS)
    assert decode_plc_block(words).encoder == expected
    assert words[4:6] == [expected >> 16, expected & 0xFFFF]


def test_encoder_is_the_exact_formula_at_any_instant_without_drift() -> None:
    """encoder_at(t) is (start + floor(cps x (t - t0) / 1e9)) mod 2**32 exactly (cps as JSON prints it), for years."""
    t0, start = 123_456_789, 4_000_000_000
    for cps in (0.1, 0.3, 33_333.3, 1e6 / 3, 2_500_000.7):
        program = PlcProgram(ProgramConfig(encoder_cps=cps, encoder_start=start), t0)
        assert program.encoder_origin() == {"encoder_t0_ns": t0, "encoder_cps": cps, "encoder_start": start}
        assert program.has_encoder and program.t0_ns == t0
        for dt in (0, 1, 999_999, 10**9 + 7, 10**10, 86_400 * 10**9 + 3, 365 * 86_400 * 10**9 + 11,
                   20_973_351_264_276_845):  # the last: float arithmetic is one count off here at 2_500_000.7
            exact = (start + math.floor(Fraction(json.dumps(cps)) * dt / 10**9)) % 2**32
            assert program.encoder_at(t0 + dt) == exact, (cps, dt)
            assert decode_plc_block(program.scan(t0 + dt)).encoder == exact
        assert program.encoder_at(t0 - 10**9) == start  # before its start the encoder stands at encoder_start
    assert not PlcProgram(ProgramConfig(encoder_start=7), 0).has_encoder


def test_part_id_and_recipe_in_the_plc_block() -> None:
    """plc_part_id starts where configured and advances per period; set_part_id/set_recipe take effect."""
    program = PlcProgram(ProgramConfig(part_id_start=70_000, part_period_ms=100, recipe=3), 0)
    assert decode_plc_block(program.scan(0)).part_id == 70_000
    assert decode_plc_block(program.scan(250 * MS)).part_id == 70_002
    program.set_part_id(5, 300 * MS)
    program.set_recipe(9)
    inputs = decode_plc_block(program.scan(450 * MS))
    assert (inputs.part_id, inputs.recipe, inputs.control) == (6, 9, 0)
    assert decode_plc_block(PlcProgram(ProgramConfig(), 0).scan(10**12)).part_id == 0


def test_timeline_from_ready_counts_from_the_first_ready_vision_block() -> None:
    """--timeline-from ready: scripted recipe changes wait for linegate's first ready block, so a
    slow start-up does not miss the recipe it starts with."""
    config = ProgramConfig(recipe=1, recipe_changes=((100, 2),), timeline_from="ready")
    program = PlcProgram(config, 0)
    assert decode_plc_block(program.scan(10_000 * MS)).recipe == 1  # no vision block yet: no clock
    not_ready = VisionState(alive=1, ready=False, fault_code=FaultCode.NONE, toggle=False, waiting=0)
    program.on_vision_block(block(0, state=not_ready), 10_000 * MS)
    assert decode_plc_block(program.scan(10_500 * MS)).recipe == 1  # not ready: still no clock
    program.on_vision_block(block(0), 11_000 * MS)
    assert decode_plc_block(program.scan(11_099 * MS)).recipe == 1
    assert decode_plc_block(program.scan(11_100 * MS)).recipe == 2
    from_start = PlcProgram(ProgramConfig(recipe=1, recipe_changes=((100, 2),)), 0)
    assert decode_plc_block(from_start.scan(100 * MS)).recipe == 2
    from_connect = PlcProgram(ProgramConfig(recipe=1, recipe_changes=((100, 2),), timeline_from="connect"), 0)
    from_connect.on_vision_block(block(0, state=not_ready), 10_000 * MS)
    assert decode_plc_block(from_connect.scan(10_099 * MS)).recipe == 1
    assert decode_plc_block(from_connect.scan(10_100 * MS)).recipe == 2


@pytest.mark.parametrize(
    "bad",
    [{"ack_delay_ms": -1}, {"ignore_ack_share": 1.5}, {"alive_ms": -5}, {"part_id_start": 2**32},
     {"encoder_cps": -1.0}, {"encoder_cps": float("inf")}, {"encoder_cps": float("nan")}, {"encoder_start": -1},
     {"encoder_start": 2**32}, {"recipe": 70_000}],
)
def test_invalid_settings_are_refused(bad: dict[str, Any]) -> None:
    """Out-of-range program settings raise ValueError (the CLI turns it into one line, exit 2)."""
    with pytest.raises(ValueError):
        ProgramConfig(**bad)


def test_block_of_wrong_length_is_refused() -> None:
    """on_vision_block takes exactly the 12 words of the vision block."""
    with pytest.raises(ValueError):
        PlcProgram(ProgramConfig(), 0).on_vision_block([0] * 11, 0)


def test_unknown_codes_do_not_crash_the_program() -> None:
    """Words outside the enums (a buggy writer) are reported raw instead of raising."""
    words = block(4)
    words[2], words[6] = 999, 77
    events = PlcProgram(ProgramConfig(), 0).on_vision_block(words, 0)
    assert [(e["event"], e.get("fault_code"), e.get("verdict")) for e in events] == [
        ("vision_status", 999, None), ("result", None, 77)]
