"""Building engines with TensorRT's builder API (on CPU with the test double; on a Jetson with TensorRT).

Test ids say which TensorRT ran: ``[trt-double]`` or ``[trt-real]``; tests named ``*_double`` look
inside the double's engine format and are skipped with real TensorRT.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from linegate.engine.engine_key import TensorProfile
from linegate.errors import EngineError, ModelError
from tests.engine.trt_double import is_double
from tests.engine.trt_double.models import pooled_classifier

pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test models")


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every structlog record of the test, whatever level filter an earlier command configured."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        with capture_logs() as records:
            yield records
    finally:
        structlog.configure(**saved)


def double_header(serialized: bytes) -> dict[str, object]:
    """The JSON header of an engine serialized by the test double."""
    (size,) = struct.unpack_from("<I", serialized, 8)
    header: dict[str, object] = json.loads(serialized[12 : 12 + size])
    return header


def test_static_model_builds_without_profiles(tmp_path: Path, trt_build: ModuleType) -> None:
    """A fixed-shape model needs no profile; the engine declares the model's tensors, dtypes and shapes."""
    onnx_path = pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16])
    built = trt_build.build(onnx_path, trt_build.BuildOptions("fp32"))
    assert built.profiles == [] and built.inputs == {"image": (1, 1, 12, 16)}
    info = trt_build.describe(built.serialized, tmp_path / "m.engine")
    assert [(t.name, t.mode, t.dtype, t.shape) for t in info.tensors] == [
        ("image", "input", "float32", (1, 1, 12, 16)),
        ("scores", "output", "float32", (1, 2)),
    ]
    assert info.profiles == ()


def test_one_profile_per_size_with_the_batch_range(tmp_path: Path, trt_build: ModuleType) -> None:
    """Dynamic batch, height and width: the engine has one profile per size, each with the batch range."""
    onnx_path = pooled_classifier(tmp_path / "m.onnx", ["batch", 1, "h", "w"])
    built = trt_build.build(onnx_path, trt_build.BuildOptions("fp16", sizes=(16, 24), batch=(1, 2, 4)))
    want = (
        (TensorProfile("image", (1, 1, 16, 16), (2, 1, 16, 16), (4, 1, 16, 16)),),
        (TensorProfile("image", (1, 1, 24, 24), (2, 1, 24, 24), (4, 1, 24, 24)),),
    )
    assert tuple(built.profiles) == want
    info = trt_build.describe(built.serialized, tmp_path / "m.engine")
    assert info.profiles == want
    assert info.tensors[0].shape == (-1, 1, -1, -1)


def test_int8_needs_an_explicitly_quantized_model(tmp_path: Path, trt_build: ModuleType) -> None:
    """--precision int8 on a model without Q/DQ nodes is refused, pointing at linegate calibrate."""
    onnx_path = pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16])
    with pytest.raises(ModelError, match=r"m\.onnx: --precision int8 needs an explicitly quantized model.*calibrate"):
        trt_build.build(onnx_path, trt_build.BuildOptions("int8"))


def test_int8_builds_a_qdq_model(tmp_path: Path, trt_build: ModuleType) -> None:
    """A Q/DQ model builds as int8 and keeps float32 input and output tensors."""
    onnx_path = pooled_classifier(tmp_path / "q.onnx", [1, 1, 12, 16], qdq=True)
    built = trt_build.build(onnx_path, trt_build.BuildOptions("int8"))
    info = trt_build.describe(built.serialized, tmp_path / "q.engine")
    assert [t.dtype for t in info.tensors] == ["float32", "float32"]


def test_parser_refusal_names_the_model(tmp_path: Path, trt_build: ModuleType) -> None:
    """A file the ONNX parser refuses fails with its path and the parser's errors."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage, not a model")
    with pytest.raises(ModelError, match=r"bad\.onnx: TensorRT .*'s ONNX parser refused the model:\n  - "):
        trt_build.build(bad, trt_build.BuildOptions("fp32"))


def test_profile_options_the_model_cannot_take_are_refused(tmp_path: Path, trt_build: ModuleType) -> None:
    """A dynamic height and width without --sizes is refused before TensorRT builds anything."""
    onnx_path = pooled_classifier(tmp_path / "m.onnx", [1, 1, "h", "w"])
    with pytest.raises(ModelError, match=r"dynamic height and width .* --sizes"):
        trt_build.build(onnx_path, trt_build.BuildOptions("fp32"))


def test_timing_cache_is_written_and_accepted_again(tmp_path: Path, trt_build: ModuleType, logs: Any) -> None:
    """A new cache comes back filled; given to the next build it is used without a warning."""
    onnx_path = pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16])
    first = trt_build.build(onnx_path, trt_build.BuildOptions("fp16"), timing_cache=b"")
    assert first.timing_cache
    second = trt_build.build(onnx_path, trt_build.BuildOptions("fp16"), timing_cache=first.timing_cache)
    assert second.timing_cache and not [r for r in logs if r["event"] == "timing_cache_ignored"]


def test_corrupt_timing_cache_is_replaced_with_a_warning(tmp_path: Path, trt_build: ModuleType, logs: Any) -> None:
    """A timing cache TensorRT cannot use is logged and replaced; the build still succeeds."""
    onnx_path = pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16])
    built = trt_build.build(onnx_path, trt_build.BuildOptions("fp16"), timing_cache=b"not a timing cache")
    assert built.serialized and built.timing_cache
    assert [r["log_level"] for r in logs if r["event"] == "timing_cache_ignored"] == ["warning"]


def test_builder_messages_go_to_structlog(tmp_path: Path, trt_build: ModuleType, logs: Any) -> None:
    """TensorRT's own log messages arrive as structlog records (event 'tensorrt', TensorRT's severity)."""
    onnx_path = pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16])
    trt_build.build(onnx_path, trt_build.BuildOptions("fp32"))
    records = [r for r in logs if r["event"] == "tensorrt"]
    assert records and all(r["severity"] in ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE") for r in records)
    assert all(isinstance(r["message"], str) for r in records)


def test_progress_monitor_sees_the_build_phases(tmp_path: Path, trt_build: ModuleType) -> None:
    """The progress monitor is given to the builder and sees its phases start."""
    onnx_path = pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16])
    monitor = trt_build.ProgressBar(None)
    trt_build.build(onnx_path, trt_build.BuildOptions("fp32"), monitor=monitor)
    assert monitor.seen


def test_cancelled_build_stops_with_an_error(tmp_path: Path, trt_build: ModuleType) -> None:
    """A cancelled progress monitor stops the build; it fails saying so and returns no engine."""
    onnx_path = pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16])
    monitor = trt_build.ProgressBar(None)
    monitor.cancelled = True
    with pytest.raises(EngineError, match=r"m\.onnx: the build was cancelled"):
        trt_build.build(onnx_path, trt_build.BuildOptions("fp32"), monitor=monitor)


@pytest.mark.parametrize(
    ("phases", "line"),
    [
        ([("Building engine", 3, 12)], "Building engine [#####               ] 3/12"),
        ([("Building engine", 12, 12), ("Tactics", 0, 4)],
         "Building engine [####################] 12/12 > Tactics 0/4"),
        ([("Empty", 0, 0)], "Empty [                    ] 0/0"),
    ],
    ids=["one-phase", "nested", "no-steps"],
)  # fmt: skip
def test_render_progress(phases: list[tuple[str, int, int]], line: str, trt_build: ModuleType) -> None:
    """The progress line shows the outer phase as a bar and nested phases as counts."""
    assert trt_build.render_progress(phases) == line


def test_render_progress_fits_the_width(trt_build: ModuleType) -> None:
    """A line longer than the width is cut, ending in an ellipsis."""
    line = trt_build.render_progress([("x" * 200, 1, 2)], width=40)
    assert len(line) == 40 and line.endswith("…")


def test_precision_flags_and_workspace_reach_the_builder_double(
    tmp_path: Path, trt: ModuleType, trt_build: ModuleType
) -> None:
    """fp16 sets FP16, int8 sets INT8 and FP16, fp32 neither; --workspace-mib sets the workspace pool."""
    if not is_double(trt):
        pytest.skip("looks inside the test double's engine format")
    plain = pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16])
    qdq = pooled_classifier(tmp_path / "q.onnx", [1, 1, 12, 16], qdq=True)
    flags = {}
    for precision, model in (("fp32", plain), ("fp16", plain), ("int8", qdq)):
        built = trt_build.build(model, trt_build.BuildOptions(precision, workspace_mib=64))
        header = double_header(built.serialized)
        flags[precision] = header["flags"]
        assert header["workspace"] == 64 << 20
    assert flags == {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}


def test_foreign_engine_is_not_described_double(tmp_path: Path, trt: ModuleType, trt_build: ModuleType) -> None:
    """An engine of another TensorRT version cannot be described: the error names the file and the reason."""
    if not is_double(trt):
        pytest.skip("forges an engine of another version in the test double's format")
    built = trt_build.build(pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16]), trt_build.BuildOptions("fp32"))
    header = double_header(built.serialized) | {"tensorrt_version": "10.0.1.6"}
    (size,) = struct.unpack_from("<I", built.serialized, 8)
    blob = json.dumps(header).encode()
    forged = built.serialized[:8] + struct.pack("<I", len(blob)) + blob + built.serialized[12 + size :]
    with pytest.raises(ModelError, match=r"m\.engine: TensorRT .* cannot deserialize this engine: .*version tag"):
        trt_build.describe(forged, tmp_path / "m.engine")
