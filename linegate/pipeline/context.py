"""What the supervisor hands each worker process at start (picklable)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from linegate.config.schema import Config
from linegate.counters import SharedCounters
from linegate.logs import Sink, configure_logging, get_logger
from linegate.pipeline.log_pipes import PipeSink, warn_if_small
from linegate.pipeline.process import become_worker
from linegate.pipeline.scheduling import ServiceCpus, apply_scheduling, loop_would_starve, usable_cpus
from linegate.roles import Role


@dataclass(frozen=True)
class WorkerContext:
    """Configuration, shared counters and logging settings common to all workers."""

    cfg: Config
    counters: SharedCounters
    log_pipe: Connection  # writing end of this worker's log pipe to the supervisor
    supervisor_pid: int
    camera: str = ""
    """The camera this worker serves, with several cameras: every record it writes names it."""

    def enter(self, role: Role, rt_later: bool = False) -> tuple[Any, Sink]:
        """Turn the current process into the *role* worker; returns its logger and log sink.
        *rt_later*: apply the CPU affinity now but leave the real-time priority to
        :meth:`apply_rt_priority` (threads started before it keep the normal scheduler)."""
        become_worker(self.supervisor_pid)
        pipe = PipeSink(self.log_pipe)
        sink = configure_logging(
            level=self.cfg.logging.level,
            sink=pipe,
            static={"instance": self.cfg.instance.name, "proc": role, "pid": os.getpid()}
            | ({"camera": self.camera} if self.camera else {}),
        )
        log = get_logger()
        log.info("worker_started", role=role)
        warn_if_small(pipe, log)
        sched = self.cfg.scheduling
        rt_priority = 0 if rt_later else getattr(sched, f"{role}_rt_priority")
        for problem in apply_scheduling(rt_priority, getattr(sched, f"{role}_cpus"), role):
            log.warning("scheduling_not_applied", problem=problem)
        return log, sink

    def apply_rt_priority(self, role: Role, log: Any) -> None:
        """The *role* worker's real-time priority, for the calling thread and the threads it starts
        from now on (after ``enter(role, rt_later=True)``). Not for the inference loop where it
        would keep another worker off its only CPU (:func:`loop_would_starve`)."""
        priority = getattr(self.cfg.scheduling, f"{role}_rt_priority")
        starving = loop_would_starve(self.cfg.scheduling, self._cpus()) if role == Role.INFER else []
        for problem in starving or apply_scheduling(priority, (), role):
            log.warning("scheduling_not_applied", problem=problem)

    def _cpus(self) -> ServiceCpus:
        """This (pinned) worker's CPUs as the loop's, the supervisor's as the service's."""
        try:
            service = os.sched_getaffinity(self.supervisor_pid)
        except OSError:  # the supervisor is gone: this worker is about to stop anyway
            service = os.sched_getaffinity(0)
        return ServiceCpus(frozenset(os.sched_getaffinity(0)), frozenset(service), usable_cpus())

    def report_logs(self, role: Role, sink: Sink, now_ns: int | None) -> None:
        """Publish this process's log-sink totals, at most once per second (*now_ns* None: now)."""
        if now_ns is not None and now_ns < sink.next_report_ns:
            return
        sink.next_report_ns = (now_ns or 0) + 1_000_000_000
        self.counters.add_log_drops(role, sink.unreported_drops())


def worker_exit_code(exc: BaseException) -> int:
    """Exit code of a worker that failed with *exc*: 78 (EX_CONFIG) for configuration problems."""
    from linegate.errors import ConfigError

    return 78 if isinstance(exc, ConfigError) else 1


def run_worker(role: str, errors: Any, main: Any, *args: Any) -> None:
    """Process target: run *main*, and report a failure as ``(role, exit_code, message)`` on *errors*."""
    try:
        main(*args)
    except BaseException as exc:
        code = worker_exit_code(exc)
        errors.put((role, code, f"{type(exc).__name__}: {exc}"))
        errors.close()
        errors.join_thread()
        raise SystemExit(code) from exc
