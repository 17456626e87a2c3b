"""The engine contract: load once, warm up, infer on preallocated buffers, close.

Runners follow Polygraphy's shape: public methods enforce the life cycle, subclasses implement
``_load``, ``_infer`` and ``_close``. Buffers are bound once at load; ``infer`` only moves data and
runs, so the per-frame path allocates nothing.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from linegate.config.schema import ModelSection
from linegate.errors import EngineError, ModelError

Array = npt.NDArray[np.floating]


@dataclass(frozen=True)
class FrameRun:
    """One of ``model.parallel`` one-frame sessions: its own bound input and output, and its run
    (which releases the GIL, so sessions on threads of their own run at the same time)."""

    input: Array
    output: Array
    run: Callable[[], object]


class Engine(ABC):
    """One loaded model with one bound input and one bound output buffer.

    Both buffers hold :attr:`max_batch` rows (``model.max_batch``; 1 unless the backend supports
    batching): :attr:`input` is row 0, :meth:`input_row` row *i*, :meth:`infer_batch` runs the
    first *n* rows and returns their outputs.
    """

    parallel = 1
    """One-frame sessions that decide a backlog at once (``model.parallel`` as decided at load): more
    than 1 where :meth:`frame_runs` has them."""

    def __init__(self, cfg: ModelSection, input_shape: tuple[int, ...], input_dtype: np.dtype[np.floating]) -> None:
        self.cfg = cfg
        self.model_id = cfg.id
        self.requested_shape = input_shape
        self.requested_dtype = input_dtype
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Read the model, allocate and bind buffers."""
        if self._loaded:
            raise EngineError(f"{self.model_id}: already loaded")
        try:
            self._load()
        except EngineError:
            raise
        except MemoryError as exc:
            raise EngineError(f"{self.cfg.path}: out of memory loading model {self.model_id!r}") from exc
        except Exception as exc:  # the backend refused the file itself: a restart cannot fix that
            raise ModelError(f"{self.cfg.path}: cannot load model {self.model_id!r}: {exc}") from exc
        self._loaded = True

    @property
    def settings(self) -> dict[str, object]:
        """What the backend chose at load (e.g. thread count), for the ``engine_ready`` record."""
        return {}

    @property
    @abstractmethod
    def input(self) -> Array:
        """The bound input tensor; the preprocessor writes each frame here."""

    @property
    def max_batch(self) -> int:
        """Rows the bound buffers hold: the most frames one :meth:`infer_batch` may run."""
        return 1

    def input_row(self, index: int) -> Array:
        """Row *index* of the bound input (shape of :attr:`input`): where frame *index* of a batch goes."""
        if index == 0:
            return self.input
        raise EngineError(f"{self.model_id}: input row {index} of a one-row engine")

    def frame_runs(self) -> list[FrameRun]:
        """``model.parallel`` > 1: the one-frame sessions that decide frames at once, each bound to
        buffers of its own (:mod:`linegate.engine.parallel_runs`)."""
        raise EngineError(f"{self.model_id}: model.parallel runs one-frame sessions; this backend has none")

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _infer(self) -> Array: ...

    @abstractmethod
    def _close(self) -> None: ...

    def infer(self) -> Array:
        """Run on the current contents of :attr:`input`; returns the bound output buffer."""
        if not self._loaded:
            raise EngineError(f"{self.model_id}: infer() before load()")
        return self._infer()

    def infer_batch(self, rows: int) -> Array:
        """Run on the first *rows* rows of the input; returns their outputs (a view of the bound output)."""
        if not self._loaded:
            raise EngineError(f"{self.model_id}: infer_batch() before load()")
        if not 1 <= rows <= self.max_batch:
            raise EngineError(f"{self.model_id}: batch of {rows} outside 1..{self.max_batch}")
        return self._infer_batch(rows)

    def _infer_batch(self, rows: int) -> Array:
        return self._infer()

    def warm_up(self, runs: int) -> npt.NDArray[np.int64]:
        """Run *runs* times on the current input; returns each run's duration in ns."""
        durations = np.zeros(runs, dtype=np.int64)
        for i in range(runs):
            t0 = time.monotonic_ns()
            self.infer()
            durations[i] = time.monotonic_ns() - t0
        return durations

    def close(self) -> None:
        if self._loaded:
            self._loaded = False
            self._close()

    def __enter__(self) -> Engine:
        self.load()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
