"""The PLC side of the handshake, simulated: what a PLC program does with linegate's vision block.

Used by both simulators (``linegate plc-sim --mode handshake``, Modbus and S7). Pure: no I/O, no clock of
its own; every call takes the time (``time.monotonic_ns()`` of the caller) and returns events as dicts.

What it does, as a PLC programmer would write it (see docs/plc-interface.md):

- on every write of the vision block: a ``result_seq`` that is not 0 and differs from the last one taken
  is a NEW result: it is recorded once (``result`` event) and acknowledged by writing the seq into
  ``ack_seq`` (after ``ack_delay_ms``; an evenly spread ``ignore_ack_share`` of acks is skipped, for tests).
  The last seq written again while its ack is not yet published is a ``duplicate_result`` (the writer
  re-sending): counted, never recorded again, and acknowledged (again). Once the ack is published, further
  writes carrying that seq (alive/status writes) are neither results nor duplicates.
- ``vision_status`` when a status bit (but the result toggle) or one of the status words (fault code,
  results waiting, recipe, error code, undelivered, control echo) changes (not on every alive tick);
- its own ``plc_alive`` counts up every ``alive_ms`` (0: frozen; :meth:`PlcProgram.freeze_alive`);
- ``plc_part_id`` (next part id it wants used; 0 = not provided), ``encoder`` (counts per second, wrapping
  32-bit), ``recipe`` and ``control`` (scripted by ``control_changes``) in the PLC block
  (:data:`linegate.plc.interface.PLC_BLOCK` layout).

The encoder is a pure function of time, never accumulated (no drift, whenever and however often it is read):
at ``t_ns`` it is ``(encoder_start + floor(encoder_cps * (t_ns - t0_ns) / 1e9)) mod 2**32``, where ``t0_ns``
is the time the program was created with (:attr:`PlcProgram.t0_ns`; ``encoder_start`` before it) and
``encoder_cps`` is taken as the decimal its ``repr`` shows (what JSON prints: ``0.3`` is 3/10, not the binary
float just below it); the product and division are exact rational arithmetic, so the count is the floor of
the true value, never off by float rounding however large ``t_ns - t0_ns`` grows.
:meth:`PlcProgram.encoder_origin` gives the three numbers (the simulators print them in their ``listening``
line) so anyone can compute the true count at any instant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from linegate.plc import interface as itf

Event = dict[str, Any]
U32 = 0xFFFF_FFFF

_OFF = {f.name: f.offset for f in itf.FIELDS}
_STATUS_WORDS = ("fault_code", "results_waiting", "recipe", "error_code", "undelivered", "control_echo")
"""Vision-block words that, with the status bits, make a ``vision_status`` event when they change."""


@dataclass(frozen=True)
class ProgramConfig:
    """Behaviour knobs of the simulated PLC program (defaults: a prompt, well-behaved PLC)."""

    ack_delay_ms: float = 0.0
    """Time from taking a result to publishing its ``ack_seq``."""
    ignore_ack_share: float = 0.0
    """Share (0..1) of acks never written, evenly spread (0.5: every 2nd, 1: none)."""
    alive_ms: float = 100.0
    """``plc_alive`` counts up by 1 this often; 0 freezes it."""
    part_id_start: int = 0
    """First ``plc_part_id`` offered; 0: the PLC provides no part id (the words stay 0)."""
    part_period_ms: float = 0.0
    """``plc_part_id`` advances by 1 this often (a part passing the camera); 0: it stays."""
    encoder_cps: float = 0.0
    """Encoder counts per second (the word pair wraps at 2**32); 0: the encoder stays at ``encoder_start``."""
    encoder_start: int = 0
    """Encoder count at the program's start (``t0_ns``)."""
    recipe: int = 0
    recipe_changes: tuple[tuple[float, int], ...] = ()
    """``(ms after start, recipe)``: product changes at those times (a scripted line)."""
    control_changes: tuple[tuple[float, int], ...] = ()
    """``(ms after start, control word)``: commands at those times (bit 0 offline, bit 1 clear error)."""
    timeline_from: Literal["start", "connect", "ready"] = "start"
    """What "start" means for the two timelines above: the program's start, linegate's first vision
    block, or its first one with the ready bit (inspecting), so a script need not guess start-up time."""

    def __post_init__(self) -> None:
        checks = (
            (self.ack_delay_ms >= 0, "ack_delay_ms must be >= 0"),
            (0.0 <= self.ignore_ack_share <= 1.0, "ignore_ack_share must be within 0..1"),
            (self.alive_ms >= 0, "alive_ms must be >= 0"),
            (0 <= self.part_id_start <= U32, "part_id_start must be a u32"),
            (self.part_period_ms >= 0, "part_period_ms must be >= 0"),
            (math.isfinite(self.encoder_cps) and self.encoder_cps >= 0, "encoder_cps must be a finite number >= 0"),
            (0 <= self.encoder_start <= U32, "encoder_start must be a u32"),
            (0 <= self.recipe <= 0xFFFF, "recipe must be a u16"),
            (all(ms >= 0 and 0 <= r <= 0xFFFF for ms, r in self.recipe_changes), "recipe changes need ms >= 0, u16"),
            (all(ms >= 0 and 0 <= c <= 0xFFFF for ms, c in self.control_changes), "control changes need ms >= 0, u16"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


class PlcProgram:
    """State of the simulated PLC program; feed it vision-block writes and scan it for the PLC block."""

    def __init__(self, config: ProgramConfig, t_ns: int) -> None:
        self.config = config
        self.results: list[Event] = []
        """Every recorded (new) result event, in order."""
        self.duplicates = 0
        self._t0 = t_ns
        self._timeline_t0: int | None = t_ns if config.timeline_from == "start" else None
        self._last_seq = 0
        self._ack_seq = 0
        self._pending_ack: tuple[int, int] | None = None  # (seq, due t_ns)
        self._ack_chances = 0
        self._acks_ignored = 0
        self._alive = 0
        self._alive_frozen = config.alive_ms == 0
        self._alive_mark_ns = t_ns
        self._status: tuple[int, ...] | None = None
        self._part_id_start = config.part_id_start
        self._part_t0 = t_ns
        self._recipe = config.recipe
        self._recipe_changes_done = 0
        self._control = 0
        self._control_changes_done = 0
        # encoder_cps as the exact decimal of its repr: counts = dt_ns * num // (den * 1e9), integer arithmetic
        cps = Fraction(repr(float(config.encoder_cps)))
        self._cps_num, self._cps_den_ns = cps.numerator, cps.denominator * 1_000_000_000

    # -- inputs -------------------------------------------------------------------------------------------

    def on_vision_block(self, words: Sequence[int], t_ns: int) -> list[Event]:
        """Handle one write of the vision block (all 12 words as now in memory); returns the events."""
        if len(words) != itf.VISION_WORDS:
            raise ValueError(f"vision block is {itf.VISION_WORDS} words, got {len(words)}")
        self._advance(t_ns)
        events: list[Event] = []
        w = [int(x) & 0xFFFF for x in words]
        status = w[_OFF["status"]]
        if self._timeline_t0 is None and (self.config.timeline_from == "connect" or status & (1 << itf.Status.READY)):
            self._timeline_t0 = t_ns
        now = (status & ~(1 << itf.Status.RESULT_TOGGLE), *(w[_OFF[name]] for name in _STATUS_WORDS))
        if now != self._status:
            self._status = now
            events.append({
                "event": "vision_status",
                **{b.name.lower(): bool(status >> b & 1) for b in itf.Status if b is not itf.Status.RESULT_TOGGLE},
                **{name: w[_OFF[name]] for name in _STATUS_WORDS},
                "alive": w[_OFF["vision_alive"]],
                "t_ns": t_ns,
            })
        seq = w[_OFF["result_seq"]]
        if seq == 0:
            return events
        if seq != self._last_seq:
            self._last_seq = seq
            event = self._result_event("result", w, t_ns)
            self.results.append(event)
            events.append(event)
            self._pending_ack = None
            self._offer_ack(seq, t_ns)
        elif self._ack_seq != seq:
            self.duplicates += 1
            events.append(self._result_event("duplicate_result", w, t_ns))
            if self._pending_ack is None:
                self._offer_ack(seq, t_ns)
        self._advance(t_ns)
        return events

    def freeze_alive(self, frozen: bool, t_ns: int) -> None:
        """Stop (or restart) the ``plc_alive`` counter, as a PLC whose program halted would."""
        self._advance(t_ns)
        self._alive_frozen = frozen or self.config.alive_ms == 0
        self._alive_mark_ns = t_ns

    def set_part_id(self, part_id: int, t_ns: int) -> None:
        """Offer *part_id* as the next part id from now on (it keeps advancing if ``part_period_ms``)."""
        self._part_id_start = part_id & U32
        self._part_t0 = t_ns

    def set_recipe(self, recipe: int) -> None:
        """A product change."""
        self._recipe = recipe & 0xFFFF

    # -- outputs ------------------------------------------------------------------------------------------

    def scan(self, t_ns: int) -> list[int]:
        """Run one PLC scan at *t_ns*: publish due acks, count alive; returns the 8 PLC-block words."""
        self._advance(t_ns)
        part = self._part_id(t_ns)
        enc = self._encoder(t_ns)
        elapsed_ns = -1 if self._timeline_t0 is None else t_ns - self._timeline_t0
        changes, done = self.config.recipe_changes, self._recipe_changes_done
        while done < len(changes) and elapsed_ns >= changes[done][0] * 1e6:
            self._recipe = changes[done][1]
            done += 1
        self._recipe_changes_done = done
        changes, done = self.config.control_changes, self._control_changes_done
        while done < len(changes) and elapsed_ns >= changes[done][0] * 1e6:
            self._control = changes[done][1]
            done += 1
        self._control_changes_done = done
        return [self._alive, self._ack_seq, part >> 16, part & 0xFFFF, enc >> 16, enc & 0xFFFF, self._recipe,
                self._control]

    def encoder_at(self, t_ns: int) -> int:
        """The raw encoder count (u32) at *t_ns*: ``(start + floor(cps * (t_ns - t0_ns) / 1e9)) mod 2**32``."""
        return self._encoder(t_ns)

    @property
    def has_encoder(self) -> bool:
        """Whether the encoder moves (``encoder_cps > 0``)."""
        return self._cps_num > 0

    @property
    def t0_ns(self) -> int:
        """The time the program was created with: the encoder's origin."""
        return self._t0

    def encoder_origin(self) -> dict[str, int | float]:
        """``encoder_t0_ns``, ``encoder_cps`` and ``encoder_start``: what :meth:`encoder_at` computes from."""
        return {"encoder_t0_ns": self._t0, "encoder_cps": self.config.encoder_cps,
                "encoder_start": self.config.encoder_start}

    @property
    def ack_seq(self) -> int:
        """The acknowledged seq as published (after the last scan or write)."""
        return self._ack_seq

    # -- internals ----------------------------------------------------------------------------------------

    def _result_event(self, name: str, w: list[int], t_ns: int) -> Event:
        return {
            "event": name,
            "seq": w[_OFF["result_seq"]],
            "part_id": (w[_OFF["part_id"]] << 16) | w[_OFF["part_id"] + 1],
            "verdict": w[_OFF["verdict"]],
            "basis": w[_OFF["basis"]],
            "class_index": w[_OFF["class_index"]],
            "score": w[_OFF["score"]] / itf.SCORE_SCALE,
            "t_ns": t_ns,
        }

    def _offer_ack(self, seq: int, t_ns: int) -> None:
        """One chance to acknowledge *seq*: skipped for an even share, else due after the delay."""
        self._ack_chances += 1
        if int(self._ack_chances * self.config.ignore_ack_share) > self._acks_ignored:
            self._acks_ignored += 1
            return
        self._pending_ack = (seq, t_ns + round(self.config.ack_delay_ms * 1e6))

    def _advance(self, t_ns: int) -> None:
        """Bring timers up to *t_ns*: the alive counter and a pending ack."""
        if self._pending_ack is not None and t_ns >= self._pending_ack[1]:
            self._ack_seq = self._pending_ack[0]
            self._pending_ack = None
        if self._alive_frozen:
            self._alive_mark_ns = max(self._alive_mark_ns, t_ns)
            return
        period = max(1, round(self.config.alive_ms * 1e6))
        ticks = (t_ns - self._alive_mark_ns) // period
        if ticks > 0:
            self._alive = (self._alive + ticks) & 0xFFFF
            self._alive_mark_ns += ticks * period

    def _part_id(self, t_ns: int) -> int:
        if self._part_id_start == 0:
            return 0
        steps = 0
        if self.config.part_period_ms > 0:
            steps = max(0, t_ns - self._part_t0) // max(1, round(self.config.part_period_ms * 1e6))
        return (self._part_id_start + steps) & U32

    def _encoder(self, t_ns: int) -> int:
        counts = max(0, t_ns - self._t0) * self._cps_num // self._cps_den_ns
        return (self.config.encoder_start + counts) & U32
