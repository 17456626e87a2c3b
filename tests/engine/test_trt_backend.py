"""The TensorRT backend on a GPU: binding, copies, profiles, and every refusal before and at load.

Engines are built with ``linegate build-engine`` (so each has its sidecar key). Where the real
``tensorrt`` is importable (a Jetson) these tests use it; elsewhere the test double, whose
``execute_async_v3`` runs the ONNX model between the bound device buffers with cuda-python, so the
backend's real CUDA code runs. Test ids say which: ``[trt-double]`` or ``[trt-real]``. All need
cuda-python and a GPU (marker ``gpu``):

    python -m pytest -m gpu tests/engine        # GPU machine: the double; Jetson: real TensorRT
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from linegate.config.schema import ModelSection
from linegate.engine.engine_key import key_path
from linegate.errors import ModelError
from tests.engine.gpu_frame_path import device_scores
from tests.engine.trt_double import gpu_for_tests
from tests.engine.trt_double.models import expected_scores, pooled_classifier

pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test models")
pytestmark = pytest.mark.gpu

F32 = np.dtype(np.float32)
SHAPE = (1, 1, 12, 16)


@pytest.fixture
def build(trt: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``build(dims, *options) -> engine path``: runs ``linegate build-engine`` (fp32) on a pooled classifier."""
    gpu_for_tests(monkeypatch)
    from linegate.cli import main

    def run(dims: list[int | str], *options: str, name: str = "m") -> Path:
        onnx_path = pooled_classifier(tmp_path / f"{name}.onnx", dims)
        engine = tmp_path / f"{name}.engine"
        argv = ["build-engine", str(onnx_path), "--precision", "fp32", "--output", str(engine), "--log-level", "error"]
        assert main([*argv, *options]) == 0
        return engine

    return run


def section(path: Path, **extra: Any) -> ModelSection:
    cfg = ModelSection.model_validate(
        {"id": "trt", "backend": "tensorrt", "path": str(path),
         "postprocess": {"classes": ["pass", "reject"], "reject_thresholds": {"reject": 0.5}}}
    )  # fmt: skip
    return cfg.model_copy(update=extra) if extra else cfg


def create(path: Path, shape: tuple[int, ...] = SHAPE, dtype: np.dtype[Any] = F32, **extra: Any) -> Any:
    from linegate.engine import create_engine

    return create_engine(section(path, **extra), shape, dtype)


def edit_key(engine: Path, **changes: Any) -> None:
    sidecar = key_path(engine)
    sidecar.write_text(json.dumps(json.loads(sidecar.read_text()) | changes))


def check_scores(engine: Any, shape: tuple[int, ...], seed: int) -> None:
    """Several random inputs through the bound buffers; each output equals the float64 reference."""
    rng = np.random.default_rng(seed)
    first = engine.infer()
    assert first.shape == (shape[0], 2) and first.dtype == np.float32
    for mean in (0.3, 0.45, 0.7):
        engine.input[...] = rng.uniform(0.0, 2 * mean, shape)
        out = engine.infer()
        assert out is first  # the bound output buffer, every time
        np.testing.assert_allclose(out, expected_scores(engine.input), rtol=1e-4, atol=1e-6)


def test_static_engine_matches_the_reference(build: Any) -> None:
    """A static engine's scores, through pinned and device buffers, are the model's on each input."""
    with create(build(list(SHAPE))) as engine:
        check_scores(engine, SHAPE, seed=1)


@pytest.mark.parametrize("batch", [1, 3])
def test_dynamic_batch_engine_matches_the_reference(build: Any, batch: int) -> None:
    """A dynamic-batch engine runs the preprocessor's batch within its range and gives the model's scores."""
    with create(build(["batch", 1, 12, 16], "--batch", "1:1:4"), (batch, 1, 12, 16)) as engine:
        check_scores(engine, (batch, 1, 12, 16), seed=2)


@pytest.mark.parametrize("size", [16, 24])
def test_the_profile_holding_the_shape_is_chosen(build: Any, size: int) -> None:
    """With one profile per size, the input size picks its profile and the engine runs at that size."""
    with create(build([1, 1, "h", "w"], "--sizes", "16,24"), (1, 1, size, size)) as engine:
        check_scores(engine, (1, 1, size, size), seed=size)


def test_shape_outside_every_profile_is_refused(build: Any) -> None:
    """A size no profile holds fails at load, listing the profiles and how to rebuild."""
    engine = create(build([1, 1, "h", "w"], "--sizes", "16,24"), (1, 1, 32, 32))
    outside = r"m\.engine: input 'image' shape \[1, 1, 32, 32\] is outside the engine's optimisation profiles "
    with pytest.raises(ModelError, match=outside + r"\(\[1, 1, 16, 16\]\.\.\[1, 1, 16, 16\]; .*build-engine"):
        engine.load()


def test_static_shape_mismatch_is_refused(build: Any) -> None:
    """A preprocessor shape the static engine cannot take is refused, naming both shapes."""
    engine = create(build(list(SHAPE)), (1, 1, 24, 32))
    with pytest.raises(ModelError, match=r"input 'image' has shape \[1, 1, 12, 16\].*\[1, 1, 24, 32\]"):
        engine.load()


def test_dtype_mismatch_is_refused(build: Any) -> None:
    """A float16 preprocessor for a float32 engine is refused at load."""
    engine = create(build(list(SHAPE)), SHAPE, np.dtype(np.float16))
    with pytest.raises(ModelError, match="float32.*float16"):
        engine.load()


def test_missing_key_is_refused_with_the_build_command(build: Any) -> None:
    """An engine without its sidecar key is refused before deserialisation, with the build command."""
    path = build(list(SHAPE))
    key_path(path).unlink()
    with pytest.raises(ModelError, match=r"no engine key m\.engine\.key\.json beside it.*\n  linegate build-engine"):
        create(path).load()


def test_missing_key_loads_when_the_config_makes_it_optional(build: Any) -> None:
    """With model.engine_key = "optional" an engine without a key loads and runs."""
    path = build(list(SHAPE))
    key_path(path).unlink()
    with create(path, engine_key="optional") as engine:
        check_scores(engine, SHAPE, seed=3)


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"tensorrt_version": "9.9.9"}, [r"  - TensorRT version: the engine was built for 9\.9\.9, this machine has "]),
        ({"gpu_name": "Imaginary GPU", "compute_capability": "1.0"},
         [r"  - GPU: the engine was built for Imaginary GPU, this machine has ",
          r"  - compute capability: the engine was built for 1\.0, this machine has "]),
    ],
    ids=["other-tensorrt", "other-gpu"],
)  # fmt: skip
def test_key_of_another_machine_is_refused(build: Any, changes: dict[str, str], named: list[str]) -> None:
    """A key from another TensorRT or GPU refuses the engine, naming each difference and the rebuild command."""
    path = build(list(SHAPE))
    edit_key(path, **changes)
    with pytest.raises(ModelError) as caught:
        create(path, engine_key="optional").load()  # a present key is checked even where a missing one is allowed
    message = str(caught.value)
    for pattern in named:
        assert any(re.match(pattern, line) for line in message.splitlines()), (pattern, message)
    assert message.splitlines()[-1].startswith("  linegate build-engine ") and str(path.resolve()) in message


def test_changed_engine_file_is_refused(build: Any) -> None:
    """An engine file changed after its build (its sha256 differs from the key's) is refused."""
    path = build(list(SHAPE))
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelError, match=r"engine file sha256: the engine was built for [0-9a-f]{16}"):
        create(path).load()


def test_undeserializable_engine_is_refused(build: Any) -> None:
    """A file TensorRT cannot deserialize (its key fits) fails with the path, TensorRT's reason and the rebuild."""
    import hashlib

    path = build(list(SHAPE))
    path.write_bytes(b"not an engine at all")
    edit_key(path, engine_sha256=hashlib.sha256(b"not an engine at all").hexdigest())
    with pytest.raises(ModelError, match=r"m\.engine: TensorRT .* cannot deserialize this engine .*rebuild it on this "
                                         r"device: linegate build-engine .*\): \S"):
        create(path).load()  # fmt: skip


def test_malformed_key_is_refused(build: Any) -> None:
    """A sidecar that is not a key is refused, naming it."""
    path = build(list(SHAPE))
    key_path(path).write_text("{")
    with pytest.raises(ModelError, match=r"m\.engine\.key\.json: not a JSON engine key"):
        create(path).load()


def test_close_releases_and_a_new_load_works(build: Any) -> None:
    """After close, the same engine loads again in a new backend and runs (nothing left bound)."""
    path = build(list(SHAPE))
    first = create(path)
    first.load()
    first.close()
    assert not first.loaded
    with create(path) as again:
        check_scores(again, SHAPE, seed=4)


# --- micro-batching (model.max_batch) -------------------------------------------------------------

BATCH_DIMS: list[int | str] = ["batch", 1, 12, 16]


def frames(rng: np.random.Generator, rows: int) -> np.ndarray:
    """*rows* one-frame inputs, each of its own mean (so each row has its own scores)."""
    means = rng.uniform(0.1, 0.9, rows)
    return np.stack([rng.uniform(0.0, 2 * m, SHAPE[1:]) for m in means]).astype(np.float32)


def one_row_scores(engine: Any, images: np.ndarray) -> np.ndarray:
    """Each of *images* through a one-row run (``infer()``), stacked."""
    outs = []
    for image in images:
        engine.input[...] = image
        outs.append(np.array(engine.infer()))
    return np.concatenate(outs)


def run_batch(engine: Any, images: np.ndarray) -> np.ndarray:
    """*images* written row by row into the bound input, then one ``infer_batch``; a copy of its output."""
    for i, image in enumerate(images):
        engine.input_row(i)[...] = image
    out = engine.infer_batch(len(images))
    assert out.shape == (len(images), 2) and out.dtype == np.float32
    assert np.shares_memory(out, engine.output)  # a view of the bound output
    return np.array(out)


def test_batches_give_each_row_its_one_row_scores(build: Any) -> None:
    """model.max_batch = 4 on a ``--batch 1:4:4`` engine: a batch of 1..4 rows, each row its own input, gives
    every row the scores a one-row run of that input gives (and the model's)."""
    rng = np.random.default_rng(11)
    with create(build(BATCH_DIMS, "--batch", "1:4:4"), max_batch=4) as engine:
        assert engine.max_batch == 4 and engine.input.shape == SHAPE and engine.input_row(0) is engine.input
        assert all(engine.input_row(i).shape == SHAPE for i in range(4))
        for rows in (1, 2, 3, 4):
            images = frames(rng, rows)
            batched = run_batch(engine, images)
            np.testing.assert_allclose(batched, expected_scores(images), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(batched, one_row_scores(engine, images), rtol=1e-5, atol=1e-7)


def test_alternating_batch_sizes_stay_correct(build: Any) -> None:
    """Batches of 4, 1, 3, 1 rows in turn (the input shape set and reset between them) each give the model's
    scores; a one-row ``infer()`` after a batch runs one row again (the context's input shape back to 1)."""
    rng = np.random.default_rng(12)
    with create(build(BATCH_DIMS, "--batch", "1:4:4"), max_batch=4) as engine:
        for step, rows in enumerate((4, 1, 3, 1, 4)):
            images = frames(rng, rows)
            if rows == 1 and step == 1:
                engine.input[...] = images[0]
                got = np.array(engine.infer())
                assert got.shape == (1, 2)
            else:
                got = run_batch(engine, images)
            np.testing.assert_allclose(got, expected_scores(images), rtol=1e-4, atol=1e-6)
            assert tuple(engine._context.get_tensor_shape("image")) == (rows, *SHAPE[1:])


def test_batches_with_the_profile_of_the_input_size(build: Any) -> None:
    """With one profile per size, the input size's profile (here the second) holds the batches and is chosen."""
    rng = np.random.default_rng(13)
    path = build(["batch", 1, "h", "w"], "--sizes", "16,24", "--batch", "1:2:3")
    with create(path, (1, 1, 24, 24), max_batch=3) as engine:
        images = np.stack([rng.uniform(0.0, 2 * m, (1, 24, 24)) for m in (0.2, 0.5, 0.8)]).astype(np.float32)
        for i, image in enumerate(images):
            engine.input_row(i)[...] = image
        np.testing.assert_allclose(engine.infer_batch(3), expected_scores(images), rtol=1e-4, atol=1e-6)


def test_rows_outside_max_batch_are_refused(build: Any) -> None:
    """A batch or an input row beyond model.max_batch is an EngineError, not a write past the buffers."""
    from linegate.errors import EngineError

    with create(build(BATCH_DIMS, "--batch", "1:4:4"), max_batch=4) as engine:
        with pytest.raises(EngineError, match="batch of 5 outside 1..4"):
            engine.infer_batch(5)
        with pytest.raises(EngineError, match="input row 4 outside 0..3"):
            engine.input_row(4)


def test_one_row_engine_keeps_one_row(build: Any) -> None:
    """With model.max_batch = 1 (the default) the buffers hold one row and infer_batch(1) is infer()."""
    with create(build(list(SHAPE))) as engine:
        assert engine.max_batch == 1
        engine.input[...] = 0.7
        assert engine.infer_batch(1) is engine.infer()
        np.testing.assert_allclose(engine.infer_batch(1), expected_scores(engine.input), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("dims", "options", "has"),
    [
        (list(SHAPE), (), r"\[1, 1, 12, 16\] with no optimisation profile"),
        (BATCH_DIMS, ("--batch", "1:2:2"), r"\[-1, 1, 12, 16\] with optimisation profiles "
                                           r"\[1, 1, 12, 16\]\.\.\[2, 1, 12, 16\]"),
        (BATCH_DIMS, ("--batch", "2:4:4"), r"\[-1, 1, 12, 16\] with optimisation profiles "
                                           r"\[2, 1, 12, 16\]\.\.\[4, 1, 12, 16\]"),
    ],
    ids=["fixed-batch", "profile-max-below", "profile-min-above-1"],
)  # fmt: skip
def test_max_batch_the_engine_cannot_run_is_refused(
    build: Any, dims: list[int | str], options: tuple[str, ...], has: str
) -> None:
    """model.max_batch = 4 on an engine without a profile holding batches 1..4 fails at load, naming the
    engine, the key, the profiles, the rebuild (``--batch 1:4:4``) and model.max_batch = 1."""
    path = build(dims, *options)
    engine = create(path, max_batch=4)
    with pytest.raises(ModelError) as caught:
        engine.load()
    message = str(caught.value)
    assert message.startswith(f"{engine.cfg.path}: model.max_batch = 4 needs input 'image' with a dynamic batch")
    assert re.search(has, message), message
    assert re.search(r"linegate build-engine \S+m\.onnx .*--batch 1:4:4, or set model\.max_batch = 1$", message)
    assert not engine.loaded


def test_cuda_graph_on_with_max_batch_is_refused(build: Any) -> None:
    """cuda_graph = "on" with model.max_batch = 4: a batching engine's input is dynamic, so no graph."""
    engine = create(build(BATCH_DIMS, "--batch", "1:4:4"), max_batch=4, cuda_graph="on")
    with pytest.raises(ModelError, match=r"m\.engine: model\.cuda_graph = 'on' needs static input shapes.*"
                                         r"\[1, 1, 12, 16\]\.\.\[4, 1, 12, 16\]"):  # fmt: skip
        engine.load()


def test_cuda_graph_auto_with_max_batch_loads_without_a_graph(build: Any) -> None:
    """cuda_graph = "auto" with model.max_batch = 4 loads, runs plainly, and batches."""
    rng = np.random.default_rng(14)
    with create(build(BATCH_DIMS, "--batch", "1:4:4"), max_batch=4, cuda_graph="auto") as engine:
        assert engine.settings == {"cuda_graph": False}
        images = frames(rng, 4)
        np.testing.assert_allclose(run_batch(engine, images), expected_scores(images), rtol=1e-4, atol=1e-6)


def test_gpu_frame_path_runs_row_0_after_a_batch(build: Any) -> None:
    """The GPU frame path (device input, enqueue_on_device_input) after a batch runs one row again."""
    rng = np.random.default_rng(15)
    with create(build(BATCH_DIMS, "--batch", "1:4:4"), max_batch=4) as engine:
        run_batch(engine, frames(rng, 4))
        image = frames(rng, 1)
        scores = device_scores(engine, image)
        assert scores.shape == (1, 2)
        np.testing.assert_allclose(scores, expected_scores(image), rtol=1e-4, atol=1e-6)
