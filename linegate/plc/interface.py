"""The linegate PLC interface: one definition of every word linegate and the PLC exchange.

The same table gives the Modbus register map (holding registers from ``plc.modbus.register_base``),
the S7 data-block layout (``plc.s7.db`` from ``plc.s7.byte_base``, 2 bytes a word, big-endian as S7
stores INT/WORD) and the Markdown table in ``docs/plc-interface.md`` (``linegate plc-interface``).
32-bit values take two words, high word first (Modbus "big-endian word order", S7 DINT/UDINT).

Two blocks, each written by one side only:

- the *vision block* (words 0..15), written by linegate as a whole in one request (FC16 / DB write):
  the alive counter, status bits, fault code, the current result (the oldest of up to
  ``plc.handshake.buffer`` results held until acknowledged), the active recipe and the error latch;
- the *PLC block* (words 16..23), written by the PLC, read by linegate in one request (FC3 / DB
  read): the PLC's alive counter, the acknowledged result sequence number, optional inputs and the
  control word (set offline, clear error).

Pure data and codecs: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

Writer = Literal["linegate", "plc"]
Kind = Literal["u16", "u32", "bits"]


@dataclass(frozen=True)
class Field:
    """One value in the interface: its word offset, type, writer and meaning."""

    name: str
    offset: int
    kind: Kind
    writer: Writer
    meaning: str
    when: str

    @property
    def words(self) -> int:
        return 2 if self.kind == "u32" else 1


class Status(IntEnum):
    """Bits of the ``status`` word (bit 0 = least significant)."""

    READY = 0
    """linegate is inspecting: every worker up, camera delivering, PLC block alive."""
    FAULT = 1
    """linegate is not inspecting: stop the line or divert every part (see ``fault_code``)."""
    RESULT_TOGGLE = 2
    """Flips with every new result (a PLC may use the edge instead of comparing ``result_seq``)."""
    RESULTS_WAITING = 3
    """More results are queued behind the current one."""
    ONLINE = 4
    """linegate sends results: 0 while the PLC's control word asks for offline (``Control.SET_OFFLINE``)."""
    OVERRUN = 5
    """Latched: a result was dropped because ``plc.handshake.buffer`` results already waited for
    acknowledgement. Cleared by ``Control.CLEAR_ERROR``."""
    ERROR = 6
    """Latched: a reject was reported undelivered (see ``error_code``) or acknowledged after its
    deadline. Cleared by ``Control.CLEAR_ERROR``; the ``undelivered`` word keeps counting."""
    RECIPE_SWITCHING = 7
    """The PLC's recipe word names a recipe that is not active yet (a warm hand-over is under way)."""
    RECIPE_FAILED = 8
    """The recipe the PLC named cannot be applied (no model for it, or its model failed to start):
    the ``recipe`` word still names the one that runs."""


class Control(IntEnum):
    """Bits of the PLC's ``control`` word."""

    SET_OFFLINE = 0
    """Level: while 1 linegate writes no new results (rejects arriving are reported undelivered,
    ``plc_offline``), clears ``ready`` and ``online`` and says fault code 6."""
    CLEAR_ERROR = 1
    """Rising edge: clears the ``overrun`` and ``error`` latches and ``error_code``."""


class ErrorCode(IntEnum):
    """Values of the ``error_code`` word: the newest reason the ``error`` latch was set."""

    NONE = 0
    NOT_ACKNOWLEDGED = 1
    TOO_LATE = 2
    OVERRUN = 3
    ACKNOWLEDGED_LATE = 4
    PLC_REFUSED = 5
    OFFLINE = 6
    PLC_UNREACHABLE = 7
    OTHER = 8
    """Any other undelivered reason (delivery unknown, queue full, shutdown, ...): see the journal."""


ERROR_OF_REASON = {
    "not_acknowledged": ErrorCode.NOT_ACKNOWLEDGED,
    "too_late": ErrorCode.TOO_LATE,
    "results_buffer_overrun": ErrorCode.OVERRUN,
    "plc_refused": ErrorCode.PLC_REFUSED,
    "plc_offline": ErrorCode.OFFLINE,
    "plc_unreachable": ErrorCode.PLC_UNREACHABLE,
}
"""``reject_undelivered`` reasons -> ``error_code`` (any other reason is ``OTHER``)."""

NO_RECIPE = 0xFFFF
"""``recipe`` word when no recipe is active (no ``[recipes]`` configured, or none applied yet)."""


class FaultCode(IntEnum):
    """Values of the ``fault_code`` word: why linegate is not inspecting (0 while it is)."""

    NONE = 0
    STARTING = 1
    CAMERA_DOWN = 2
    WORKER_RESTARTING = 3
    STOPPING = 4
    PLC_ALIVE_STALE = 5
    """The PLC's alive counter stopped changing: results are not being taken."""
    OFFLINE = 6
    """The PLC's control word asks for offline (``Control.SET_OFFLINE``): no results are sent.
    Not a fault (the ``fault`` bit stays 0), but not ``ready`` either."""
    RECIPE_NOT_APPLIED = 7
    """The PLC's recipe has no model in the configuration, or its model failed to start."""
    AWAITING_PART_ID = 8
    """plc.part_ids = "plc": the camera waits for a non-zero ``plc_part_id``."""


class Verdict(IntEnum):
    """Values of the ``verdict`` word."""

    NONE = 0
    PASS = 1
    REJECT = 2


VISION_BLOCK = (
    Field("vision_alive", 0, "u16", "linegate", "Counts up by 1 (wrapping 65535 -> 0) each write.",
          "every plc.handshake.alive_ms, and with every result"),
    Field("status", 1, "bits", "linegate",
          "bit 0 ready, bit 1 fault, bit 2 result toggle, bit 3 more results waiting, bit 4 online, "
          "bit 5 results-buffer overrun (latched), bit 6 error (latched), bit 7 recipe switching, "
          "bit 8 recipe failed.",
          "with every write of the block"),
    Field("fault_code", 2, "u16", "linegate",
          "0 none, 1 starting, 2 camera down, 3 worker restarting, 4 stopping, 5 PLC alive stale, "
          "6 offline (asked by the PLC's control word; not a fault), 7 recipe not applied, 8 waiting for "
          "the PLC's part id.",
          "with every write of the block"),
    Field("result_seq", 3, "u16", "linegate",
          "Sequence number of the current result, 1..65535 then 1 again (0: no result yet). The same "
          "number written again is the same result: act on a number once.",
          "when a new result is written (and unchanged on a re-write of an unacknowledged one)"),
    Field("part_id", 4, "u32", "linegate", "Part id of the current result.", "with the result"),
    Field("verdict", 6, "u16", "linegate", "1 pass, 2 reject.", "with the result"),
    Field("basis", 7, "u16", "linegate",
          "0 decided by the model; otherwise the fail-safe verdict: 1 deadline missed, 2 deadline "
          "unreachable, 3 dropped (ring full), 4 lost in flight (worker died), 5 engine error, 6 incomplete "
          "frame (the camera delivered it incomplete or with a wrong payload size).", "with the result"),
    Field("class_index", 8, "u16", "linegate",
          "Index of the deciding class in model.postprocess.classes; 65535 for a fail-safe verdict.",
          "with the result"),
    Field("score", 9, "u16", "linegate", "Score of the deciding class x 10000 (0..10000; 0 for fail-safe).",
          "with the result"),
    Field("results_waiting", 10, "u16", "linegate",
          "Results held behind the current one (at most plc.handshake.buffer - 1).",
          "with every write of the block"),
    Field("recipe", 11, "u16", "linegate",
          "The recipe whose model is inspecting now; 65535 when no recipe has been applied (the "
          "configured model). Equal to the PLC's recipe word once a switch is complete.",
          "with every write of the block"),
    Field("error_code", 12, "u16", "linegate",
          "Why the error latch was last set: 0 none, 1 not acknowledged by its deadline, 2 too late to "
          "send, 3 results-buffer overrun, 4 acknowledged after its deadline, 5 refused by the PLC, "
          "6 offline, 7 PLC unreachable, 8 other (see the journal).",
          "with every write of the block; cleared by control bit 1"),
    Field("undelivered", 13, "u16", "linegate",
          "Rejects reported undelivered since linegate started (wrapping 65535 -> 0). Each one is a part "
          "to be checked by hand; its part id is in the journal.", "with every write of the block"),
    Field("control_echo", 14, "u16", "linegate", "The control word as linegate last read it.",
          "with every write of the block"),
    Field("reserved", 15, "u16", "linegate", "0.", "with every write of the block"),
)

PLC_BLOCK = (
    Field("plc_alive", 16, "u16", "plc",
          "Counts up (any step) at least every plc.handshake.plc_alive_timeout_ms; a value that stops "
          "changing is the PLC_ALIVE_STALE fault.", "every PLC scan, or on a timer"),
    Field("ack_seq", 17, "u16", "plc",
          "The PLC writes result_seq here once it has taken the result (queued the ejection).",
          "after reading a new result_seq"),
    Field("plc_part_id", 18, "u32", "plc",
          "The PLC's own id of the next part to be imaged. With plc.part_ids = \"plc\" linegate's part "
          "ids continue from it (read at the first connect; one id per frame after that); always logged "
          "with each result (plc_part_id).", "before the part reaches the camera"),
    Field("encoder", 20, "u32", "plc", "Conveyor encoder count (wrapping 32-bit), for tracking.by = \"encoder\".",
          "every PLC scan"),
    Field("plc_recipe", 22, "u16", "plc",
          "Recipe (product) number: with [recipes] configured, linegate switches to its model between two "
          "frames; the vision block's recipe word shows when it is active.", "at a product change"),
    Field("control", 23, "bits", "plc",
          "bit 0 set offline (level: no results are sent while 1), bit 1 clear error (rising edge: "
          "clears the overrun and error latches). Other bits: write 0.", "when the PLC wants it"),
)

FIELDS = VISION_BLOCK + PLC_BLOCK
VISION_WORDS = 16
PLC_OFFSET = 16
PLC_WORDS = 8
TOTAL_WORDS = PLC_OFFSET + PLC_WORDS
SCORE_SCALE = 10_000


def _check_layout() -> None:
    """Fields do not overlap and stay inside their block (import-time self-check)."""
    taken: set[int] = set()
    for f in FIELDS:
        lo, hi = (0, VISION_WORDS) if f.writer == "linegate" else (PLC_OFFSET, TOTAL_WORDS)
        span = set(range(f.offset, f.offset + f.words))
        if span & taken or f.offset < lo or f.offset + f.words > hi:
            raise AssertionError(f"interface field {f.name} overlaps or leaves its block")
        taken |= span


_check_layout()


@dataclass(frozen=True)
class Result:
    """One verdict as the PLC sees it."""

    seq: int
    part_id: int
    verdict: Verdict
    basis: int
    class_index: int
    score: float


@dataclass(frozen=True)
class VisionState:
    """What linegate tells the PLC besides the result."""

    alive: int
    ready: bool
    fault_code: FaultCode
    toggle: bool
    waiting: int
    online: bool = True
    overrun: bool = False
    error: bool = False
    error_code: ErrorCode = ErrorCode.NONE
    undelivered: int = 0
    recipe: int = NO_RECIPE
    recipe_switching: bool = False
    recipe_failed: bool = False
    control_echo: int = 0


def _status_word(state: VisionState) -> int:
    bits = {
        Status.READY: state.ready,
        Status.FAULT: state.fault_code not in (FaultCode.NONE, FaultCode.OFFLINE),
        Status.RESULT_TOGGLE: state.toggle,
        Status.RESULTS_WAITING: state.waiting > 0,
        Status.ONLINE: state.online,
        Status.OVERRUN: state.overrun,
        Status.ERROR: state.error,
        Status.RECIPE_SWITCHING: state.recipe_switching,
        Status.RECIPE_FAILED: state.recipe_failed,
    }
    return sum(int(on) << bit for bit, on in bits.items())


def encode_vision_block(state: VisionState, result: Result | None) -> list[int]:
    """The 16 words of the vision block."""
    words = [0] * VISION_WORDS
    words[0:3] = [state.alive & 0xFFFF, _status_word(state), int(state.fault_code)]
    words[10:15] = [min(state.waiting, 0xFFFF), state.recipe & 0xFFFF, int(state.error_code),
                    state.undelivered & 0xFFFF, state.control_echo & 0xFFFF]
    if result is not None:
        score = max(0, min(SCORE_SCALE, round(result.score * SCORE_SCALE)))
        part = result.part_id & 0xFFFF_FFFF
        words[3:10] = [result.seq, part >> 16, part & 0xFFFF, int(result.verdict), result.basis,
                       result.class_index, score]
    return words


@dataclass(frozen=True)
class PlcInputs:
    """The PLC block as read."""

    alive: int
    ack_seq: int
    part_id: int
    encoder: int
    recipe: int
    control: int


def decode_plc_block(words: list[int]) -> PlcInputs:
    """Decode the 8 words read from word ``PLC_OFFSET``."""
    if len(words) != PLC_WORDS:
        raise ValueError(f"PLC block is {PLC_WORDS} words, got {len(words)}")
    return PlcInputs(
        alive=words[0],
        ack_seq=words[1],
        part_id=(words[2] << 16) | words[3],
        encoder=(words[4] << 16) | words[5],
        recipe=words[6],
        control=words[7],
    )


def decode_vision_block(words: list[int]) -> tuple[VisionState, Result | None]:
    """Inverse of :func:`encode_vision_block` (simulators, read-back and tests)."""
    status = words[1]

    def bit(b: Status) -> bool:
        return bool(status >> b & 1)

    state = VisionState(
        alive=words[0],
        ready=bit(Status.READY),
        fault_code=FaultCode(words[2]),
        toggle=bit(Status.RESULT_TOGGLE),
        waiting=words[10],
        online=bit(Status.ONLINE),
        overrun=bit(Status.OVERRUN),
        error=bit(Status.ERROR),
        error_code=ErrorCode(words[12]),
        undelivered=words[13],
        recipe=words[11],
        recipe_switching=bit(Status.RECIPE_SWITCHING),
        recipe_failed=bit(Status.RECIPE_FAILED),
        control_echo=words[14],
    )
    if words[3] == 0:
        return state, None
    result = Result(words[3], (words[4] << 16) | words[5], Verdict(words[6]), words[7], words[8],
                    words[9] / SCORE_SCALE)
    return state, result


def next_seq(seq: int) -> int:
    """1..65535, then 1 again (0 means "no result")."""
    return seq % 0xFFFF + 1
