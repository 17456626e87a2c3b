"""``linegate inspect-engine``: tensors, profiles, the key and its check; without TensorRT the key alone.

Runs on the CPU with the TensorRT test double (``[trt-double]`` in the test id); where the real
``tensorrt`` is importable (a Jetson) it uses that instead (``[trt-real]``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from linegate.cli import main
from linegate.engine.engine_key import key_path
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


@pytest.fixture
def engine(tmp_path: Path, trt: ModuleType, capfd: pytest.CaptureFixture[str]) -> Path:
    """An engine with dynamic batch, height and width, two profiles, built by build-engine."""
    model = pooled_classifier(tmp_path / "m.onnx", ["batch", 1, "h", "w"])
    path = tmp_path / "m.engine"
    argv = ["build-engine", str(model), "--sizes", "16,24", "--batch", "1:1:4", "--log-level", "warning"]
    assert main(argv) == 0
    capfd.readouterr()
    return path


def inspect(path: Path, capfd: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["inspect-engine", str(path)])
    return code, capfd.readouterr().out.splitlines()


def test_shows_tensors_profiles_key_and_a_fitting_check(engine: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Tensors with dtypes and shapes, each profile's ranges, the key, and 'fits this machine'; exit 0."""
    code, lines = inspect(engine, capfd)
    assert code == 0
    text = "\n".join(lines)
    assert lines.index("inputs:") < lines.index("outputs:") < lines.index("optimisation profiles:")
    assert "  image                float32  [-1, 1, -1, -1]" in lines
    assert "  scores               float32  [-1, 2]" in lines
    assert "  0: image min [1, 1, 16, 16] opt [1, 1, 16, 16] max [4, 1, 16, 16]" in lines
    assert "  1: image min [1, 1, 24, 24] opt [1, 1, 24, 24] max [4, 1, 24, 24]" in lines
    assert f"key      {key_path(engine)}" in lines
    assert "  precision        fp16" in lines
    assert "linegate build-engine " in text and "key check: fits this machine" in text
    assert "PROBLEM" not in text


def test_key_of_another_tensorrt_exits_78_naming_it(engine: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A key from another TensorRT version: the check says it does not fit and why; exit 78."""
    sidecar = key_path(engine)
    sidecar.write_text(json.dumps(json.loads(sidecar.read_text()) | {"tensorrt_version": "9.9.9"}))
    code, lines = inspect(engine, capfd)
    assert code == 78
    assert "key check: does NOT fit this machine (the tensorrt backend refuses this engine):" in lines
    difference = "  - TensorRT version: the engine was built for 9.9.9, this machine has"
    assert any(line.startswith(difference) for line in lines)


def test_missing_key_exits_78_with_the_build_command(engine: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Without its sidecar the engine is still described, and the missing key is a problem (exit 78)."""
    key_path(engine).unlink()
    code, lines = inspect(engine, capfd)
    assert code == 78 and "inputs:" in lines
    assert any(line.startswith("PROBLEM: no engine key m.engine.key.json") and "build-engine" in line for line in lines)


def test_engine_that_cannot_be_opened_exits_78(engine: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A file TensorRT cannot deserialize is a problem naming TensorRT's reason; its key is still shown."""
    engine.write_bytes(b"garbage")
    code, lines = inspect(engine, capfd)
    assert code == 78 and "inputs:" not in lines
    assert any(line.startswith("PROBLEM: ") and "cannot deserialize this engine" in line for line in lines)
    assert any(line.startswith("  - engine file sha256:") for line in lines)


def test_without_tensorrt_the_key_is_shown_and_checked_as_far_as_possible(
    engine: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Where tensorrt cannot be imported: says the engine cannot be opened here, shows and checks the key; exit 0."""
    import linegate.engine

    # Not monkeypatch: its undo runs after the trt fixture has removed the double, and would put the
    # double back into sys.modules for every later test (check-config would then find a "tensorrt").
    names = ("tensorrt", *trt_double.DEPENDENTS)
    saved = {name: sys.modules.get(name) for name in names}
    try:
        for name in names:
            sys.modules[name] = None  # type: ignore[assignment]
        for name in trt_double.DEPENDENTS:
            monkeypatch.delattr(linegate.engine, name.rpartition(".")[2], raising=False)
        code, lines = inspect(engine, capfd)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    assert code == 0
    assert lines[1].startswith("TensorRT is not installed here") and "cannot be opened on this machine" in lines[1]
    assert "inputs:" not in lines and f"key      {key_path(engine)}" in lines
    assert "key check: fits this machine as far as checked" in lines
    assert any(line.startswith("  not checked here: TensorRT version") for line in lines)
    assert "    (TensorRT: not installed here)" in lines


def test_unreadable_engine_is_a_configuration_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """An engine path that cannot be read exits 78 naming it."""
    assert main(["inspect-engine", str(tmp_path / "none.engine")]) == 78
    assert "none.engine: cannot read the engine" in capfd.readouterr().err
