"""Reloads and recipe changes: a new configuration replaces workers one at a time, each through a
warm hand-over at a frame boundary, while the supervisor keeps the line running.

SIGHUP reloads the configuration file: an invalid one, or one changing keys that need a restart,
is refused and the running configuration stays. A PLC recipe change switches the model the same
way. The :class:`Reloader` is owned by the supervisor, which calls it every turn of its loop and
is reached back only through :class:`ReloadHost`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from linegate.config.loader import load_config
from linegate.config.schema import Config
from linegate.counters import Count, SharedCounters
from linegate.errors import ConfigError
from linegate.pipeline.published_state import ReloadState
from linegate.pipeline.workers import Worker
from linegate.roles import SECTIONS_OF_ROLE, Role
from linegate.service.notify import Notifier
from linegate.service.reload import plan_reload


class ReloadHost(Protocol):
    """What the reloader asks of the supervisor that owns it."""

    @property
    def cfg(self) -> Config:
        """The configuration the line runs with."""
        ...

    def active(self, role: Role) -> Worker | None:
        """The worker doing *role*'s job now."""
        ...

    def spawn_successor(self, role: Role, cfg: Config, predecessor: Worker) -> Worker:
        """Start a *role* worker on *cfg* that takes over from *predecessor* once it is warm."""
        ...

    def promote(self, successor: Worker) -> None:
        """Make *successor* (up, handed over to) the active worker of its role."""
        ...

    def adopt(self, cfg: Config) -> None:
        """Every worker runs on *cfg* now: it is the running configuration."""
        ...

    def publish(self) -> None:
        """Rewrite the state file (``linegate reload`` waits there for the outcome)."""
        ...

    def status_text(self) -> str:
        """The STATUS line for systemd."""
        ...


class Reloader:
    """The reload state machine: refuse, or replace the changed workers in order, then adopt."""

    def __init__(
        self,
        host: ReloadHost,
        *,
        config_path: Path | None,
        counters: SharedCounters,
        log: Any,
        notify: Notifier,
        answers: ReloadState,
    ) -> None:
        self.host = host
        self.config_path = config_path
        self.counters = counters
        self.log = log
        self.notify = notify
        self.answers = answers
        self.candidates: dict[Role, Worker] = {}
        """Successors started and not yet promoted (at most one: workers are replaced one at a time)."""
        self._queue: list[Role] = []
        self._target: Config | None = None
        self._recipe_applied = 0
        self._promoted: list[Role] = []
        """Roles whose successor has taken over in the change under way (with the new configuration)."""
        self._recipe_target: int | None = None
        """The recipe number the change under way applies (None: a reload, or nothing under way)."""

    @property
    def busy(self) -> bool:
        """A reload or recipe change is being applied."""
        return bool(self._queue or self.candidates)

    def request(self) -> None:
        """SIGHUP: load the configuration file again and apply it, or refuse it."""
        self.answers.requested += 1
        self.notify.reloading()
        self.log.info("reload_requested", config=str(self.config_path) if self.config_path else None)
        if self.config_path is None:
            self._failed("no configuration file to reload (started without --config)")
            return
        if self.busy:
            self.log.warning("reload_ignored", reason="a reload is still being applied")
            self._answer("refused", "a reload or recipe change is still being applied; try again")
            return
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self._failed(f"invalid configuration, keeping the running one: {exc}")
            return
        self._recipe_applied = 0  # the PLC's current recipe is applied again on top of the new file
        self._apply(new)

    def follow_recipe(self) -> None:
        """Switch the model when the PLC names another recipe (warm hand-over between two frames,
        as a reload); a recipe with no model in the configuration is a fault until it changes."""
        cfg = self.host.cfg
        seen = self.counters.get(Count.PLC_RECIPE)
        if not seen or seen == self._recipe_applied or not cfg.recipes or self.busy:
            return
        self._recipe_applied = seen
        number = seen - 1
        recipe = cfg.recipes.get(number)
        if recipe is None:
            self.counters.set(Count.RECIPE_UNKNOWN, 1)
            self.log.error("recipe_unknown", recipe=number, known=sorted(cfg.recipes))
            return
        self.counters.set(Count.RECIPE_UNKNOWN, 0)
        new = cfg.model_copy(update={"model": recipe.model, "deadline": recipe.deadline or cfg.deadline})
        self.log.info("recipe_selected", recipe=number, model=recipe.model.id)
        self._recipe_target = number
        self.counters.set(Count.RECIPE_SWITCHING, 1)
        self._apply(new)

    def advance(self) -> None:
        """Replace one worker at a time: start its successor, promote it once it has taken over."""
        if not self._queue or self._target is None:
            return
        role = self._queue[0]
        candidate = self.candidates.get(role)
        if candidate is None:
            current = self.host.active(role)
            assert current is not None  # every role has a worker once the line has started
            self.candidates[role] = self.host.spawn_successor(role, self._target, current)
            return
        if candidate.up:
            del self.candidates[role]
            self.host.promote(candidate)
            self._promoted.append(role)
            self._queue.pop(0)
            self.log.info("worker_replaced", worker=candidate.name, role=role)
            if not self._queue:
                self._done()

    def successor_exited(self, w: Worker, message: str) -> bool:
        """If *w* is a successor that died before its promotion, forget it and refuse the reload.
        True if it was one (the supervisor then restarts the worker it replaced, if that one had
        already handed over)."""
        if self.candidates.get(w.role) is not w:
            return False
        del self.candidates[w.role]
        self._failed(f"new {w.role} worker failed: {message}")
        return True

    def _apply(self, new: Config) -> None:
        """Replace the workers whose sections changed, one at a time, each taking over warm."""
        plan = plan_reload(self.host.cfg, new)
        if plan.needs_restart:
            self._failed(
                "these keys cannot change without a restart (systemctl restart linegate): "
                + ", ".join(plan.needs_restart)
            )
            return
        self._target = new
        self._promoted = []
        self._queue = list(plan.replace)
        if not self._queue:
            self._done()

    def _done(self) -> None:
        new = self._target
        assert new is not None
        self.host.adopt(new)
        self._target = None
        self.counters.add(Count.RELOADS)
        if self._recipe_target is not None:
            self.counters.set(Count.ACTIVE_RECIPE, self._recipe_target + 1)
            self.counters.set(Count.RECIPE_FAILED, 0)
            self._end_recipe_change()
        self.log.info("reload_applied", model=new.model.id, budget_ms=new.deadline.budget_ms)
        self._answer("applied", "")
        self.notify.ready(self.host.status_text())

    def _answer(self, outcome: str, error: str) -> None:
        """The outcome of the newest SIGHUP, for ``linegate reload`` waiting on the state file."""
        r = self.answers
        if r.answered < r.requested:
            r.answered, r.outcome, r.error = r.requested, outcome, error
            self.host.publish()

    def _end_recipe_change(self) -> None:
        self._recipe_target = None
        self.counters.set(Count.RECIPE_SWITCHING, 0)

    def _failed(self, why: str) -> None:
        roles = ", ".join(r.value for r in self._promoted)
        partly = self._partly_applied()
        if partly:
            why += (f"; the {roles} worker had already taken over with the new "
                    f"[{'], ['.join(partly)}]: those run as the file says, everything else is unchanged")
        if self._recipe_target is not None:
            # The PLC asked for this recipe and it is not running: a fault until the PLC names another.
            self.counters.set(Count.RECIPE_FAILED, self._recipe_target + 1)
            self._end_recipe_change()
        self._answer("refused", why)
        self.counters.add(Count.RELOAD_FAILURES)
        self._queue = []
        self._target = None
        infer = self.host.active(Role.INFER)
        self.log.error("reload_failed", error=why, running_model=infer.cfg.model.id if infer is not None else None,
                       **({"partly_applied": partly} if partly else {}))  # fmt: skip
        self.notify.ready(self.host.status_text())

    def _partly_applied(self) -> list[str]:
        """A change refused after some of its workers took over: adopt what those run (their
        sections of the new configuration), so that status and the state file tell the truth;
        the sections they run, for the operator."""
        if not self._promoted or self._target is None:
            return []
        sections = [s for role in self._promoted for s in SECTIONS_OF_ROLE[role]]
        self.host.adopt(self.host.cfg.model_copy(update={s: getattr(self._target, s) for s in sections}))
        self._promoted = []
        return sections


__all__ = ["ReloadHost", "Reloader"]
