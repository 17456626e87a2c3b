"""The PLC worker's inbox polls while a frame is being decided: a verdict handed off meanwhile is
returned by that take; a decision that ends without a reject ends the take; otherwise it sleeps as
before. Real pipe, real shared in-flight entry, a thread as the inference loop."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from typing import Any

from linegate.counters import SharedCounters
from linegate.pipeline.inflight import BACKLOG_DUE, InFlight, Outcome
from linegate.pipeline.plc_io import _ReportingInbox
from linegate.plc.reject_pipe import RejectInbox, RejectOutbox, reject_channel
from linegate.ring import FrameMeta

CTX = mp.get_context("spawn")
META = FrameMeta(seq=7, frame_id=7, part_id=42, t_acquired_ns=1, t_written_ns=2)


class _Ctx:
    """What the inbox needs of a WorkerContext: report_logs (a no-op here)."""

    def __init__(self) -> None:
        self.counters = SharedCounters.create(CTX)
        self.reports = 0

    def report_logs(self, *_args: Any) -> None:
        self.reports += 1


def make(poll_max_ns: int) -> tuple[_ReportingInbox, RejectOutbox, InFlight]:
    reader, writer = reject_channel(CTX)
    inflight = InFlight.local()
    inbox = _ReportingInbox(RejectInbox(reader), _Ctx(), None, inflight, poll_max_ns)  # type: ignore[arg-type]
    return inbox, RejectOutbox(writer, 64), inflight


def decide_after(delay_s: float, outbox: RejectOutbox | None, inflight: InFlight) -> threading.Thread:
    """The inference loop in a thread: after *delay_s*, a reject handed off to *outbox* (None: the
    frame passed, nothing handed off) and the in-flight entry moved on."""

    def decide() -> None:
        time.sleep(delay_s)
        if outbox is not None:
            outbox.offer(META.part_id, META.seq, META.t_acquired_ns)
        inflight.handed(Outcome.OK if outbox is not None else Outcome.NONE)

    thread = threading.Thread(target=decide)
    thread.start()
    return thread


def test_a_verdict_handed_off_while_polling_is_returned_by_that_take() -> None:
    inbox, outbox, inflight = make(poll_max_ns=500_000_000)
    inflight.take(META, 0)
    assert inflight.deciding
    thread = decide_after(0.02, outbox, inflight)
    got = inbox.take(1.0)
    thread.join()
    assert [r.part_id for r in got] == [42]
    assert not inflight.deciding


def test_a_pass_ends_the_poll_without_waiting_for_the_timeout() -> None:
    """The frame passed (nothing handed off): the take returns empty once the entry moves on."""
    inbox, _outbox, inflight = make(poll_max_ns=2_000_000_000)
    inflight.take(META, 0)
    thread = decide_after(0.02, None, inflight)
    t0 = time.monotonic()
    assert inbox.take(10.0) == []
    waited = time.monotonic() - t0
    thread.join()
    assert waited < 5.0, f"the take waited {waited:.1f} s of its 10 s after the decision ended"


def test_no_frame_in_flight_sleeps_until_a_reject_or_the_timeout() -> None:
    inbox, outbox, inflight = make(poll_max_ns=2_000_000_000)
    assert not inflight.deciding
    assert inbox.take(0.01) == []
    outbox.offer(5, 5, 1)
    assert [r.part_id for r in inbox.take(1.0)] == [5]


def test_polling_off_is_a_plain_take() -> None:
    inbox, outbox, inflight = make(poll_max_ns=0)
    inflight.take(META, 0)
    outbox.offer(9, 9, 1)
    assert [r.part_id for r in inbox.take(1.0)] == [9]


def assert_slept_until_a_reject_at_50_ms(due_ns: int) -> None:
    """A frame taken with *due_ns*, its reject handed off after 50 ms: the take returns it at once,
    having slept in the kernel meanwhile (little CPU used), not polled."""
    inbox, outbox, inflight = make(poll_max_ns=500_000_000)
    inflight.take(META, 0, due_ns)
    thread = decide_after(0.05, outbox, inflight)
    t0, cpu0 = time.monotonic(), time.thread_time()
    got = inbox.take(1.0)
    waited, cpu = time.monotonic() - t0, time.thread_time() - cpu0
    thread.join()
    assert [r.part_id for r in got] == [42]
    assert waited < 0.15, f"returned {waited * 1e3:.0f} ms after a reject handed off at 50 ms"
    assert cpu < 0.02, f"{cpu * 1e3:.0f} ms of CPU for a 50 ms wait: it polled instead of sleeping"


def test_a_verdict_not_due_yet_is_slept_for_not_polled_and_an_early_one_still_wakes_it() -> None:
    """The loop expects the verdict in 200 ms (a slow model): the take sleeps instead of spinning
    at the start of the frame, and a reject handed off after 50 ms, earlier than due, is returned
    at once all the same."""
    assert_slept_until_a_reject_at_50_ms(time.monotonic_ns() + 200_000_000)


def test_a_frame_taken_while_others_wait_is_slept_for_not_polled() -> None:
    """Frames queue behind the one being decided (an overload): polling would save a wake-up that is
    nothing beside their wait, and take a CPU the engine needs, so the take sleeps; the reject
    still wakes it at once."""
    inflight = InFlight.local()
    inflight.take(META, 0, BACKLOG_DUE)
    assert inflight.deciding and inflight.poll_due_ns() is None
    assert_slept_until_a_reject_at_50_ms(BACKLOG_DUE)
