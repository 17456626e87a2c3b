"""``linegate build-engine``: engine and sidecar key written, options checked, exit codes.

Runs on the CPU with the TensorRT test double (``[trt-double]`` in the test id); where the real
``tensorrt`` is importable (a Jetson) it uses that instead (``[trt-real]``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from linegate.cli import main
from linegate.engine.engine_key import EngineKey, TensorProfile, key_path
from tests.engine import trt_double
from tests.engine.trt_double.models import pooled_classifier

pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test models")
CHOICE = trt_double.choice()


@pytest.fixture(params=[CHOICE], ids=[f"trt-{CHOICE}"])
def trt(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``tensorrt`` (real where importable, else the double) and this machine's GPU facts (or test ones)."""
    with trt_double.tensorrt_for_tests(request.param) as module:
        trt_double.gpu_for_tests(monkeypatch)
        yield module


def read_key(engine: Path) -> EngineKey:
    return EngineKey.from_json(key_path(engine).read_text(), key_path(engine))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(*argv: str) -> int:
    return main(["build-engine", *argv, "--log-level", "warning"])


def test_writes_the_engine_and_its_key(tmp_path: Path, trt: ModuleType, capfd: pytest.CaptureFixture[str]) -> None:
    """The engine and ENGINE.key.json are written; the key records sources, platform, options and digests."""
    from linegate.engine import gpu_info

    model = pooled_classifier(tmp_path / "m.onnx", ["batch", 1, "h", "w"])
    engine = tmp_path / "out" / "m.engine"
    engine.parent.mkdir()
    assert build(str(model), "--sizes", "16,24", "--batch", "1:2:4", "--workspace-mib", "256",
                 "--output", str(engine)) == 0  # fmt: skip
    key = read_key(engine)
    gpu = gpu_info.current_gpu()
    assert key.onnx_file == "m.onnx" and key.onnx_sha256 == sha256(model)
    assert key.engine_sha256 == sha256(engine)
    assert (key.tensorrt_version, key.gpu_name, key.compute_capability) == (trt.__version__, gpu.name, gpu.capability)
    assert key.l4t_release == gpu_info.l4t_release()
    assert (key.precision, key.workspace_mib, key.calibration_set_sha256) == ("fp16", 256, None)
    assert key.profiles == (
        (TensorProfile("image", (1, 1, 16, 16), (2, 1, 16, 16), (4, 1, 16, 16)),),
        (TensorProfile("image", (1, 1, 24, 24), (2, 1, 24, 24), (4, 1, 24, 24)),),
    )
    import linegate

    assert key.linegate_version == linegate.__version__ and key.build_seconds >= 0
    assert datetime.datetime.fromisoformat(key.built_at).tzinfo is not None
    out = capfd.readouterr().out
    assert out.startswith(f"wrote {engine} (") and "2 optimisation profiles" in out and "m.engine.key.json" in out


def test_rebuild_command_rebuilds_the_same_engine(tmp_path: Path, trt: ModuleType) -> None:
    """The key's rebuild command, run again, builds an engine with the same options and sources."""
    model = pooled_classifier(tmp_path / "m.onnx", ["batch", 1, 12, 16])
    assert build(str(model), "--precision", "fp32", "--batch", "4", "--timing-cache", str(tmp_path / "tc")) == 0
    first = read_key(tmp_path / "m.engine")
    argv = shlex.split(first.rebuild_command)
    assert argv[:2] == ["linegate", "build-engine"]
    (tmp_path / "m.engine").unlink()
    assert main([*argv[1:], "--log-level", "warning"]) == 0
    again = read_key(tmp_path / "m.engine")
    same = ("onnx_sha256", "precision", "profiles", "rebuild_command", "tensorrt_version", "gpu_name")
    assert all(getattr(first, f) == getattr(again, f) for f in same)
    assert first.profiles == ((TensorProfile("image", (1, 1, 12, 16), (4, 1, 12, 16), (4, 1, 12, 16)),),)


def test_default_output_is_beside_the_model(tmp_path: Path, trt: ModuleType) -> None:
    """Without --output the engine is MODEL.engine beside the model, readable like a normal file."""
    model = pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16])
    old = os.umask(0o022)
    try:
        assert build(str(model)) == 0
    finally:
        os.umask(old)
    assert read_key(tmp_path / "m.engine").profiles == ()
    assert (tmp_path / "m.engine").stat().st_mode & 0o777 == 0o644


def test_calibration_report_goes_into_the_key(tmp_path: Path, trt: ModuleType) -> None:
    """--calibration-report's calibration_set_sha256 is recorded for an int8 build."""
    model = pooled_classifier(tmp_path / "q.onnx", [1, 1, 12, 16], qdq=True)
    report = tmp_path / "calib.json"
    report.write_text(json.dumps({"calibration_set_sha256": "e" * 64, "frames": 500}))
    assert build(str(model), "--precision", "int8", "--calibration-report", str(report)) == 0
    assert read_key(tmp_path / "q.engine").calibration_set_sha256 == "e" * 64


def test_calibration_report_beside_the_model_is_found(tmp_path: Path, trt: ModuleType) -> None:
    """An int8 build finds MODEL.int8.report.json beside the model without the option."""
    model = pooled_classifier(tmp_path / "q.onnx", [1, 1, 12, 16], qdq=True)
    (tmp_path / "q.int8.report.json").write_text(json.dumps({"calibration_set_sha256": "f" * 64}))
    assert build(str(model), "--precision", "int8") == 0
    assert read_key(tmp_path / "q.engine").calibration_set_sha256 == "f" * 64


@pytest.mark.parametrize(
    ("report", "precision", "message"),
    [
        ({"frames": 3}, "int8", "the calibration report has no calibration_set_sha256"),
        ("not json", "int8", "the calibration report is not JSON"),
        ({"calibration_set_sha256": "e" * 64}, "fp16", "only an int8 build has a calibration set"),
    ],
    ids=["field-missing", "not-json", "not-int8"],
)
def test_unusable_calibration_report_is_refused(
    tmp_path: Path, trt: ModuleType, capfd: pytest.CaptureFixture[str], report: Any, precision: str, message: str
) -> None:
    """A report without the field, not JSON, or for a build without int8 fails with exit 78 and no engine."""
    model = pooled_classifier(tmp_path / "q.onnx", [1, 1, 12, 16], qdq=True)
    path = tmp_path / "r.json"
    path.write_text(report if isinstance(report, str) else json.dumps(report))
    assert build(str(model), "--precision", precision, "--calibration-report", str(path)) == 78
    assert message in capfd.readouterr().err
    assert not (tmp_path / "q.engine").exists()


def test_int8_without_qdq_exits_78_and_writes_nothing(
    tmp_path: Path, trt: ModuleType, capfd: pytest.CaptureFixture[str]
) -> None:
    """An int8 build of a model without Q/DQ nodes exits 78 with what to do; no engine or key is left."""
    model = pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16])
    assert build(str(model), "--precision", "int8") == 78
    assert "linegate calibrate" in capfd.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_missing_model_exits_78(tmp_path: Path, trt: ModuleType, capfd: pytest.CaptureFixture[str]) -> None:
    """A model path that does not exist fails with exit 78 naming it."""
    assert build(str(tmp_path / "nope.onnx")) == 78
    assert "nope.onnx: no such ONNX model" in capfd.readouterr().err


@pytest.mark.parametrize("option", [["--sizes", "big"], ["--batch", "4:2:8"], ["--workspace-mib", "0"],
                                    ["--precision", "int4"]])  # fmt: skip
def test_malformed_options_are_usage_errors(tmp_path: Path, option: list[str]) -> None:
    """Malformed sizes, batch range, workspace or precision are refused by the parser (exit 2)."""
    with pytest.raises(SystemExit) as caught:
        main(["build-engine", str(tmp_path / "m.onnx"), *option])
    assert caught.value.code == 2


def test_timing_cache_is_created_then_updated(tmp_path: Path, trt: ModuleType) -> None:
    """--timing-cache creates the file on the first build and keeps it on the next."""
    model = pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16])
    cache = tmp_path / "timing.cache"
    assert build(str(model), "--timing-cache", str(cache)) == 0
    first = cache.read_bytes()
    assert first
    assert build(str(model), "--timing-cache", str(cache), "--precision", "fp32") == 0
    assert cache.read_bytes()


def test_without_tensorrt_says_where_to_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Where tensorrt cannot be imported, build-engine exits 78 saying to build on the device."""
    import linegate.engine

    for name in ("tensorrt", *trt_double.DEPENDENTS):
        monkeypatch.setitem(sys.modules, name, None)  # import of these now fails
    for name in trt_double.DEPENDENTS:
        monkeypatch.delattr(linegate.engine, name.rpartition(".")[2], raising=False)
    model = pooled_classifier(tmp_path / "m.onnx", [1, 1, 12, 16])
    assert build(str(model)) == 78
    assert "TensorRT is not available here" in capfd.readouterr().err
    assert not (tmp_path / "m.engine").exists()
