"""Start linegate as a child process (as systemd would), sample it, stop it with SIGTERM, collect.

For the demo (no ``--config``) the demo's PLC simulator is started first, exactly as ``linegate
demo`` does, and the run's PLC port points at it. linegate runs in its own session, so a Ctrl-C on
the soak's terminal reaches only the soak, which then stops linegate in order with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from linegate.config import load_config
from linegate.errors import ConfigError
from linegate.service.state_file import state_path
from linegate.soak import child
from linegate.soak.memory import children, cmdline
from linegate.soak.records import LogTail
from linegate.soak.report import RunOutcome
from linegate.soak.sampler import TOTAL, Sample, take_sample

START_GRACE_S = 300.0
"""linegate stops itself at supervisor.start_timeout_ms; this is the soak's own limit on top."""
STOP_GRACE_S = 30.0
"""Beyond supervisor.stop_timeout_ms, before the soak kills what is left."""
POLL_S = 0.2
RECORDS, STDERR, JSON, MARKDOWN = "soak-records.jsonl", "linegate-run.stderr", "soak.json", "soak.md"


@dataclass(frozen=True)
class SoakPlan:
    """What to run, for how long, and where its files go."""

    config: Path | None
    """None: the demo configuration with the demo's PLC simulator."""
    duration_s: float
    sample_s: float
    out: Path
    instance: str | None = None


Echo = Callable[[str], None]


def progress_line(sample: Sample) -> str:
    """One line per sample for the terminal."""
    live, total = sample.live, sample.memory.get(TOTAL)
    mem = "n/a" if total is None else f"RSS {total.rss_kb / 1024:.1f} MB" + (
        f", PSS {total.pss_kb / 1024:.1f} MB" if total.pss_kb is not None else "")
    return (f"[{sample.t_s:7.1f}s] {live.get('state', 'starting')} | {live.get('fps', 0):.1f} fps | frames "
            f"{live.get('frames', 0)} | deadline misses {live.get('deadline_misses', 0)} | drops "
            f"{live.get('dropped', 0)} | restarts {live.get('restarts', 0)} | total {mem}")


def _sim_pid() -> int | None:
    """The demo's PLC simulator: this process's child running ``linegate.plc.sim``."""
    return next((p for p in children(os.getpid()) if "linegate.plc.sim" in cmdline(p)), None)


def run_soak(plan: SoakPlan, echo: Echo = print) -> RunOutcome:
    """Run, sample until the duration has passed since READY (or linegate ended), stop, collect."""
    from linegate.demo.runner import (
        CHECKOUT_DEMO_CONFIG,
        DEMO_CONFIG,
        PACKAGED_DEMO_CONFIG,
        PlcSimProcess,
        free_port,
        plc_knows_part_ids,
        sim_args,
    )

    plan.out.mkdir(parents=True, exist_ok=True)
    files = {"records": plan.out / RECORDS, "stderr": plan.out / STDERR}
    files["records"].unlink(missing_ok=True)
    if plan.config is None and not DEMO_CONFIG.is_file():
        raise ConfigError(f"the demo's configuration is missing (neither {PACKAGED_DEMO_CONFIG} nor "
                          f"{CHECKOUT_DEMO_CONFIG}): reinstall linegate, or pass --config")
    config_path = plan.config or DEMO_CONFIG
    cfg = load_config(config_path)  # a configuration error ends here, before anything starts (exit 78)
    sim = PlcSimProcess(free_port(), args=sim_args(cfg.plc), compact=True) if plan.config is None else None
    label = str(config_path) + (f" with the demo's PLC simulator on 127.0.0.1:{sim.port}" if sim else "")
    instance = plan.instance or cfg.instance.name
    cmd = child.command(config_path, files["records"], sim.port if sim else None, plan.instance)
    echo(f"linegate soak: {label}; instance {instance}; {plan.duration_s:g} s after READY, a sample every "
         f"{plan.sample_s:g} s; files in {plan.out}")
    run = RunOutcome(config=label, duration_s=plan.duration_s, sample_s=plan.sample_s, ready_s=None,
                     stopped_s=0.0, exit_code=None, summary=None, samples=[],
                     files={k: str(v) for k, v in files.items()})
    tail = LogTail(files["records"])
    try:
        with files["stderr"].open("wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            _sample_until_done(proc, plan, run, tail, state_path(instance), _sim_pid() if sim else None, echo)
        finally:
            _stop(proc, cfg.supervisor.stop_timeout_ms / 1000 + STOP_GRACE_S, run)
        tail.poll()
    finally:
        if sim is not None:
            time.sleep(0.2)  # let the simulator print the last edges
            sim.stop()
    run.summary, run.logged_frames, run.logged_failures = tail.summary, tail.frames, tail.failures
    run.max_latency_ms = tail.max_latency_ns / 1e6 if tail.frames else None
    if run.ready_s is None and not run.logged_failures:  # e.g. a configuration error, or the instance is running
        run.logged_failures = _last_lines(files["stderr"])
    if sim is not None and run.summary is not None:
        seen, delivered = sim.parts_seen(cfg.plc), int(run.summary.get("plc_delivered", 0))
        by_part = plc_knows_part_ids(cfg.plc)
        what = "reject pulses" if cfg.plc.mode == "pulse" else "acknowledged results"
        parts = f" for {len(set(seen))} parts" if by_part else ""
        ok = len(seen) == delivered and (not by_part or len(set(seen)) == len(seen))
        run.plc_check = (f"saw {len(seen)} {what}{parts} (linegate delivered {delivered})", ok)
    return run


def _sample_until_done(
    proc: subprocess.Popen[bytes], plan: SoakPlan, run: RunOutcome, tail: LogTail, state: Path,
    sim_pid: int | None, echo: Echo,
) -> None:
    t0 = time.monotonic_ns()
    sample_ns, duration_ns = int(plan.sample_s * 1e9), int(plan.duration_s * 1e9)
    next_sample, stop_at = t0, t0 + duration_ns + int(START_GRACE_S * 1e9)  # moved to READY + duration
    outside = {"plc-sim": sim_pid} if sim_pid is not None else None

    def sample(now: int) -> None:
        tail.poll()  # first: the log names the worker pids
        s = take_sample((now - t0) / 1e9, proc.pid, tail, state, outside)
        run.samples.append(s)
        echo(progress_line(s))

    try:
        with _stop_signals_interrupt():
            _sample_loop(proc, run, tail, t0, stop_at, next_sample, sample_ns, duration_ns, sample)
    except _Interrupted as exc:
        run.cut_short = f"interrupted ({exc.why}) before the duration had passed"
        echo(f"linegate soak: interrupted ({exc.why}): stopping linegate with SIGTERM")
    run.stopped_s = (time.monotonic_ns() - t0) / 1e9


class _Interrupted(Exception):
    """The soak was told to stop (Ctrl-C, SIGTERM, SIGHUP) before its duration had passed."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _stop_signals_interrupt:
    """SIGINT, SIGTERM and SIGHUP raise :class:`_Interrupted` while the soak samples, so linegate is
    stopped in order and the report written, however the soak itself is stopped (Ctrl-C, ``kill``,
    a closed terminal; a background shell starts it with SIGINT ignored, so that is set too)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __enter__(self) -> None:
        self._old = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        for sig in self.SIGNALS:
            signal.signal(sig, self._raise)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    @staticmethod
    def _raise(signum: int, _frame: object) -> None:
        why = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        raise _Interrupted(why)


def _sample_loop(
    proc: subprocess.Popen[bytes], run: RunOutcome, tail: LogTail, t0: int, stop_at: int, next_sample: int,
    sample_ns: int, duration_ns: int, sample: Callable[[int], None],
) -> None:
    """Sample every *sample_ns* until *duration_ns* after READY (or linegate ends by itself)."""
    while True:
        if proc.poll() is not None:
            run.cut_short = "linegate exited by itself before the duration had passed"
            break
        now = time.monotonic_ns()
        if run.ready_s is None:
            tail.poll()
            if tail.ready_seen:
                run.ready_s, stop_at = (now - t0) / 1e9, now + duration_ns
        if now >= stop_at:
            sample(now)  # the last sample: linegate still running
            break
        if now >= next_sample:
            sample(now)
            next_sample += sample_ns * max(1, (now - next_sample) // sample_ns + 1)
        wake = min(next_sample, stop_at) if run.ready_s is not None else now + int(POLL_S * 1e9)
        time.sleep(max(0.0, min(wake, stop_at) - time.monotonic_ns()) / 1e9)


def _stop(proc: subprocess.Popen[bytes], wait_s: float, run: RunOutcome) -> None:
    """SIGTERM, as ``systemctl stop`` sends it; SIGKILL if linegate has not stopped within *wait_s*."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        run.exit_code = proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        run.exit_code = proc.wait()
        run.forced = f"killed: not stopped {wait_s:.0f} s after SIGTERM"


def _last_lines(path: Path, n: int = 3) -> list[str]:
    """The last *n* non-empty lines of *path* (linegate's stderr: why it could not start)."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return []
    return lines[-n:]
