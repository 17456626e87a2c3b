"""TensorRT 10 on the Jetson's GPU: load and run an engine (``trt_build`` builds them, never on the line).

Thin on purpose: check the engine's sidecar key against this machine, deserialize, bind one input
and one output once (pinned host buffers the preprocessor writes into, device buffers, tensor
addresses, a stream), then per frame only copy in, enqueue, copy out and synchronize. With static
input shapes (``model.cuda_graph``) those three are captured once into a CUDA graph after a first
run, as TensorRT's guide advises, and each frame is one graph launch. With ``model.max_batch`` = N > 1
the buffers hold N rows and the engine needs a dynamic batch whose profile holds 1..N: a batch of
n rows sets the input shape to n (only when it changes), copies n rows in and out, and never runs
as a graph (the shape is dynamic). TensorRT
cannot be installed on this project's machines: the tests run this code on a GPU against a stand-in
``tensorrt`` (tests/engine/trt_double), and against the real one on a Jetson.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import numpy as np
import structlog
import tensorrt as trt

from linegate.engine import cuda_memory as cm
from linegate.engine import gpu_info
from linegate.engine.base import Array, Engine
from linegate.engine.engine_key import EngineKey, TensorProfile, compare, key_path, missing_key, pick_profile, refusal
from linegate.errors import EngineError, ModelError

_Buf = TypeVar("_Buf", cm.PinnedBuffer, cm.DeviceBuffer)


class _TrtLogger(trt.ILogger):  # type: ignore[misc]
    """Keeps TensorRT's own warnings and errors for the error message instead of printing them.

    TensorRT keeps the first logger registered in the process while any builder, runtime or
    refitter created with it is alive; a later one is then ignored (messages stays empty).
    """

    def __init__(self) -> None:
        trt.ILogger.__init__(self)
        self.messages: list[str] = []

    def log(self, severity: Any, msg: str) -> None:
        if int(severity) <= int(trt.ILogger.Severity.WARNING):
            self.messages.append(msg)


class TensorRTEngine(Engine):
    """A deserialized engine with its IO bound once to pinned host and device buffers."""

    _input: Array
    _output: Array
    _input_rows: list[Array]
    """Row i of the bound input (``max_batch`` rows; row 0 is :attr:`input`)."""
    _output_heads: list[Array]
    """Index n: the bound output's first n rows (index 0 unused), what a batch of n returns."""

    def _load(self) -> None:
        path = self.cfg.path
        self._buffers: list[cm.PinnedBuffer | cm.DeviceBuffer] = []
        self._rows = 1  # the batch the context's input shape is set to (1: the requested shape)
        self._key: EngineKey | None = None
        self._stream: cm.Stream | None = None
        self._graph: cm.Graph | None = None
        self._device_graph: cm.Graph | None = None
        self._logger = _TrtLogger()
        data = path.read_bytes()
        key = check_engine_key(path, data, getattr(self.cfg, "engine_key", "required"), type(self.cfg))
        self._key = key
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        del data
        if self._engine is None:
            detail = "; ".join(self._logger.messages[-3:]) or "no detail from TensorRT"
            rebuild = key.rebuild_command if key is not None else f"linegate build-engine MODEL.onnx --output {path}"
            raise ModelError(
                f"{path}: TensorRT {trt.__version__} cannot deserialize this engine (damaged, or built with another "
                f"TensorRT version or for another GPU? rebuild it on this device: {rebuild}): {detail}"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"{path}: TensorRT cannot create an execution context (out of GPU memory?)")
        try:
            self._bind()
            self._capture()
        except BaseException:
            self._free()
            raise

    def _bind(self) -> None:
        path, engine = self.cfg.path, self._engine
        self._stream = cm.Stream()  # first: choosing an optimisation profile is enqueued on it
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input_name = _pick(inputs, self.cfg.input_name, "input")
        self.output_name = _pick(outputs, self.cfg.output_name, "output")
        for name in (self.input_name, self.output_name):
            if engine.get_tensor_format(name) != trt.TensorFormat.LINEAR:
                raise ModelError(
                    f"{path}: tensor {name!r} has the vectorized format {engine.get_tensor_format_desc(name)}; "
                    "rebuild the engine without --inputIOFormats/--outputIOFormats (or with :chw)"
                )
        self._set_input_shape()

        in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.input_name)))
        if in_dtype != self.requested_dtype:
            raise ModelError(
                f"{path}: input {self.input_name!r} is {in_dtype}, model.preprocess.dtype gives {self.requested_dtype}"
            )
        out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.output_name)))
        out_shape = self._output_shape()
        rows = self.max_batch
        if rows > 1:
            self._check_batched_output(out_shape, rows)

        # One row: the requested shape and its output; the buffers hold max_batch rows of each.
        in_nbytes = int(np.prod(self.requested_shape)) * in_dtype.itemsize
        out_nbytes = int(np.prod(out_shape)) * out_dtype.itemsize
        self._host_in = self._keep(cm.PinnedBuffer(rows * in_nbytes))
        self._host_out = self._keep(cm.PinnedBuffer(rows * out_nbytes))
        self._dev_in = self._keep(cm.DeviceBuffer(rows * in_nbytes))
        self._dev_out = self._keep(cm.DeviceBuffer(rows * out_nbytes))
        self._in_nbytes, self._out_nbytes = in_nbytes, out_nbytes
        in0, out0 = self.requested_shape[0], out_shape[0]
        all_in = self._host_in.array((rows * in0, *self.requested_shape[1:]), in_dtype)
        all_out = self._host_out.array((rows * out0, *out_shape[1:]), out_dtype)
        all_in.fill(0)  # pinned memory starts uninitialised; warm-up may run before the first frame
        self._input_rows = [all_in[i * in0 : (i + 1) * in0] for i in range(rows)]
        self._output_heads = [all_out[: n * out0] for n in range(rows + 1)]
        self._input, self._output = self._input_rows[0], self._output_heads[1]
        for name, buf in ((self.input_name, self._dev_in), (self.output_name, self._dev_out)):
            if not self._context.set_tensor_address(name, buf.ptr):
                raise EngineError(f"{path}: TensorRT refused the device address for tensor {name!r}")

    def _keep(self, buf: _Buf) -> _Buf:
        self._buffers.append(buf)
        return buf

    def _output_shape(self) -> tuple[int, ...]:
        """The output's shape for the input shape set on the context."""
        shape = tuple(int(d) for d in self._context.get_tensor_shape(self.output_name))
        if any(d < 0 for d in shape):
            raise ModelError(
                f"{self.cfg.path}: output {self.output_name!r} has data-dependent shape {list(shape)}; not supported"
            )
        return shape

    def _check_batched_output(self, one: tuple[int, ...], rows: int) -> None:
        """The output of a batch of *rows* must be *rows* outputs of one row (*one*) along dimension 0."""
        self._set_rows(rows)
        full = self._output_shape()
        self._set_rows(1)
        if one[0] != 1 or full != (rows, *one[1:]):
            raise ModelError(
                f"{self.cfg.path}: model.max_batch = {rows}: output {self.output_name!r} has shape {list(one)} for "
                f"one frame and {list(full)} for {rows}: its dimension 0 is not the batch; set model.max_batch = 1"
            )

    def _set_rows(self, rows: int) -> None:
        """Set the context's input shape to a batch of *rows* one-frame inputs."""
        name = self.input_name
        shape = (rows * self.requested_shape[0], *self.requested_shape[1:])
        if not self._context.set_input_shape(name, shape):
            detail = "; ".join(self._logger.messages[-1:]) or "no detail from TensorRT"
            raise EngineError(f"{self.cfg.path}: TensorRT refused input shape {list(shape)} for {name!r}: {detail}")
        self._rows = rows

    def _set_input_shape(self) -> None:
        """Check the engine's input shape against the preprocessor's; for dynamic dimensions pick the
        optimisation profile that holds it and set it."""
        path, name = self.cfg.path, self.input_name
        want = tuple(int(d) for d in self.requested_shape)
        shape = tuple(int(d) for d in self._engine.get_tensor_shape(name))
        if len(shape) != len(want) or any(d not in (-1, w) for d, w in zip(shape, want, strict=True)):
            raise ModelError(
                f"{path}: input {name!r} has shape {list(shape)}, but model.preprocess produces {list(want)}"
            )
        batch = self.max_batch
        if batch > 1 and want[0] != 1:
            raise ModelError(
                f"{path}: model.max_batch = {batch} batches one-frame inputs, but model.preprocess produces "
                f"{list(want)}; set model.max_batch = 1"
            )
        if batch > 1 and shape[0] != -1:
            self._refuse_batch(shape, [])
        if -1 not in shape:
            return
        profiles = self._profiles()
        index = pick_profile(profiles, want)
        if batch > 1:  # one profile must hold every batch 1..max_batch: a profile is chosen once, at load
            full = (batch, *want[1:])
            both = [i for i, p in enumerate(profiles) if p.holds(want) and p.holds(full)]
            if not both:
                self._refuse_batch(shape, profiles)
            index = index if index in both else both[0]
        if index is None:
            ranges = "; ".join(f"{list(p.min)}..{list(p.max)}" for p in profiles)
            raise ModelError(
                f"{path}: input {name!r} shape {list(want)} is outside the engine's optimisation profiles ({ranges}); "
                "rebuild the engine with `linegate build-engine` --sizes / --batch that contain it"
            )
        assert self._stream is not None
        if len(profiles) > 1 and not self._context.set_optimization_profile_async(index, self._stream.address):
            raise EngineError(f"{path}: TensorRT refused optimisation profile {index} for {name!r}")
        if not self._context.set_input_shape(name, want):
            raise ModelError(f"{path}: TensorRT refused input shape {list(want)} for {name!r}")

    def _refuse_batch(self, shape: tuple[int, ...], profiles: Sequence[TensorProfile]) -> NoReturn:
        """ModelError: the engine cannot run every batch 1..``model.max_batch``; what to rebuild."""
        batch, path = self.max_batch, self.cfg.path
        ranges = "; ".join(f"{list(p.min)}..{list(p.max)}" for p in profiles)
        has = f"optimisation profiles {ranges}" if profiles else "no optimisation profile (a fixed batch)"
        key = self._key
        command = key.rebuild_command if key is not None else f"linegate build-engine MODEL.onnx --output {path}"
        raise ModelError(
            f"{path}: model.max_batch = {batch} needs input {self.input_name!r} with a dynamic batch dimension and "
            f"one optimisation profile holding batches 1..{batch}, but the engine has {list(shape)} with {has}; "
            f"rebuild it with --batch 1:{batch}:{batch} (from an ONNX model with a dynamic batch dimension): "
            f"{_with_batch(command, batch)}, or set model.max_batch = 1"
        )

    def _profiles(self) -> list[TensorProfile]:
        """The input's shape range in each of the engine's optimisation profiles."""
        name, engine = self.input_name, self._engine
        return [
            TensorProfile(name, *(tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, k)))
            for k in range(engine.num_optimization_profiles)
        ]

    def _capture(self) -> None:
        """Per ``model.cuda_graph``: one plain run (TensorRT's deferred allocations), then capture the
        CPU path's copy in + run + copy out, and the GPU frame path's run + copy out, as CUDA graphs.

        A capture that fails leaves the plain path (logged ``cuda_graph_unavailable``); with "on"
        it fails the load.
        """
        path, setting = self.cfg.path, self.cfg.cuda_graph
        shape = tuple(int(d) for d in self._engine.get_tensor_shape(self.input_name))
        profiles = self._profiles() if -1 in shape else []
        try:
            wanted = cuda_graph_choice(setting, self.input_name, shape, profiles)
        except ModelError as exc:
            raise ModelError(f"{path}: {exc}") from None
        if not wanted:
            return
        stream = self.stream
        self._enqueue_run(stream)  # outside the try: a failing plain run is no capture problem
        stream.synchronize()
        try:
            self._graph = cm.Graph(stream, self._enqueue_host_run)
            self._device_graph = cm.Graph(stream, self._enqueue_run)
        except EngineError as exc:
            self._drop_graphs()
            if setting == "on":
                raise EngineError(
                    f"{path}: model.cuda_graph = 'on', but this engine cannot run as a CUDA graph: {exc}; "
                    "set model.cuda_graph = 'auto' or 'off'"
                ) from exc
            detail = "; ".join(self._logger.messages[-3:])
            structlog.get_logger().warning(
                "cuda_graph_unavailable", path=str(path), reason=str(exc) + (f" ({detail})" if detail else ""),
                action="plain enqueue per frame",
            )  # fmt: skip

    def _drop_graphs(self) -> None:
        for graph in (self._graph, self._device_graph):
            if graph is not None:
                graph.close()
        self._graph = self._device_graph = None

    @property
    def settings(self) -> dict[str, object]:
        return {"cuda_graph": self._graph is not None}

    @property
    def input(self) -> Array:
        return self._input

    @property
    def max_batch(self) -> int:
        return int(getattr(self.cfg, "max_batch", 1))

    def input_row(self, index: int) -> Array:
        if not 0 <= index < len(self._input_rows):
            raise EngineError(f"{self.model_id}: input row {index} outside 0..{len(self._input_rows) - 1}")
        return self._input_rows[index]

    @property
    def device_input(self) -> int:
        """Device address of the bound input: the GPU frame path writes each frame there."""
        return int(self._dev_in.ptr)

    @property
    def stream(self) -> cm.Stream:
        """The stream every run of this engine is enqueued on."""
        assert self._stream is not None
        return self._stream

    @property
    def output(self) -> Array:
        """The bound host output: valid once the work of :meth:`enqueue_on_device_input` is done."""
        return self._output

    def enqueue_on_device_input(self, stream: cm.Stream) -> None:
        """Enqueue a run on the device input as it stands (no host copy in) and the copy of its output
        out, on *stream* (the engine's own): the GPU frame path's last step, waited for with its event."""
        if self._rows != 1:
            self._set_rows(1)
        if self._device_graph is not None:
            self._device_graph.launch(stream)
        else:
            self._enqueue_run(stream)

    def _enqueue_run(self, stream: cm.Stream) -> None:
        """Enqueue the engine's run on the device input and the copy of its output to the host."""
        if not self._context.execute_async_v3(stream.address):
            raise EngineError(f"{self.cfg.path}: execute_async_v3 failed (see TensorRT's log)")
        cm.copy_d2h_async(self._host_out.ptr, self._dev_out.ptr, self._out_nbytes, stream)

    def _enqueue_host_run(self, stream: cm.Stream) -> None:
        """:meth:`_enqueue_run` after copying the pinned host input to the device."""
        cm.copy_h2d_async(self._dev_in.ptr, self._host_in.ptr, self._in_nbytes, stream)
        self._enqueue_run(stream)

    def _infer(self) -> Array:
        stream = self._stream
        assert stream is not None
        if self._rows != 1:  # a batch set another shape (never with a graph: batching is dynamic)
            self._set_rows(1)
        if self._graph is not None:
            self._graph.launch(stream)
        else:
            self._enqueue_host_run(stream)
        stream.synchronize()
        return self._output

    def _infer_batch(self, rows: int) -> Array:
        if rows == 1:
            return self._infer()
        stream = self._stream
        assert stream is not None
        if rows != self._rows:
            self._set_rows(rows)
        cm.copy_h2d_async(self._dev_in.ptr, self._host_in.ptr, rows * self._in_nbytes, stream)
        if not self._context.execute_async_v3(stream.address):
            raise EngineError(f"{self.cfg.path}: execute_async_v3 failed for a batch of {rows} (see TensorRT's log)")
        cm.copy_d2h_async(self._host_out.ptr, self._dev_out.ptr, rows * self._out_nbytes, stream)
        stream.synchronize()
        return self._output_heads[rows]

    def _close(self) -> None:
        self._free()

    def _free(self) -> None:
        """Release in reverse order of creation; safe after a partial load."""
        # The numpy views point into pinned memory about to be freed: drop them first.
        for name in ("_input", "_output", "_input_rows", "_output_heads"):
            self.__dict__.pop(name, None)
        if self._stream is not None:
            self._stream.synchronize()
        self._drop_graphs()
        for buf in reversed(self._buffers):
            buf.close()
        self._buffers.clear()
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._context = None
        self._engine = None
        self._runtime = None


def check_engine_key(path: Path, data: bytes, policy: str, section: type[Any]) -> EngineKey | None:
    """Refuse *data* (the engine file's bytes) unless its sidecar key fits this TensorRT and GPU.

    A missing key is refused too, unless *policy* is ``"optional"`` (then logged, and None returned).
    Raises ModelError naming every difference and the command that rebuilds the engine.
    """
    sidecar = key_path(path)
    try:
        text = sidecar.read_text(encoding="utf-8")
    except FileNotFoundError:
        if policy == "optional":
            structlog.get_logger().warning("engine_key_missing", path=str(path), key=str(sidecar))
            return None
        fields = getattr(section, "model_fields", {})
        hint = 'or set model.engine_key = "optional" to load engines without a key' if "engine_key" in fields else None
        raise ModelError(missing_key(path, hint)) from None
    except OSError as exc:
        raise ModelError(f"{sidecar}: cannot read the engine key: {exc.strerror or exc}") from None
    key = EngineKey.from_json(text, sidecar)
    machine = gpu_info.this_machine(trt.__version__)
    check = compare(key, machine, hashlib.sha256(data).hexdigest())
    if not check.ok:
        raise ModelError(refusal(path, key, check))
    if check.unchecked:
        what = ", ".join(check.unchecked)
        raise EngineError(f"{path}: cannot check the engine key's {what} on this machine: {'; '.join(check.reasons)}")
    return key


def cuda_graph_choice(setting: str, name: str, shape: Sequence[int], profiles: Sequence[TensorProfile]) -> bool:
    """Whether to run the engine as a CUDA graph, for ``model.cuda_graph`` = *setting*.

    *shape* is the engine's input *name* (-1 for a dynamic dimension), *profiles* its optimisation
    profiles for that input. Static means no dynamic dimension, or one profile with min == max: a
    graph replays fixed shapes. "auto" is on exactly then; "on" with dynamic shapes raises ModelError.
    """
    if setting == "off":
        return False
    static = -1 not in shape or (len(profiles) == 1 and tuple(profiles[0].min) == tuple(profiles[0].max))
    if setting == "on" and not static:
        ranges = "; ".join(f"{list(p.min)}..{list(p.max)}" for p in profiles) or "no profile"
        raise ModelError(
            f"model.cuda_graph = 'on' needs static input shapes, but input {name!r} {list(shape)} is dynamic "
            f"(optimisation profiles {ranges}); set model.cuda_graph = 'auto' or 'off', or rebuild the engine "
            "with one fixed shape"
        )
    return static


def _with_batch(command: str, batch: int) -> str:
    """*command* (a build-engine command line) with ``--batch 1:batch:batch`` instead of its own."""
    argv = shlex.split(command)
    if "--batch" in argv:
        i = argv.index("--batch")
        del argv[i : i + 2]
    return shlex.join([*argv, "--batch", f"1:{batch}:{batch}"])


def _pick(names: list[str], wanted: str | None, kind: str) -> str:
    if wanted is None:
        if len(names) != 1:
            raise ModelError(f"engine has {len(names)} {kind}s {names}; set model.{kind}_name")
        return names[0]
    if wanted not in names:
        raise ModelError(f"model.{kind}_name={wanted!r} not in the engine's {kind}s {names}")
    return wanted
