"""The ONNX Runtime backend: bound buffers, shape and dtype checks, life cycle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from linegate.config.schema import ModelSection
from linegate.engine import create_engine
from linegate.errors import EngineError
from tests.engine.onnx_models import expected_scores, linear_classifier

pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test models")

F32 = np.dtype(np.float32)


def section(path: Path, **extra: object) -> ModelSection:
    return ModelSection.model_validate(
        {
            "id": "m1",
            "path": str(path),
            "postprocess": {"classes": ["pass", "reject"], "reject_thresholds": {"reject": 0.5}},
            **extra,
        }
    )


def test_infer_writes_into_the_bound_output(tmp_path: Path) -> None:
    """infer() reads the bound input in place and returns the same bound output buffer each time."""
    engine = create_engine(section(linear_classifier(tmp_path / "m.onnx")), (1, 1, 12, 16), F32)
    with engine:
        out_first = engine.infer()
        for value in (0.1, 0.9):
            engine.input[...] = value
            out = engine.infer()
            assert out is out_first
            np.testing.assert_allclose(out[0], expected_scores(engine.input), rtol=1e-5)


def test_dynamic_batch_is_bound_to_one(tmp_path: Path) -> None:
    """A model with a symbolic batch dimension runs with the preprocessor's batch of one."""
    path = linear_classifier(tmp_path / "dyn.onnx", dynamic_batch=True)
    with create_engine(section(path), (1, 1, 12, 16), F32) as engine:
        engine.input[...] = 0.25
        assert engine.infer().shape == (1, 2)


@pytest.mark.parametrize(
    ("batch_by", "dynamic"), [("dimension", True), ("sessions", True), ("sessions", False)]
)
def test_max_batch_runs_the_first_rows_each_with_its_own_scores(tmp_path: Path, batch_by: str, dynamic: bool) -> None:
    """model.max_batch = 4: input_row(i) is row i of one bound buffer, and infer_batch(n) returns
    exactly n rows, each the scores of its own row, whatever came before; over the model's batch
    dimension (a batch-dynamic model) or as one-frame sessions side by side (any model)."""
    path = linear_classifier(tmp_path / "m.onnx", dynamic_batch=dynamic)
    with create_engine(section(path, max_batch=4, batch_by=batch_by), (1, 1, 12, 16), F32) as engine:
        assert engine.max_batch == 4 and engine.input_row(0).shape == (1, 1, 12, 16)
        assert np.shares_memory(engine.input, engine.input_row(0))
        for rows, values in ((4, (0.1, 0.4, 0.6, 0.9)), (1, (0.7,)), (3, (0.2, 0.8, 0.5)), (2, (0.9, 0.1))):
            for i, value in enumerate(values):
                engine.input_row(i)[...] = value
            out = engine.infer_batch(rows)
            assert out.shape == (rows, 2)
            for i in range(rows):
                np.testing.assert_allclose(out[i], expected_scores(engine.input_row(i)), rtol=1e-5)
        with pytest.raises(EngineError, match=r"batch of 5 outside 1\.\.4"):
            engine.infer_batch(5)
        assert engine.settings.get("batch_sessions") == (4 if batch_by == "sessions" else None)


def test_sessions_share_the_threads_and_a_single_frame_keeps_them_all(tmp_path: Path) -> None:
    """batch_by = "sessions": max_batch sessions of threads // max_batch intra-op threads each (at
    least one), named in the engine's settings; one frame runs on the session with every thread."""
    path = linear_classifier(tmp_path / "m.onnx")
    with create_engine(section(path, max_batch=2, threads=4, batch_by="sessions"), (1, 1, 12, 16), F32) as engine:
        settings = engine.settings
        assert (settings["threads"], settings["batch_by"], settings["batch_sessions"]) == (4, "sessions", 2)
        assert settings["batch_session_threads"] == 2
    with create_engine(section(path, max_batch=3, threads=1, batch_by="sessions"), (1, 1, 12, 16), F32) as engine:
        assert engine.settings["batch_session_threads"] == 1
        engine.input[...] = 0.3
        np.testing.assert_allclose(engine.infer_batch(1)[0], expected_scores(engine.input), rtol=1e-5)


@pytest.mark.parametrize(("cpus", "spins"), [(16, False), (32, True)])
def test_sessions_spin_only_where_all_their_threads_together_may(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpus: int, spins: bool
) -> None:
    """spinning = "auto" judges the sessions' threads as one pool, as they run at the same time:
    two sessions of 7 threads on 16 CPUs would keep 14 cores busy between runs (on the 16-core
    machine the acquisition worker then fell behind the camera: 502 of 2,000 frames lost)."""
    monkeypatch.setattr("linegate.engine.ort_backend.cpus_available", lambda: cpus)
    path = linear_classifier(tmp_path / "m.onnx")
    with create_engine(section(path, max_batch=2, threads=14, batch_by="sessions"), (1, 1, 12, 16), F32) as engine:
        assert (engine.settings["batch_session_threads"], engine.settings["batch_session_spinning"]) == (7, spins)


def test_max_batch_by_dimension_on_a_fixed_batch_model_names_the_key_and_file(tmp_path: Path) -> None:
    """batch_by = "dimension" on a model whose batch dimension is fixed at 1 cannot batch: refused
    at load, naming model.max_batch, the file and the fixes."""
    path = linear_classifier(tmp_path / "fixed.onnx")
    engine = create_engine(section(path, max_batch=4), (1, 1, 12, 16), F32)  # batch_by = "dimension"
    with pytest.raises(EngineError, match=r"fixed\.onnx: model\.max_batch = 4 with model\.batch_by = 'dimension' "
                                          r"needs a dynamic batch dimension.*batch_by = 'sessions'.*"
                                          r"model\.max_batch = 1"):
        engine.load()


def test_one_row_engines_keep_one_row(tmp_path: Path) -> None:
    """max_batch 1 (the default): one row, infer_batch(1) is infer(), a second row does not exist."""
    with create_engine(section(linear_classifier(tmp_path / "m.onnx")), (1, 1, 12, 16), F32) as engine:
        assert engine.max_batch == 1
        assert engine.infer_batch(1).shape == (1, 2)
        with pytest.raises(EngineError):
            engine.infer_batch(2)


def test_shape_mismatch_names_file_and_shapes(tmp_path: Path) -> None:
    """A preprocessor shape the model cannot take is refused at load, naming the file and both shapes."""
    path = linear_classifier(tmp_path / "m.onnx")
    engine = create_engine(section(path), (1, 1, 24, 32), F32)
    with pytest.raises(EngineError, match=r"m\.onnx.*input 'image' has shape \[1, 1, 12, 16\].*\[1, 1, 24, 32\]"):
        engine.load()


def test_dtype_mismatch_is_refused(tmp_path: Path) -> None:
    """A float16 preprocessor for a float32 model is refused at load."""
    engine = create_engine(section(linear_classifier(tmp_path / "m.onnx")), (1, 1, 12, 16), np.dtype(np.float16))
    with pytest.raises(EngineError, match="tensor\\(float\\)"):
        engine.load()


def test_unknown_input_name_lists_the_real_ones(tmp_path: Path) -> None:
    """model.input_name that the model lacks is an error listing the model's inputs."""
    engine = create_engine(section(linear_classifier(tmp_path / "m.onnx"), input_name="pixels"), (1, 1, 12, 16), F32)
    with pytest.raises(EngineError, match=r"model.input_name='pixels' not in the model's inputs \['image'\]"):
        engine.load()


def test_corrupt_model_file_is_named(tmp_path: Path) -> None:
    """A file that is not a model fails to load with its path in the error."""
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(EngineError, match="garbage.onnx: cannot load model 'm1'"):
        create_engine(section(bad), (1, 1, 12, 16), F32).load()


def test_infer_before_load_is_refused(tmp_path: Path) -> None:
    """The life cycle is enforced: no infer before load, no double load."""
    engine = create_engine(section(linear_classifier(tmp_path / "m.onnx")), (1, 1, 12, 16), F32)
    with pytest.raises(EngineError, match="before load"):
        engine.infer()
    engine.load()
    with pytest.raises(EngineError, match="already loaded"):
        engine.load()
    engine.close()
    assert not engine.loaded


def test_warm_up_reports_each_run(tmp_path: Path) -> None:
    """warm_up runs the requested number of times and returns a positive duration for each."""
    with create_engine(section(linear_classifier(tmp_path / "m.onnx")), (1, 1, 12, 16), F32) as engine:
        durations = engine.warm_up(5)
    assert durations.shape == (5,) and (durations > 0).all()


def test_tensorrt_backend_unavailable_is_a_clear_error(tmp_path: Path) -> None:
    """Asking for TensorRT where it is not installed says so (skipped where it is installed)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed here")
    with pytest.raises(EngineError, match="model.backend='tensorrt' is not available here"):
        create_engine(section(linear_classifier(tmp_path / "m.onnx"), backend="tensorrt"), (1, 1, 12, 16), F32)
