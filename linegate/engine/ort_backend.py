"""ONNX Runtime on the CPU: the embedded default backend (the line's only module importing onnxruntime;
the toolchain's quantisation, linegate/engine/quantize.py, imports it too)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np
import onnxruntime as ort

from linegate.engine.base import Array, Engine, FrameRun
from linegate.engine.side_by_side import SideBySide
from linegate.engine.threads import (
    HEAVY_RUN_NS,
    cpus_available,
    intra_op_threads,
    may_be_heavy,
    parallel_sessions,
    spinning,
)
from linegate.errors import EngineError, ModelError

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxRuntimeEngine(Engine):
    """A CPU session with input and output bound once through IOBinding (no per-frame allocation)."""

    _input: Array
    _output: Array
    _rows: Array
    _output_rows: Array

    _side_runs: list[Callable[[], object]]
    """``batch_by = "sessions"``: row i's run on its own one-frame session, bound once at load."""
    _side_by_side: SideBySide | None = None
    _frame_runs: list[FrameRun]
    """``model.parallel`` > 1: the one-frame sessions that decide frames at once."""

    def _load(self) -> None:
        cpus = cpus_available()
        self._open(intra_op_threads(self.cfg.threads, cpus), cpus)
        if may_be_heavy(self.cfg.threads, cpus) and self._run_ns() >= HEAVY_RUN_NS:
            del self._binding, self._bindings, self._session
            self._open(intra_op_threads(self.cfg.threads, cpus, heavy=True), cpus)
        self._side_runs = []
        self._frame_runs = []
        if self.cfg.batch_sessions:
            self._side_runs = self._one_frame_sessions(self._rows, self._output_rows, cpus)
            self._side_by_side = SideBySide(len(self._rows))
            return
        timed = self.cfg.parallel == "auto" and self.threads >= 2
        self.parallel = parallel_sessions(self.cfg.parallel, self.threads, self._run_ns() if timed else None)
        if self.parallel > 1:  # buffers of their own: the bound input and output stay the main session's
            n = self.parallel
            inputs = np.zeros((n, *self._rows.shape[1:]), dtype=self._rows.dtype)
            outputs = np.zeros((n, *self._output.shape[1:]), dtype=self._output.dtype)
            runs = self._one_frame_sessions(inputs, outputs, cpus)
            self._frame_runs = [FrameRun(inputs[i : i + 1], outputs[i : i + 1], run) for i, run in enumerate(runs)]

    def _one_frame_sessions(self, inputs: Array, outputs: Array, cpus: int) -> list[Callable[[], object]]:
        """One one-frame session per row of *inputs* (``batch_by = "sessions"``'s rows, or
        ``model.parallel``'s sessions), each bound to its row of *inputs* and *outputs*, on an equal
        share of the threads; returns each one's run."""
        rows = len(inputs)
        self.side_threads = max(1, self.threads // rows)
        # Spinning as for one pool of all the sessions' threads: they run at the same time.
        self.side_spinning = self.side_threads > 1 and spinning(self.cfg.spinning, self.side_threads * rows, cpus)
        runs: list[Callable[[], object]] = []
        for row in range(rows):
            session = self._new_session(self.side_threads, self.side_spinning)
            binding = session.io_binding()
            x, y = inputs[row : row + 1], outputs[row : row + 1]
            binding.bind_input(self.input_name, "cpu", 0, x.dtype, list(x.shape), x.ctypes.data)
            binding.bind_output(self.output_name, "cpu", 0, y.dtype, list(y.shape), y.ctypes.data)
            runs.append(partial(session.run_with_iobinding, binding))
        return runs

    def _run_ns(self) -> int:
        """The model's run time (median of a few, after a first) on the session as opened."""
        self._infer()
        times = []
        for _ in range(5):
            t0 = time.monotonic_ns()
            self._infer()
            times.append(time.monotonic_ns() - t0)
        return sorted(times)[len(times) // 2]

    def _new_session(self, threads: int, spin: bool) -> ort.InferenceSession:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        return ort.InferenceSession(str(self.cfg.path), opts, providers=["CPUExecutionProvider"])

    def _open(self, threads: int, cpus: int) -> None:
        """The session with *threads* intra-op threads, input and output bound."""
        self.threads = threads
        self.spinning = spinning(self.cfg.spinning, self.threads, cpus)
        self._session = self._new_session(threads, self.spinning)
        inp = _pick(self._session.get_inputs(), self.cfg.input_name, "input")
        out = _pick(self._session.get_outputs(), self.cfg.output_name, "output")
        self._check_input(inp)
        rows = self._batch_rows(inp, out)
        self._rows = np.zeros((rows, *self.requested_shape[1:]), dtype=self.requested_dtype)
        self._input = self._rows[:1]
        out_shape = tuple(d if isinstance(d, int) else self.requested_shape[0] for d in out.shape)
        self._output_rows = np.zeros((rows, *out_shape[1:]), dtype=_ORT_TYPES.get(out.type, np.float32))
        self._output = self._output_rows[:1]
        # One binding per batch size, each on the first n rows of the same buffers: a batch run
        # only picks its binding, nothing is bound or allocated per frame.
        one_run_rows = 1 if self.cfg.batch_sessions else rows  # sessions: the rows run elsewhere
        self._bindings = [self._session.io_binding() for _ in range(one_run_rows)]
        for n, binding in enumerate(self._bindings, start=1):
            x, y = self._rows[:n], self._output_rows[:n]
            binding.bind_input(inp.name, "cpu", 0, x.dtype, list(x.shape), x.ctypes.data)
            binding.bind_output(out.name, "cpu", 0, y.dtype, list(y.shape), y.ctypes.data)
        self._binding = self._bindings[0]
        self.input_name, self.output_name = inp.name, out.name

    def _batch_rows(self, inp: ort.NodeArg, out: ort.NodeArg) -> int:
        """``model.max_batch`` where the model's batch dimension (0, input and output) is dynamic."""
        want = self.cfg.max_batch
        if want == 1 or self.cfg.batch_sessions:  # sessions: each runs one row, any model
            return want
        fixed = fixed_batch(inp, out)
        if fixed:
            raise ModelError(
                f"{self.cfg.path}: model.max_batch = {want} with model.batch_by = 'dimension' needs a dynamic batch "
                f"dimension (dimension 0 of the input and the output), but {' and '.join(fixed)} fix it; export the "
                "model with a dynamic batch (e.g. torch.onnx.export dynamic_axes={'image': {0: 'batch'}, ...}), set "
                "model.batch_by = 'sessions' (one-frame sessions side by side, any model) or model.max_batch = 1"
            )
        return want

    def _check_input(self, inp: ort.NodeArg) -> None:
        want = self.requested_shape
        fixed_dims_differ = len(inp.shape) != len(want) or any(
            isinstance(d, int) and d != w for d, w in zip(inp.shape, want, strict=True)
        )
        if fixed_dims_differ:
            raise ModelError(
                f"{self.cfg.path}: input {inp.name!r} has shape {inp.shape}, but model.preprocess produces {list(want)}"
            )
        dtype = _ORT_TYPES.get(inp.type)
        if dtype is None or np.dtype(dtype) != self.requested_dtype:
            raise ModelError(
                f"{self.cfg.path}: input {inp.name!r} is {inp.type}, model.preprocess.dtype gives "
                f"{self.requested_dtype}"
            )

    @property
    def settings(self) -> dict[str, object]:
        out: dict[str, object] = {"threads": self.threads, "spinning": self.spinning}
        if self._side_runs:
            out.update(batch_by="sessions", batch_sessions=len(self._side_runs),
                       batch_session_threads=self.side_threads, batch_session_spinning=self.side_spinning)  # fmt: skip
        if self._frame_runs:
            out.update(parallel=len(self._frame_runs), parallel_threads=self.side_threads,
                       parallel_spinning=self.side_spinning)  # fmt: skip
        return out

    def frame_runs(self) -> list[FrameRun]:
        if not self._frame_runs:
            return super().frame_runs()
        return list(self._frame_runs)

    @property
    def input(self) -> Array:
        return self._input

    @property
    def max_batch(self) -> int:
        return len(self._rows)

    def input_row(self, index: int) -> Array:
        if not 0 <= index < len(self._rows):
            raise EngineError(f"{self.model_id}: input row {index} outside 0..{len(self._rows) - 1}")
        return self._rows[index : index + 1]

    def _infer(self) -> Array:
        self._session.run_with_iobinding(self._binding)
        return self._output

    def _infer_batch(self, rows: int) -> Array:
        if rows > 1 and self._side_by_side is not None:
            self._side_by_side.run(self._side_runs[:rows])
        else:  # one run over the first rows (sessions: one row, on the session with every thread)
            self._session.run_with_iobinding(self._bindings[rows - 1])
        return self._output_rows[:rows]

    def _close(self) -> None:
        if self._side_by_side is not None:
            self._side_by_side.close()
            self._side_by_side = None
        del self._binding, self._bindings, self._session, self._side_runs, self._frame_runs


def fixed_batch(*args: ort.NodeArg) -> list[str]:
    """Those of the model's inputs/outputs *args* whose dimension 0 (the batch) is a fixed number,
    as ``'name' [shape]``: none for a model that can run batches."""
    return [f"{a.name!r} {a.shape}" for a in args if not a.shape or isinstance(a.shape[0], int)]


def _pick(args: list[ort.NodeArg], name: str | None, kind: str) -> ort.NodeArg:
    if name is None:
        if len(args) != 1:
            names = [a.name for a in args]
            raise ModelError(f"model has {len(args)} {kind}s {names}; set model.{kind}_name")
        return args[0]
    for a in args:
        if a.name == name:
            return a
    raise ModelError(f"model.{kind}_name={name!r} not in the model's {kind}s {[a.name for a in args]}")
