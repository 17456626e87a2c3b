"""Exactly once, reconciled at the PLC: a real RejectWorker (pulse mode, Modbus) against the recording,
fault-injecting libmodbus server (tests/plc/recording_server.c).

Each test feeds rejects through the real reject pipe, a few ms apart and due at once, while the server
injects one fault. Then the server's applied writes are replayed in order: each rising edge of the reject
coil is one pulse, carrying the part id that the two part-id registers held at that moment. The pulses
must match the worker's log: every reject has exactly one record; the parts pulsed are the parts logged
``reject_delivered``; no part is pulsed twice; a part pulsed and logged undelivered is allowed only with
reason ``delivery_unknown`` (the worker said it cannot know), and those are few; no delivered reject is
later than ``max_late_ms``; every delivered pulse lasts at least ``pulse_ms`` at the server; the coil
ends OFF.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from linegate.config.schema import PlcSection
from linegate.counters import Count, SharedCounters
from linegate.plc.links import create_link
from linegate.plc.modbus import ModbusLink
from linegate.plc.pulse import PulseMode
from linegate.plc.reject_pipe import RejectInbox, RejectOutbox, reject_channel
from linegate.plc.worker import RejectWorker
from tests.plc import recording_peer
from tests.plc.recording_peer import COIL_FCS, REGISTER_FCS, Record, RecordingServer
from tests.plc.test_worker import CTX, MS, RecordingLog, plc_section

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(recording_peer.available() is not None, reason=str(recording_peer.available())),
]

COIL = 3  # plc_section's reject_coil
PID_REG = 10  # plc_section's part_id_register: high word here, low word at PID_REG + 1
TIMEOUT_MS = 20.0
PULSE_MS = 4.0
MAX_LATE_MS = 500.0
RECONNECT_MAX_MS = 100.0
FIRST_PART = 70_000  # above 16 bits: both part-id registers matter
SETTLE_S = 20.0  # a run that has not settled every reject by then is a hang
WIDTH_SLACK_MS = 0.01  # rounding only: OFF is sent pulse_ms after ON's confirmation, which follows ON's apply


# -- worker, feeding -------------------------------------------------------------------------------


class TimedLog(RecordingLog):
    """RecordingLog that also stamps each record with ``time.monotonic_ns()`` (the server's clock)."""

    def _add(self, event: str, **kw: Any) -> None:
        super()._add(event, t_log_ns=time.monotonic_ns(), **kw)

    info = warning = error = _add


def section(port: int, **extra: Any) -> PlcSection:
    """Pulse mode on the recording server: 20 ms timeouts, short pulses, a realistic max_late."""
    settings: dict[str, Any] = {
        "pulse_ms": PULSE_MS,
        "max_late_ms": MAX_LATE_MS,
        "reconnect_min_ms": 10.0,
        "reconnect_max_ms": RECONNECT_MAX_MS,
    }
    settings.update(extra)
    return plc_section(port, modbus={"timeout_ms": TIMEOUT_MS, "retries": 2}, **settings)


def new_worker(cfg: PlcSection) -> tuple[RejectWorker, TimedLog]:
    log = TimedLog()
    return RejectWorker(cfg, create_link(cfg), SharedCounters.create(CTX), log), log


class Background:
    """A daemon thread whose exception is re-raised by ``join``."""

    def __init__(self, target: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self._target = target
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def join(self, timeout: float = 10.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "a background thread of the test did not finish"
        if self.error is not None:
            raise self.error


@dataclass
class Run:
    """One scenario: the worker, what it logged, what the server applied, and which parts were fed."""

    name: str
    worker: RejectWorker
    log: TimedLog
    server: RecordingServer
    parts: list[int]
    fed_ns: dict[int, int] = field(default_factory=dict)
    """part id -> t_acquired_ns it was fed with."""
    elapsed_s: float = 0.0
    settled: bool = False


def run_line(
    name: str,
    server: RecordingServer,
    n: int,
    spacing_s: float,
    *,
    controls: Sequence[Callable[[], None]] = (),
    setup: Callable[[RejectWorker], None] | None = None,
    **cfg: Any,
) -> Run:
    """Feed *n* rejects *spacing_s* apart through a real reject pipe (each due at once) while *controls*
    run beside it; step the worker until every reject has its outcome and no delivery is open."""
    worker, log = new_worker(section(server.port, **cfg))
    if setup is not None:
        setup(worker)
    run = Run(name, worker, log, server, [FIRST_PART + i for i in range(n)])
    reader, writer = reject_channel(CTX)
    outbox = RejectOutbox(writer, capacity=1024)
    inbox = RejectInbox(reader)
    fed = threading.Event()

    def feed() -> None:
        try:
            for seq, part in enumerate(run.parts):
                t = time.monotonic_ns()
                run.fed_ns[part] = t
                assert outbox.offer(part, seq, t), "reject pipe full"
                time.sleep(spacing_s)
        finally:
            fed.set()

    c = worker.counters
    t0 = time.monotonic()
    threads = [Background(feed), *(Background(control) for control in controls)]
    try:
        end = t0 + SETTLE_S
        while time.monotonic() < end:
            worker.step(inbox, time.monotonic_ns())
            done = c.get(Count.PLC_DELIVERED) + c.get(Count.PLC_UNDELIVERED)
            if fed.is_set() and done >= n and not worker.busy():
                run.settled = True
                break
        run.elapsed_s = time.monotonic() - t0
    finally:
        for thread in threads:
            thread.join()
        inbox.close()
        outbox.close()
    return run


# -- the server's view -----------------------------------------------------------------------------


@dataclass
class Pulse:
    """One rising edge of the reject coil at the server, the part id it carried, and its falling edge."""

    part_id: int
    t_on_ns: int
    t_off_ns: int | None = None

    @property
    def width_ms(self) -> float | None:
        return None if self.t_off_ns is None else (self.t_off_ns - self.t_on_ns) / MS


def pulses_at_server(writes: list[Record], rewritten: list[int] | None = None) -> list[Pulse]:
    """Replay the applied writes in order: registers and coil as the PLC held them, one Pulse per ON edge.
    An ON applied while the coil is already ON makes no edge: its part id goes to *rewritten*."""
    regs = {PID_REG: 0, PID_REG + 1: 0}
    on = False
    pulses: list[Pulse] = []
    for w in writes:
        if w.fc in REGISTER_FCS:
            for addr in regs:
                if w.covers(addr):
                    regs[addr] = w.values[addr - w.addr]
        elif w.fc in COIL_FCS and w.covers(COIL):
            value = bool(w.values[COIL - w.addr])
            part = (regs[PID_REG] << 16) | regs[PID_REG + 1]
            if value and not on:
                pulses.append(Pulse(part, w.t_ns))
            elif value and rewritten is not None:
                rewritten.append(part)
            elif on and not value:
                pulses[-1].t_off_ns = w.t_ns
            on = value
    return pulses


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


def request_kind(r: Record) -> str:
    """What the worker meant by a request, from its record (a swallowed coil write has no value)."""
    if r.fc == 16 and r.covers(PID_REG):
        return "part_id"
    if r.fc == 5 and r.addr == COIL:
        return ("on" if r.values[0] else "off") if r.values else "coil write"
    if r.fc == 1:
        return "read_back"
    return f"fc{r.fc}"


def requests(server: RecordingServer) -> list[Record]:
    """One record per request the server received, in order (applied, read, refused or swallowed)."""
    return [r for r in server.records() if r.kind in ("W", "R", "E", "S")]


def trail(run: Run, part_id: int, pulses: list[Pulse], limit: int = 60) -> str:
    """The server's records and the worker's log around *part_id*, merged in time order: everything within
    a few ms of its write, its records and its pulse, and the worker's link events in between."""
    mine = [kw for _, kw in run.log.records if kw.get("part_id") == part_id]
    anchors = [kw["t_log_ns"] for kw in mine] + [kw["t_pulse_ns"] for kw in mine if "t_pulse_ns" in kw]
    for p in pulses:
        if p.part_id == part_id:
            anchors += [p.t_on_ns] + ([p.t_off_ns] if p.t_off_ns is not None else [])
    if not anchors:
        return f"  part {part_id}: no record, no pulse"
    near = 3 * MS
    lo, hi = min(anchors) - near, max(anchors) + near

    def shown(t: int) -> bool:
        return any(abs(t - a) <= near for a in anchors)

    rows: list[tuple[int, str]] = []
    for r in run.server.records():
        if shown(r.t_ns):
            what = request_kind(r) if r.kind in ("W", "R", "E", "S") else ""
            rows.append((r.t_ns, f"server {r.kind} fc={r.fc} addr={r.addr} values={r.values} conn={r.conn} {what}"))
    for event, kw in run.log.records:
        t = kw["t_log_ns"]
        if shown(t) or (lo <= t <= hi and event.startswith("plc_")):
            fields = {k: v for k, v in kw.items() if k != "t_log_ns"}
            rows.append((t, f"log    {event} {fields}"))
    rows.sort(key=lambda row: row[0])
    t0 = run.fed_ns.get(part_id, lo)
    lines = [f"  {(t - t0) / MS:+9.3f} ms  {text}" for t, text in rows[:limit]]
    more = f"\n  ... {len(rows) - limit} more" if len(rows) > limit else ""
    return f"  part {part_id} (ms since it was fed):\n" + "\n".join(lines) + more


@dataclass
class Summary:
    delivered: dict[str, int]
    """confirmed_by -> count."""
    undelivered: dict[str, int]
    """reason -> count."""
    unknown: list[int]
    """parts logged delivery_unknown."""
    pulses: list[Pulse]
    counters: dict[str, int]


def reconcile(run: Run, *, max_unknown: int) -> Summary:
    """Check the worker's log against the pulses the server saw (see the module docstring); print figures."""
    assert run.settled, f"{run.name}: not every reject settled within {SETTLE_S} s (a hang?)"
    writes = run.server.writes()
    rewritten: list[int] = []
    pulses = pulses_at_server(writes, rewritten)
    edges = run.server.coil_edges(COIL)
    assert len(edges) == len(pulses) + sum(p.t_off_ns is not None for p in pulses)  # the replay agrees

    delivered = run.log.events("reject_delivered")
    undelivered = run.log.events("reject_undelivered")
    records = Counter(r["part_id"] for r in delivered + undelivered)
    reason = {r["part_id"]: r["reason"] for r in undelivered}
    delivered_ids = {r["part_id"] for r in delivered}
    unknown = sorted(p for p, why in reason.items() if why == "delivery_unknown")
    pulsed = Counter(p.part_id for p in pulses)
    fed = set(run.parts)
    max_late = run.worker.cfg.max_late_ms
    pulse_ms = run.worker.cfg.pulse_ms

    problems: list[str] = []
    suspects: set[int] = set()

    def problem(text: str, parts: Sequence[int]) -> None:
        problems.append(f"{text}: {sorted(parts)[:20]}")
        suspects.update(list(parts)[:3])

    problem_parts = [p for p in run.parts if records[p] != 1]
    if problem_parts:
        problem("rejects without exactly one record (delivered xor undelivered)", problem_parts)
    if set(records) - fed:
        problem("records for parts never fed", list(set(records) - fed))
    twice = [p for p, k in pulsed.items() if k > 1]
    if twice:
        problem("parts pulsed more than once", twice)
    if rewritten:
        problem("ON written again while the coil was ON (a second fire hidden in one pulse)", rewritten)
    strangers = [p for p in pulsed if p not in fed]
    if strangers:
        problem("pulses carrying a part id never fed", strangers)
    not_pulsed = delivered_ids - set(pulsed)
    if not_pulsed:
        problem("logged reject_delivered but never pulsed at the server", list(not_pulsed))
    pulsed_undelivered = [p for p in pulsed if p in fed and p not in delivered_ids]
    bad = [p for p in pulsed_undelivered if reason.get(p) != "delivery_unknown"]
    if bad:
        problem("pulsed at the server but logged undelivered (not delivery_unknown)", bad)
    late = [r["part_id"] for r in delivered if r["late_ms"] > max_late]
    if late:
        problem(f"delivered later than max_late_ms={max_late}", late)
    if pulses and pulses[-1].t_off_ns is None:
        problem("reject coil left ON at the server after the run", [pulses[-1].part_id])
    short = [p.part_id for p in pulses if p.part_id in delivered_ids and p.t_off_ns is not None
             and (p.width_ms or 0.0) < pulse_ms - WIDTH_SLACK_MS]  # fmt: skip
    if short:
        problem(f"delivered pulses shorter than pulse_ms={pulse_ms} at the server", short)
    if len(unknown) > max_unknown:
        problem(f"more than {max_unknown} delivery_unknown", unknown)

    c = run.worker.counters
    counters = {
        "read_backs": c.get(Count.PLC_READ_BACKS),
        "retries": c.get(Count.PLC_RETRIES),
        "reconnects": c.get(Count.PLC_RECONNECTS),
        "late": c.get(Count.PLC_LATE),
        "delivery_unknown": c.get(Count.PLC_DELIVERY_UNKNOWN),
    }
    by_confirm = dict(Counter(str(r.get("confirmed_by")) for r in delivered))
    by_reason = dict(Counter(reason.values()))
    widths = [p.width_ms for p in pulses if p.width_ms is not None and p.part_id in delivered_ids]
    lates = [float(r["late_ms"]) for r in delivered]
    print(
        f"\n[{run.name}] {len(run.parts)} rejects, settled in {run.elapsed_s:.2f} s\n"
        f"  delivered {len(delivered)} {by_confirm}; undelivered {len(undelivered)} {by_reason}\n"
        f"  counters {counters}\n"
        f"  server: {len(pulses)} pulses, {len(writes)} writes, {len(run.server.exceptions())} exception replies,"
        f" {len(run.server.swallowed())} swallowed, {sum(r.kind == 'C' for r in run.server.connections())} connects\n"
        f"  pulse width at the server (delivered) ms: p50 {pct(widths, 0.5):.2f} p99 {pct(widths, 0.99):.2f}"
        f" min {min(widths, default=float('nan')):.2f} max {max(widths, default=float('nan')):.2f}\n"
        f"  late_ms (delivered): p50 {pct(lates, 0.5):.1f} max {max(lates, default=float('nan')):.1f}"
        f" (max_late_ms {max_late})"
    )
    if unknown:
        unknown_pulses = {p.part_id: p.width_ms for p in pulses if p.part_id in unknown}
        print(f"  delivery_unknown parts {unknown}; pulsed at the server (width ms): {unknown_pulses}")
    if problems:
        evidence = "\n".join(trail(run, p, pulses) for p in sorted(suspects))
        pytest.fail(f"{run.name}: exactly-once violated:\n- " + "\n- ".join(problems) + "\n" + evidence)
    return Summary(by_confirm, by_reason, unknown, pulses, counters)


def assert_output_off_after(run: Run) -> None:
    """The worker left the coil OFF by itself (it is idle), and it stays OFF after shutdown."""
    edges = run.server.coil_edges(COIL)
    assert not edges or edges[-1][1] is False, f"{run.name}: reject coil ON at the server with the worker idle"
    run.worker.shutdown()
    edges = run.server.coil_edges(COIL)
    assert not edges or edges[-1][1] is False


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recording")
    recording_peer.build(path)
    return path


StartServer = Callable[..., RecordingServer]


@pytest.fixture
def start(build_dir: Path) -> Iterator[StartServer]:
    """Starts RecordingServers with the given faults; stops them all at the end of the test."""
    servers: list[RecordingServer] = []

    def _start(**faults: Any) -> RecordingServer:
        server = RecordingServer(build_dir, **faults)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()


# -- 1, 2: late replies ----------------------------------------------------------------------------


def test_a_fifth_of_replies_later_than_the_timeout(start: StartServer) -> None:
    """20% of replies 30 ms late (after applying): every reject once, pulsed iff logged delivered."""
    server = start(delay_ms=30, delay_share=0.2, seed=7)
    run = run_line("20% of replies delayed 30 ms", server, 150, 0.02)
    summary = reconcile(run, max_unknown=150 // 20)
    assert_output_off_after(run)
    assert summary.counters["read_backs"] > 0  # the fault was exercised
    assert summary.delivered.get("read_back", 0) > 0


def test_every_on_reply_later_than_the_timeout(start: StartServer) -> None:
    """Every coil-ON reply 30 ms late: each ON is settled by reading the coil back, never re-sent."""
    server = start(delay_ms=30, delay_on_only=True)
    run = run_line("coil-ON replies delayed 30 ms", server, 100, 0.025)
    summary = reconcile(run, max_unknown=2)
    assert_output_off_after(run)
    assert summary.delivered.get("read_back", 0) > 0
    # An ON that reached the PLC is never written again: one ON write per delivered reject, at most
    # one more per reject settled 'not_applied' or retried (none expected: every ON is applied).
    on_writes = [w for w in server.writes() if request_kind(w) == "on"]
    assert len(on_writes) == len(summary.pulses)


# -- 3: a connection dropped after applying, a request swallowed ------------------------------------

TARGET = 20  # the reject (0-based) whose request is hit
KINDS = ("part_id", "on", "off")


def target_request(kind: str) -> int:
    """Request number (1-based, over all connections) of *kind* for reject TARGET, fault-free until then:
    1 is the safe-state OFF at connect, then part id, ON, OFF per reject."""
    return 2 + 3 * TARGET + KINDS.index(kind)


@pytest.mark.parametrize("kind", KINDS)
def test_connection_dropped_after_applying(start: StartServer, kind: str) -> None:
    """A request applied, then its connection closed without a reply: the write's fate is read back."""
    k = target_request(kind)
    server = start(drop_after=k)
    run = run_line(f"dropped after applying request {k} ({kind})", server, 100, 0.008)
    summary = reconcile(run, max_unknown=1)
    assert_output_off_after(run)
    hit = requests(server)[k - 1]
    part = FIRST_PART + TARGET
    print(f"  dropped request: {request_kind(hit)}")
    outcome = {r["part_id"]: r for r in run.log.events("reject_delivered")}
    if request_kind(hit) == kind:  # nothing else timed out before it (a loaded machine can shift it)
        assert part in outcome, f"part {part} not delivered after one dropped connection"
        if kind == "on":
            assert outcome[part]["confirmed_by"] == "read_back"
        if kind == "part_id":
            assert summary.counters["read_backs"] >= 1 and summary.counters["retries"] >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_request_swallowed_until_the_plc_resumes(start: StartServer, kind: str) -> None:
    """PLC swallows every request for ~300 ms from one on: held rejects fired after, none twice or unrecorded."""
    k = target_request(kind)
    server = start(stall_after=k - 1)

    def resume_later() -> None:
        server.wait_for(lambda recs: any(r.kind == "S" for r in recs), timeout=10)
        time.sleep(0.3)
        server.stall_resume()

    run = run_line(f"stalled from request {k} ({kind}) for 300 ms", server, 100, 0.008, controls=[resume_later])
    reconcile(run, max_unknown=2)
    assert_output_off_after(run)
    hit = requests(server)[k - 1]
    swallowed = server.swallowed()
    print(f"  request {k}: {hit.kind} fc={hit.fc}; swallowed {[request_kind(r) for r in swallowed]}")
    assert swallowed and not [w for w in server.writes() if swallowed[0].t_ns <= w.t_ns <= swallowed[-1].t_ns]


# -- 4: the PLC frozen (SIGSTOP) ---------------------------------------------------------------------


def held_through(run: Run, t_pause: int, t_resume: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Delivered records of rejects fed while the server was frozen, and of those fired after it resumed."""
    delivered = run.log.events("reject_delivered")
    during = [r for r in delivered if t_pause <= run.fed_ns[r["part_id"]] <= t_resume]
    return during, [r for r in during if r["t_pulse_ns"] >= t_resume]


def test_plc_frozen_for_1_5_s_mid_run(start: StartServer) -> None:
    """SIGSTOP 1.5 s mid-run: held rejects fired after SIGCONT within max_late, the rest reported, coil OFF."""
    server = start()
    marks: dict[str, int] = {}

    def freeze() -> None:
        time.sleep(0.4)
        marks["pause"] = time.monotonic_ns()
        server.pause()
        try:
            time.sleep(1.5)
        finally:
            marks["resume"] = time.monotonic_ns()
            server.resume()

    run = run_line("SIGSTOP 1.5 s at 0.4 s", server, 250, 0.01, controls=[freeze])
    summary = reconcile(run, max_unknown=2)
    assert_output_off_after(run)
    during, after = held_through(run, marks["pause"], marks["resume"])
    print(f"  fed during the freeze and delivered: {len(during)}, of those fired after SIGCONT: {len(after)}")
    assert after, "no reject held through the freeze was fired after it"
    assert all(r["late_ms"] <= MAX_LATE_MS for r in after)
    assert summary.undelivered.get("plc_unreachable", 0) > 0  # those held past max_late were reported


class FreezeOnNthOn:
    """Test hook on the worker's own link: SIGSTOP the server just before the n-th coil-ON request goes
    out (so that ON sits unread in the server's socket), SIGCONT it after *freeze_s*, or, with
    *at_read_back*, just before the first read-back sent after *freeze_s* (so the frozen ON is applied
    and read back within one round trip)."""

    def __init__(self, server: RecordingServer, n: int, freeze_s: float, *, at_read_back: bool) -> None:
        self.server, self.n, self.freeze_ns, self.at_read_back = server, n, int(freeze_s * 1e9), at_read_back
        self.ons = 0
        self.t_pause: int | None = None
        self.t_resume: int | None = None
        self.frozen_part: int | None = None
        self._lock = threading.Lock()

    def install(self, worker: RejectWorker) -> None:
        link = worker.link
        assert isinstance(link, ModbusLink)
        write_flag, read_flag, write_part_id = link.write_flag, link.read_flag, link.write_part_id
        last_part: list[int] = [0]

        def hooked_part_id(part_id: int) -> None:
            last_part[0] = part_id
            write_part_id(part_id)

        def hooked_write(flag: Any, on: bool) -> None:
            if flag == "reject" and on:
                self.ons += 1
                if self.ons == self.n:
                    self.frozen_part = last_part[0]
                    self.pause()
            write_flag(flag, on)

        def hooked_read(flag: Any) -> bool:
            if self.at_read_back and self.t_pause is not None and time.monotonic_ns() - self.t_pause >= self.freeze_ns:
                self.resume()
            return read_flag(flag)

        link.write_part_id = hooked_part_id  # type: ignore[method-assign]
        assert isinstance(worker.mode, PulseMode)
        worker.mode.write_part_id = hooked_part_id  # it holds the bound method it was given
        link.write_flag = hooked_write  # type: ignore[method-assign]
        link.read_flag = hooked_read  # type: ignore[method-assign]

    def pause(self) -> None:
        with self._lock:
            self.t_pause = time.monotonic_ns()
            self.server.pause()

    def resume(self) -> None:
        with self._lock:
            if self.t_resume is None and self.t_pause is not None:
                self.server.resume()
                self.t_resume = time.monotonic_ns()

    def watchdog(self) -> None:
        """Resume by timer (plain mode), or at the latest after 3 s (if no read-back came)."""
        end = time.monotonic() + 8
        while self.t_pause is None and time.monotonic() < end:
            time.sleep(0.001)
        assert self.t_pause is not None, f"ON #{self.n} was never sent"
        limit_ns = 3_000_000_000 if self.at_read_back else self.freeze_ns
        while self.t_resume is None and time.monotonic_ns() - self.t_pause < limit_ns:
            time.sleep(0.002)
        self.resume()


def test_plc_frozen_with_an_on_request_unread_past_max_late(start: StartServer) -> None:
    """SIGSTOP 1.5 s as an ON goes out: that part is delivery_unknown (its ON lands at SIGCONT), the rest once."""
    server = start()
    hook = FreezeOnNthOn(server, 30, 1.5, at_read_back=False)
    run = run_line("SIGSTOP 1.5 s with ON #30 unread", server, 250, 0.01, controls=[hook.watchdog], setup=hook.install)
    summary = reconcile(run, max_unknown=1)
    assert_output_off_after(run)
    frozen = hook.frozen_part
    assert frozen is not None and frozen in summary.unknown
    # Its ON was not lost but held in the frozen PLC's socket, and applied at SIGCONT: hence "unknown".
    assert [p.part_id for p in summary.pulses].count(frozen) == 1
    assert hook.t_pause is not None and hook.t_resume is not None
    during, after = held_through(run, hook.t_pause, hook.t_resume)
    print(f"  fed during the freeze and delivered: {len(during)}, of those fired after SIGCONT: {len(after)}")
    assert after and all(r["late_ms"] <= MAX_LATE_MS for r in after)


def test_plc_frozen_with_an_on_request_unread_then_read_back(start: StartServer) -> None:
    """ON held by a frozen PLC, applied at SIGCONT and read back: delivered, and ON for pulse_ms at the PLC."""
    server = start()
    hook = FreezeOnNthOn(server, 30, 0.25, at_read_back=True)
    run = run_line("SIGSTOP, ON #30 unread, SIGCONT at a read-back", server, 150, 0.01, controls=[hook.watchdog],
                   setup=hook.install)  # fmt: skip
    frozen = hook.frozen_part
    outcome = {r["part_id"]: r for r in run.log.events("reject_delivered")}
    print(f"  frozen ON: part {frozen}, outcome {outcome.get(frozen) or 'undelivered'}")
    summary = reconcile(run, max_unknown=1)
    assert_output_off_after(run)
    assert frozen is not None and outcome.get(frozen, {}).get("confirmed_by") == "read_back"
    assert [p.part_id for p in summary.pulses].count(frozen) == 1


# -- 5: the PLC refuses the coil write ---------------------------------------------------------------


def test_exception_reply_to_every_coil_write(start: StartServer) -> None:
    """FC5 answered with an exception: every reject reported plc_refused with its part id, none pulsed."""
    server = start(exception_fc=5)
    run = run_line("FC5 exception replies", server, 60, 0.003)
    summary = reconcile(run, max_unknown=0)
    assert_output_off_after(run)
    assert summary.undelivered == {"plc_refused": 60}
    assert summary.pulses == [] and not [w for w in server.writes() if w.fc in COIL_FCS]
    assert sorted(r["part_id"] for r in run.log.events("reject_undelivered")) == run.parts


# -- 6: the PLC answers the coil write with a malformed reply ----------------------------------------


def test_malformed_reply_to_every_coil_write(start: StartServer) -> None:
    """FC5 applied but answered one byte short (a faulty PLC firmware; the same case as libmodbus's own
    bad-length fault, which Debian 12's libmodbus lacks): the safe-state write at connect already fails,
    so the worker never reaches the ON write; nothing hangs, nothing is pulsed, and each reject is
    reported plc_unreachable with its part id and the call that failed."""
    server = start(short_reply_fc=5)
    run = run_line("FC5 replies one byte short", server, 30, 0.003)
    summary = reconcile(run, max_unknown=0)
    assert_output_off_after(run)
    assert summary.undelivered == {"plc_unreachable": 30} and summary.pulses == []
    undelivered = run.log.events("reject_undelivered")
    assert sorted(r["part_id"] for r in undelivered) == run.parts
    assert all(f"write_coil({COIL}) on 127.0.0.1:{server.port}" in r["error"] for r in undelivered)
    assert [w for w in server.writes() if w.fc == 5] and not server.exceptions()  # applied, never refused


def test_malformed_reply_to_coil_on_only(start: StartServer) -> None:
    """Only the ON write is answered one byte short, after the PLC applied it: the worker cannot take the
    reply as a confirmation, so a reject is delivered only when reading the coil back confirms it, and
    otherwise reported with its part id (delivery_unknown where the pulse may have happened; on this
    machine most go plc_unreachable, as each bad reply costs a reconnect); no part is pulsed twice
    (reconcile) and the output ends OFF."""
    server = start(short_reply_fc=5, short_reply_on_only=True)
    run = run_line("coil-ON replies one byte short", server, 30, 0.003)
    reconcile(run, max_unknown=30)  # every part pulsed and logged undelivered is delivery_unknown
    assert_output_off_after(run)
    delivered = run.log.events("reject_delivered")
    # a malformed reply never counts as the PLC's confirmation: only a read-back of the coil does
    assert delivered and {r["confirmed_by"] for r in delivered} == {"read_back"}
