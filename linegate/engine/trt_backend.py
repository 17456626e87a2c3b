"""TensorRT 10 on the Jetson's GPU (the only module importing tensorrt).

Thin on purpose: deserialize, bind one input and one output once (pinned host buffers the
preprocessor writes into, device buffers, tensor addresses, a stream), then per frame only
copy in, enqueue, copy out and synchronize. Not executable on any machine of this project (no
TensorRT there); the cuda-python parts it relies on are tested on a GPU machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorrt as trt

from linegate.engine import cuda_memory as cm
from linegate.engine.base import Array, Engine
from linegate.errors import EngineError


class _TrtLogger(trt.ILogger):  # type: ignore[misc]
    """Keeps TensorRT's own warnings and errors for the error message instead of printing them."""

    def __init__(self) -> None:
        trt.ILogger.__init__(self)
        self.messages: list[str] = []

    def log(self, severity: Any, msg: str) -> None:
        if severity <= trt.ILogger.Severity.WARNING:
            self.messages.append(msg)


class TensorRTEngine(Engine):
    """A deserialized engine with its IO bound once to pinned host and device buffers."""

    def _load(self) -> None:
        path = self.cfg.path
        self._logger = _TrtLogger()
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            detail = "; ".join(self._logger.messages[-3:]) or "no detail"
            raise EngineError(
                f"{path}: TensorRT {trt.__version__} cannot deserialize this engine (built with another "
                f"TensorRT version or for another GPU? rebuild it on this device): {detail}"
            )
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.input_name = _pick(inputs, self.cfg.input_name, "input")
        self.output_name = _pick(outputs, self.cfg.output_name, "output")
        self._bind_input_shape()

        in_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self.input_name)))
        if in_dtype != self.requested_dtype:
            raise EngineError(
                f"{path}: input {self.input_name!r} is {in_dtype}, model.preprocess.dtype gives {self.requested_dtype}"
            )
        out_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self.output_name)))
        out_shape = tuple(self._context.get_tensor_shape(self.output_name))

        self._stream = cm.Stream()
        self._in_nbytes = int(np.prod(self.requested_shape)) * in_dtype.itemsize
        self._out_nbytes = int(np.prod(out_shape)) * out_dtype.itemsize
        self._host_in = cm.PinnedBuffer(self._in_nbytes)
        self._host_out = cm.PinnedBuffer(self._out_nbytes)
        self._dev_in = cm.DeviceBuffer(self._in_nbytes)
        self._dev_out = cm.DeviceBuffer(self._out_nbytes)
        self._input = self._host_in.array(self.requested_shape, in_dtype)
        self._output = self._host_out.array(out_shape, out_dtype)
        for name, buf in ((self.input_name, self._dev_in), (self.output_name, self._dev_out)):
            if not self._context.set_tensor_address(name, buf.ptr):
                raise EngineError(f"{path}: cannot bind tensor {name!r}")

    def _bind_input_shape(self) -> None:
        want = tuple(self.requested_shape)
        shape = tuple(self._engine.get_tensor_shape(self.input_name))
        if len(shape) != len(want) or any(d not in (-1, w) for d, w in zip(shape, want, strict=True)):
            raise EngineError(
                f"{self.cfg.path}: input {self.input_name!r} has shape {list(shape)}, but model.preprocess "
                f"produces {list(want)}"
            )
        if -1 in shape:
            lo, _opt, hi = self._engine.get_tensor_profile_shape(self.input_name, 0)
            if any(not (a <= w <= b) for a, w, b in zip(lo, want, hi, strict=True)):
                raise EngineError(
                    f"{self.cfg.path}: input shape {list(want)} is outside the engine's optimisation profile "
                    f"{list(lo)}..{list(hi)}; rebuild the engine with trtexec --minShapes/--maxShapes"
                )
            if not self._context.set_input_shape(self.input_name, want):
                raise EngineError(f"{self.cfg.path}: TensorRT refused input shape {list(want)}")

    @property
    def input(self) -> Array:
        return self._input

    def _infer(self) -> Array:
        stream = self._stream
        cm.copy_h2d_async(self._dev_in.ptr, self._host_in.ptr, self._in_nbytes, stream)
        if not self._context.execute_async_v3(stream.address):
            raise EngineError(f"{self.cfg.path}: execute_async_v3 failed")
        cm.copy_d2h_async(self._host_out.ptr, self._dev_out.ptr, self._out_nbytes, stream)
        stream.synchronize()
        return self._output

    def _close(self) -> None:
        self._stream.synchronize()
        for buf in (self._host_in, self._host_out, self._dev_in, self._dev_out):
            buf.close()
        self._stream.close()
        del self._context, self._engine, self._runtime


def _pick(names: list[str], wanted: str | None, kind: str) -> str:
    if wanted is None:
        if len(names) != 1:
            raise EngineError(f"engine has {len(names)} {kind}s {names}; set model.{kind}_name")
        return names[0]
    if wanted not in names:
        raise EngineError(f"model.{kind}_name={wanted!r} not in the engine's {kind}s {names}")
    return wanted
