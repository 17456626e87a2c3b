"""TensorRT 10 on the Jetson's GPU (the only module importing tensorrt).

Thin on purpose: deserialize, bind one input and one output once (pinned host buffers the
preprocessor writes into, device buffers, tensor addresses, a stream), then per frame only
copy in, enqueue, copy out and synchronize. Not executable on any machine of this project (no
TensorRT there); the cuda-python parts it relies on are tested on a GPU machine.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import tensorrt as trt

from linegate.engine import cuda_memory as cm
from linegate.engine.base import Array, Engine
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
        if severity <= trt.ILogger.Severity.WARNING:
            self.messages.append(msg)


class TensorRTEngine(Engine):
    """A deserialized engine with its IO bound once to pinned host and device buffers."""

    _input: Array
    _output: Array

    def _load(self) -> None:
        path = self.cfg.path
        self._buffers: list[cm.PinnedBuffer | cm.DeviceBuffer] = []
        self._stream: cm.Stream | None = None
        self._logger = _TrtLogger()
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            detail = "; ".join(self._logger.messages[-3:]) or "no detail from TensorRT"
            raise ModelError(
                f"{path}: TensorRT {trt.__version__} cannot deserialize this engine (built with another "
                f"TensorRT version or for another GPU? rebuild it on this device): {detail}"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"{path}: TensorRT cannot create an execution context (out of GPU memory?)")
        try:
            self._bind()
        except BaseException:
            self._free()
            raise

    def _bind(self) -> None:
        path, engine = self.cfg.path, self._engine
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
        out_shape = tuple(int(d) for d in self._context.get_tensor_shape(self.output_name))
        if any(d < 0 for d in out_shape):
            raise ModelError(
                f"{path}: output {self.output_name!r} has data-dependent shape {list(out_shape)}; not supported"
            )

        in_nbytes = int(np.prod(self.requested_shape)) * in_dtype.itemsize
        out_nbytes = int(np.prod(out_shape)) * out_dtype.itemsize
        self._stream = cm.Stream()
        self._host_in = self._keep(cm.PinnedBuffer(in_nbytes))
        self._host_out = self._keep(cm.PinnedBuffer(out_nbytes))
        self._dev_in = self._keep(cm.DeviceBuffer(in_nbytes))
        self._dev_out = self._keep(cm.DeviceBuffer(out_nbytes))
        self._in_nbytes, self._out_nbytes = in_nbytes, out_nbytes
        self._input = self._host_in.array(self.requested_shape, in_dtype)
        self._output = self._host_out.array(out_shape, out_dtype)
        self._input.fill(0)  # pinned memory starts uninitialised; warm-up may run before the first frame
        for name, buf in ((self.input_name, self._dev_in), (self.output_name, self._dev_out)):
            if not self._context.set_tensor_address(name, buf.ptr):
                raise EngineError(f"{path}: TensorRT refused the device address for tensor {name!r}")
        self._stream_address = self._stream.address

    def _keep(self, buf: _Buf) -> _Buf:
        self._buffers.append(buf)
        return buf

    def _set_input_shape(self) -> None:
        """Check the engine's input shape against the preprocessor's; fix dynamic dimensions."""
        path, name = self.cfg.path, self.input_name
        want = tuple(int(d) for d in self.requested_shape)
        shape = tuple(int(d) for d in self._engine.get_tensor_shape(name))
        if len(shape) != len(want) or any(d not in (-1, w) for d, w in zip(shape, want, strict=True)):
            raise ModelError(
                f"{path}: input {name!r} has shape {list(shape)}, but model.preprocess produces {list(want)}"
            )
        if -1 not in shape:
            return
        lo, _opt, hi = (tuple(int(d) for d in dims) for dims in self._engine.get_tensor_profile_shape(name, 0))
        if any(not (a <= w <= b) for a, w, b in zip(lo, want, hi, strict=True)):
            raise ModelError(
                f"{path}: input {name!r} shape {list(want)} is outside the engine's optimisation profile "
                f"{list(lo)}..{list(hi)}; rebuild the engine with trtexec --minShapes/--optShapes/--maxShapes "
                "that contain it"
            )
        if not self._context.set_input_shape(name, want):
            raise ModelError(f"{path}: TensorRT refused input shape {list(want)} for {name!r}")

    @property
    def input(self) -> Array:
        return self._input

    def _infer(self) -> Array:
        stream = self._stream
        assert stream is not None
        cm.copy_h2d_async(self._dev_in.ptr, self._host_in.ptr, self._in_nbytes, stream)
        if not self._context.execute_async_v3(self._stream_address):
            raise EngineError(f"{self.cfg.path}: execute_async_v3 failed (see TensorRT's log)")
        cm.copy_d2h_async(self._host_out.ptr, self._dev_out.ptr, self._out_nbytes, stream)
        stream.synchronize()
        return self._output

    def _close(self) -> None:
        self._free()

    def _free(self) -> None:
        """Release in reverse order of creation; safe after a partial load."""
        # The numpy views point into pinned memory about to be freed: drop them first.
        self.__dict__.pop("_input", None)
        self.__dict__.pop("_output", None)
        if self._stream is not None:
            self._stream.synchronize()
        for buf in reversed(self._buffers):
            buf.close()
        self._buffers.clear()
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._context = None
        self._engine = None
        self._runtime = None


def _pick(names: list[str], wanted: str | None, kind: str) -> str:
    if wanted is None:
        if len(names) != 1:
            raise ModelError(f"engine has {len(names)} {kind}s {names}; set model.{kind}_name")
        return names[0]
    if wanted not in names:
        raise ModelError(f"model.{kind}_name={wanted!r} not in the engine's {kind}s {names}")
    return wanted
