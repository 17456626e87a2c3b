"""INT8 by explicit quantisation: ONNX Runtime static quantisation of an FP32 ONNX model to QDQ.

The output keeps float32 inputs and outputs and carries QuantizeLinear/DequantizeLinear pairs whose
scales come from calibration frames. It is made for TensorRT's explicit-quantisation path (which
takes zero points of 0 only): activations and weights are symmetric INT8, weights per output
channel. Calibration frames are fed by the caller (through the runtime preprocessing).

:class:`QdqSimulation` runs such a model with its quantise/dequantise steps as plain float
operations: each quantised tensor takes exactly its INT8 value, as TensorRT's explicit quantisation
prescribes, without ONNX Runtime's fused CPU int8 kernels. Those differ by CPU: on an x86 CPU
without VNNI (AVX2 only) they gave the random-weight ResNet-18 of ``engines/resnet18`` almost four
times the mean score error of the simulation (0.019 against 0.005).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from linegate.engine.base import Array, Engine
from linegate.engine.threads import cpus_available, intra_op_threads
from linegate.errors import LinegateError, ModelError

METHODS: dict[str, Any] = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
"""Calibration methods: min/max ranges, or ranges picked from histograms (slower)."""

CHUNK = 32
"""Calibration merges ranges (or histograms) every this many frames or fewer, so memory does not grow
with the calibration set. (ONNX Runtime's ``CalibMaxIntermediateOutputs`` would do this but drops each
full chunk unmerged, onnxruntime issue 18893, up to 1.32 at least; ``CalibStridedMinMax`` merges.)"""


@dataclass(frozen=True)
class QuantOptions:
    """How to quantise; the defaults suit TensorRT's explicit INT8."""

    method: str = "minmax"
    per_channel: bool = True
    exclude_nodes: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The settings as recorded in the report."""
        return {
            "format": "QDQ",
            "activations": "int8, symmetric, per tensor",
            "weights": f"int8, symmetric, {'per channel' if self.per_channel else 'per tensor'}",
            "calibration_method": self.method,
            "excluded_nodes": list(self.exclude_nodes),
            "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__,
        }


class _Tensors(CalibrationDataReader):  # type: ignore[misc]
    """ONNX Runtime's calibration reader over *total* input tensors, read in strides (copied: the source
    reuses its buffer)."""

    def __init__(self, input_name: str, tensors: Iterator[npt.NDArray[np.floating]], total: int) -> None:
        self._name = input_name
        self._tensors = tensors
        self._total = total
        self._left = total
        self.count = 0

    def __len__(self) -> int:
        return self._total

    def set_range(self, start_index: int, end_index: int) -> None:
        self._left = end_index - start_index

    def get_next(self) -> dict[str, npt.NDArray[np.floating]] | None:
        if self._left <= 0:
            return None
        tensor = next(self._tensors, None)
        if tensor is None:
            return None
        self._left -= 1
        self.count += 1
        return {self._name: tensor.copy()}


def stride_for(total: int, chunk: int = CHUNK) -> int:
    """The largest stride <= *chunk* that divides *total* (ONNX Runtime's strided calibration needs one)."""
    return max(d for d in range(1, min(chunk, total) + 1) if total % d == 0)


def model_input_name(path: Path, configured: str | None) -> str:
    """The input the calibration frames feed: ``model.input_name``, or the model's only input."""
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not a model
        raise ModelError(f"{path}: not a readable ONNX model: {exc}") from None
    initializers = {t.name for t in graph.initializer}
    names = [str(i.name) for i in graph.input if i.name not in initializers]
    if configured is not None:
        if configured not in names:
            raise ModelError(f"{path}: model.input_name={configured!r} is not an input of the model {names}")
        return configured
    if len(names) != 1:
        raise ModelError(f"{path}: the model has {len(names)} inputs {names}; set model.input_name")
    return names[0]


def quantize_qdq(
    model: Path,
    output: Path,
    input_name: str,
    tensors: Iterable[npt.NDArray[np.floating]],
    total: int,
    options: QuantOptions,
) -> int:
    """Write the QDQ INT8 model of *model* to *output*, calibrated on the *total* *tensors*; returns how many."""
    if options.method not in METHODS:
        raise ValueError(f"unknown calibration method {options.method!r}; one of {sorted(METHODS)}")
    if total < 1:
        raise ModelError(f"{model}: no calibration frames to quantise with")
    reader = _Tensors(input_name, iter(tensors), total)
    extra: dict[str, Any] = {"ActivationSymmetric": True, "WeightSymmetric": True,
                             "CalibStridedMinMax": stride_for(total)}
    with tempfile.TemporaryDirectory(prefix="linegate-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            # Shape inference and basic graph optimisation (e.g. BatchNorm folded into Conv), as ONNX
            # Runtime recommends before quantising; symbolic shape inference needs sympy and fixed-shape
            # vision models do not need it.
            quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
            with contextlib.redirect_stdout(sys.stderr):  # ONNX Runtime prints progress; stdout is the command's
                quantize_static(
                    str(prepared),
                    str(output),
                    reader,
                    quant_format=QuantFormat.QDQ,
                    per_channel=options.per_channel,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    calibrate_method=METHODS[options.method],
                    nodes_to_exclude=list(options.exclude_nodes),
                    extra_options=extra,
                )
        except LinegateError:  # a calibration file that cannot be read names itself
            raise
        except Exception as exc:  # ONNX Runtime raises plain exceptions of many kinds for a model it cannot take
            raise ModelError(f"{model}: cannot quantise (after {reader.count} calibration frames): {exc}") from exc
    if reader.count != total:
        output.unlink(missing_ok=True)
        raise ModelError(f"{model}: calibration got {reader.count} frames, expected {total}")
    return reader.count


def has_qdq(path: Path) -> bool:
    """Whether the ONNX model at *path* holds QuantizeLinear/DequantizeLinear nodes."""
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not a model
        raise ModelError(f"{path}: not a readable ONNX model: {exc}") from None
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)


class QdqSimulation(Engine):
    """A QDQ model in ONNX Runtime with only basic graph optimisation, so Q/DQ stay float operations."""

    _input: Array

    def _load(self) -> None:
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads(self.cfg.threads, cpus_available())
        opts.inter_op_num_threads = 1
        # Basic level: constant folding and the like. The extended level would fuse Q/DQ around
        # Conv, MatMul, ... into ONNX Runtime's CPU int8 kernels, which this class exists to avoid.
        opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        self._session = onnxruntime.InferenceSession(str(self.cfg.path), opts, providers=["CPUExecutionProvider"])
        self._in = _only(self._session.get_inputs(), self.cfg.input_name, "input", self.cfg.path)
        self._out = _only(self._session.get_outputs(), self.cfg.output_name, "output", self.cfg.path)
        self._input = np.zeros(self.requested_shape, dtype=self.requested_dtype)

    @property
    def input(self) -> Array:
        return self._input

    def _infer(self) -> Array:
        result: Array = self._session.run([self._out], {self._in: self._input})[0]
        return result

    def _close(self) -> None:
        del self._session


def _only(args: list[Any], name: str | None, kind: str, path: Path) -> str:
    names = [a.name for a in args]
    if name is not None:
        if name not in names:
            raise ModelError(f"{path}: model.{kind}_name={name!r} is not among the model's {kind}s {names}")
        return name
    if len(names) != 1:
        raise ModelError(f"{path}: the model has {len(names)} {kind}s {names}; set model.{kind}_name")
    return str(names[0])
