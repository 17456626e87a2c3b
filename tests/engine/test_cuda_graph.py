"""CUDA graphs for the TensorRT backend (``model.cuda_graph``) and :class:`cuda_memory.Graph`.

The choice (``cuda_graph_choice``) is plain logic and is tested everywhere. The rest needs cuda-python
and a GPU (marker ``gpu``): with the TensorRT test double, whose ``execute_async_v3`` enqueues the
model run as a host function node while its stream is capturing, a captured graph really reruns the
model on every launch, so graph on and off must give the same scores on every input. The fall-back
tests use the double's ``capturable = False`` (an engine that cannot be captured) and skip with real
TensorRT.

    python -m pytest -m gpu tests/engine
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import structlog
from structlog.testing import capture_logs

from linegate.config.schema import ModelSection
from linegate.engine.engine_key import TensorProfile
from linegate.errors import ConfigError, EngineError, ModelError
from tests.engine.gpu_frame_path import device_scores
from tests.engine.trt_double import gpu_for_tests, is_double
from tests.engine.trt_double.models import expected_scores, pooled_classifier

SHAPE = (1, 1, 12, 16)
Choice = Callable[[str, str, tuple[int, ...], list[TensorProfile]], bool]


def section(path: Path, **extra: Any) -> ModelSection:
    cfg = ModelSection.model_validate(
        {"id": "trt", "backend": "tensorrt", "path": str(path),
         "postprocess": {"classes": ["pass", "reject"], "reject_thresholds": {"reject": 0.5}}}
    )  # fmt: skip
    return cfg.model_copy(update=extra) if extra else cfg


def create(path: Path, shape: tuple[int, ...] = SHAPE, **extra: Any) -> Any:
    from linegate.engine import create_engine

    return create_engine(section(path, **extra), shape, np.dtype(np.float32))


# --- the choice: runs everywhere -----------------------------------------------------------------


@pytest.fixture
def choice(trt: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Choice:
    """``trt_backend.cuda_graph_choice``; where cuda-python is missing, a stub stands in for cuda_memory."""
    try:
        importlib.import_module("linegate.engine.cuda_memory")
    except ImportError:
        stub = types.ModuleType("linegate.engine.cuda_memory")
        stub.PinnedBuffer = type("PinnedBuffer", (), {})  # type: ignore[attr-defined]
        stub.DeviceBuffer = type("DeviceBuffer", (), {})  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "linegate.engine.cuda_memory", stub)
    fn: Choice = importlib.import_module("linegate.engine.trt_backend").cuda_graph_choice
    return fn


def profile(lo: tuple[int, ...], hi: tuple[int, ...]) -> TensorProfile:
    return TensorProfile("image", lo, lo, hi)


@pytest.mark.parametrize(
    ("setting", "shape", "profiles", "on"),
    [
        ("auto", (1, 1, 12, 16), [], True),
        ("auto", (-1, 1, 12, 16), [profile((2, 1, 12, 16), (2, 1, 12, 16))], True),
        ("auto", (-1, 1, 12, 16), [profile((1, 1, 12, 16), (4, 1, 12, 16))], False),
        ("auto", (1, 1, -1, -1), [profile((1, 1, 16, 16), (1, 1, 16, 16)), profile((1, 1, 24, 24), (1, 1, 24, 24))],
         False),
        ("on", (1, 1, 12, 16), [], True),
        ("on", (-1, 1, 12, 16), [profile((3, 1, 12, 16), (3, 1, 12, 16))], True),
        ("off", (1, 1, 12, 16), [], False),
        ("off", (-1, 1, 12, 16), [profile((1, 1, 12, 16), (4, 1, 12, 16))], False),
    ],
    ids=["auto-static", "auto-one-fixed-profile", "auto-dynamic", "auto-several-profiles", "on-static",
         "on-one-fixed-profile", "off-static", "off-dynamic"],
)  # fmt: skip
def test_cuda_graph_choice(
    choice: Choice, setting: str, shape: tuple[int, ...], profiles: list[TensorProfile], on: bool
) -> None:
    """The "auto" setting is on for static input shapes only; "on" and "off" are what they say where allowed."""
    assert choice(setting, "image", shape, profiles) is on


def test_cuda_graph_on_with_dynamic_shapes_is_a_config_error(choice: Choice) -> None:
    """The "on" setting for a dynamic-shape engine is a configuration error naming the key and the profiles."""
    with pytest.raises(ModelError, match=r"model\.cuda_graph = 'on' needs static input shapes.*'image'.*"
                                         r"\[1, 1, 12, 16\]\.\.\[4, 1, 12, 16\]") as caught:  # fmt: skip
        choice("on", "image", (-1, 1, 12, 16), [profile((1, 1, 12, 16), (4, 1, 12, 16))])
    assert isinstance(caught.value, ConfigError)


def test_cuda_graph_defaults_to_auto(tmp_path: Path) -> None:
    """The model section's default is "auto"; other values are refused by the schema."""
    path = tmp_path / "m.engine"
    path.write_bytes(b"")
    assert section(path).cuda_graph == "auto"
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cuda_graph"):
        ModelSection.model_validate({**section(path).model_dump(), "cuda_graph": "always"})


# --- on a GPU ------------------------------------------------------------------------------------


@pytest.fixture
def build(trt: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``build(dims, *options) -> engine path``: ``linegate build-engine`` (fp32) on a pooled classifier."""
    pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test models")
    gpu_for_tests(monkeypatch)
    from linegate.cli import main

    def run(dims: list[int | str], *options: str) -> Path:
        engine = tmp_path / "m.engine"
        argv = ["build-engine", str(pooled_classifier(tmp_path / "m.onnx", dims)), "--precision", "fp32",
                "--output", str(engine), "--log-level", "error", *options]  # fmt: skip
        assert main(argv) == 0
        return engine

    return run


def runs_of(engine: Any) -> int:
    """Model runs the double made in graph replays (host function nodes); 0 with real TensorRT."""
    return int(getattr(engine._context, "host_runs", 0))


@pytest.mark.gpu
def test_graph_on_and_off_give_the_same_scores_on_every_input(build: Any, trt: ModuleType) -> None:
    """With a graph each launch reruns the model on the current input (not the capture's): on several
    random inputs, through infer() and through the GPU frame path's enqueue, graph on and off agree
    with each other and the reference."""
    path = build(list(SHAPE))
    rng = np.random.default_rng(7)
    with create(path, cuda_graph="on") as graph, create(path, cuda_graph="off") as plain:
        assert graph.settings == {"cuda_graph": True} and plain.settings == {"cuda_graph": False}
        before = runs_of(graph)
        for i, mean in enumerate((0.2, 0.8, 0.35, 0.65, 0.5)):
            image = rng.uniform(0.0, 2 * mean, SHAPE).astype(np.float32)
            graph.input[...] = image
            plain.input[...] = image
            got, want = np.array(graph.infer()), np.array(plain.infer())
            np.testing.assert_array_equal(got, want)
            np.testing.assert_allclose(got, expected_scores(image), rtol=1e-4, atol=1e-6)
            if is_double(trt):
                assert runs_of(graph) == before + i + 1  # one model run per launch
        for mean in (0.25, 0.75):
            image = rng.uniform(0.0, 2 * mean, SHAPE).astype(np.float32)
            got, want = device_scores(graph, image), device_scores(plain, image)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_allclose(got, expected_scores(image), rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
def test_auto_uses_a_graph_for_a_static_engine(build: Any) -> None:
    """The default ("auto") runs a static engine as a graph."""
    with create(build(list(SHAPE))) as engine:
        assert engine.settings == {"cuda_graph": True}
        engine.input[...] = 0.9
        np.testing.assert_allclose(engine.infer(), expected_scores(engine.input), rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
def test_auto_picks_no_graph_for_a_dynamic_profile(build: Any) -> None:
    """The "auto" setting with a dynamic-batch profile (min != max) runs plainly."""
    with create(build(["batch", 1, 12, 16], "--batch", "1:1:4"), (2, 1, 12, 16)) as engine:
        assert engine.settings == {"cuda_graph": False}
        engine.input[...] = 0.3
        np.testing.assert_allclose(engine.infer(), expected_scores(engine.input), rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
def test_on_with_a_dynamic_profile_is_a_config_error(build: Any) -> None:
    """The "on" setting with a dynamic-batch engine fails at load, naming model.cuda_graph."""
    engine = create(build(["batch", 1, 12, 16], "--batch", "1:1:4"), (2, 1, 12, 16), cuda_graph="on")
    with pytest.raises(ModelError, match=r"m\.engine: model\.cuda_graph = 'on' needs static input shapes"):
        engine.load()
    assert not engine.loaded


@pytest.fixture
def not_capturable(trt: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The double behaves like an engine TensorRT cannot capture (real TensorRT: skipped)."""
    if not is_double(trt):
        pytest.skip("needs the TensorRT test double to play an engine that cannot be captured")
    monkeypatch.setattr(trt.IExecutionContext, "capturable", False)


@pytest.mark.gpu
@pytest.mark.usefixtures("not_capturable")
def test_capture_failure_falls_back_to_plain_enqueue_and_logs(build: Any) -> None:
    """With "auto", an engine whose capture fails loads, logs cuda_graph_unavailable with the reason,
    and runs plainly with correct scores."""
    path = build(list(SHAPE))  # the build command configured an "error" level filter: lift it here
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        with capture_logs() as records, create(path) as engine:
            assert engine.settings == {"cuda_graph": False}
            for mean in (0.2, 0.8):
                engine.input[...] = mean
                np.testing.assert_allclose(engine.infer(), expected_scores(engine.input), rtol=1e-4, atol=1e-6)
                image = np.full(SHAPE, 1 - mean, np.float32)
                np.testing.assert_allclose(device_scores(engine, image), expected_scores(image), rtol=1e-4, atol=1e-6)
    finally:
        structlog.configure(**saved)
    unavailable = [r for r in records if r["event"] == "cuda_graph_unavailable"]
    assert len(unavailable) == 1, records
    assert unavailable[0]["log_level"] == "warning" and unavailable[0]["path"] == str(path)
    assert "cannot be captured" in unavailable[0]["reason"]


@pytest.mark.gpu
@pytest.mark.usefixtures("not_capturable")
def test_capture_failure_with_on_fails_the_load(build: Any) -> None:
    """With "on", an engine whose capture fails is an EngineError at load naming model.cuda_graph."""
    engine = create(build(list(SHAPE)), cuda_graph="on")
    with pytest.raises(EngineError, match=r"model\.cuda_graph = 'on', but this engine cannot run as a CUDA graph"):
        engine.load()
    assert not engine.loaded


@pytest.mark.gpu
def test_graph_replays_copies_of_the_current_host_data() -> None:
    """cuda_memory.Graph: a captured host -> device -> host round trip copies what the source holds at
    each launch; launch and close work, and nothing ran at capture time."""
    from linegate.engine import cuda_memory as cm

    stream, src, dst, dev = cm.Stream(), cm.PinnedBuffer(64), cm.PinnedBuffer(64), cm.DeviceBuffer(64)
    try:
        a, b = src.array((16,), np.float32), dst.array((16,), np.float32)
        a[...], b[...] = 1.0, -1.0

        def enqueue(s: cm.Stream) -> None:
            cm.copy_h2d_async(dev.ptr, src.ptr, 64, s)
            cm.copy_d2h_async(dst.ptr, dev.ptr, 64, s)

        graph = cm.Graph(stream, enqueue)
        stream.synchronize()
        assert (b == -1.0).all()  # captured, not run
        for value in (2.0, 3.5, -7.0):
            a[...] = np.arange(16) * value
            graph.launch(stream)
            stream.synchronize()
            np.testing.assert_array_equal(b, a)
        graph.close()
        graph.close()  # idempotent
    finally:
        for buf in (src, dst, dev):
            buf.close()
        stream.close()


@pytest.mark.gpu
def test_graph_capture_failure_names_the_reason_and_leaves_the_stream_usable() -> None:
    """Work that fails while captured raises EngineError with its reason; the stream is out of capture
    mode afterwards (a plain copy runs on it)."""
    from linegate.engine import cuda_memory as cm

    stream, host, dev = cm.Stream(), cm.PinnedBuffer(64), cm.DeviceBuffer(64)
    try:

        def fail(s: cm.Stream) -> None:
            cm.copy_h2d_async(dev.ptr, host.ptr, 64, s)
            s.synchronize()  # not allowed while capturing: invalidates the capture

        with pytest.raises(EngineError, match=r"capturing a CUDA graph failed: cudaStreamSynchronize failed"):
            cm.Graph(stream, fail)
        host.array((16,), np.float32)[...] = 4.0
        cm.copy_h2d_async(dev.ptr, host.ptr, 64, stream)
        cm.memset_async(dev.ptr, 0, 32, stream)
        cm.copy_d2h_async(host.ptr, dev.ptr, 64, stream)
        stream.synchronize()
        np.testing.assert_array_equal(host.array((16,), np.float32), [0.0] * 8 + [4.0] * 8)
    finally:
        host.close()
        dev.close()
        stream.close()
