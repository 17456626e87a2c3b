"""model.max_batch: accepted for a first model decided oldest first on the CPU path; every
combination the loop cannot batch is refused, naming the key and what to change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from linegate.config import load_config
from linegate.errors import ConfigError
from tests.conftest import DEMO_CONFIG

MODEL = (DEMO_CONFIG.parent / ".." / "engines" / "demo" / "ball_zone.onnx").resolve()


def config_with(tmp_path: Path, model_extra: str = "", tail: str = "", backlog: str = "oldest_first") -> Path:
    text = DEMO_CONFIG.read_text().replace("../engines/demo/ball_zone.onnx", str(MODEL))
    if "backend" in model_extra:
        text = text.replace('backend = "onnxruntime"\n', "")
    text = text.replace('warmup_runs = 50', f'warmup_runs = 50\n{model_extra}')
    text = text.replace('fail_safe = "reject"', f'fail_safe = "reject"\nbacklog = "{backlog}"')
    path = tmp_path / "batch.toml"
    path.write_text(text + tail)
    return path


def test_max_batch_defaults_to_one_and_is_accepted_up_to_64(tmp_path: Path) -> None:
    assert load_config(config_with(tmp_path)).model.max_batch == 1
    assert load_config(config_with(tmp_path, "max_batch = 4")).model.max_batch == 4  # demo: 8 ring slots
    path = config_with(tmp_path, "max_batch = 64")
    path.write_text(path.read_text().replace("slots = 8", "slots = 128"))
    assert load_config(path).model.max_batch == 64
    with pytest.raises(ConfigError, match="model.max_batch"):
        load_config(config_with(tmp_path, "max_batch = 65"))


def test_a_batch_takes_at_most_half_the_ring(tmp_path: Path) -> None:
    """A batch holds its slots until each verdict is handed off: more than half the ring would leave
    no room for the frames arriving meanwhile."""
    with pytest.raises(ConfigError, match=r"model.max_batch = 5: .* at most half of ring.slots = 8"):
        load_config(config_with(tmp_path, "max_batch = 5"))


@pytest.mark.parametrize(("key", "n"), [("max_batch", 4), ("parallel", 2)])
def test_handshake_backlogs_fit_the_plc_results_buffer(tmp_path: Path, key: str, n: int) -> None:
    """In handshake mode a batch's verdicts (max_batch), or the verdicts of frames decided at once
    (parallel), reach the PLC worker together: the setting must stay below plc.handshake.buffer
    (the result still waiting for the PLC's acknowledgement takes one place)."""
    handshake = f"\n[plc.handshake]\nbuffer = {n}\n"
    text = config_with(tmp_path, f"{key} = {n}", handshake).read_text().replace('mode = "pulse"', 'mode = "handshake"')
    path = tmp_path / "hs.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"model.{key} = {n}: .* plc.handshake.buffer = {n}"):
        load_config(path)
    path.write_text(text.replace(f"buffer = {n}", f"buffer = {n + 1}"))
    assert getattr(load_config(path).model, key) == n


STAGE = f"""
[[stages]]
when = ["reject"]
[stages.model]
id = "second"
path = "{MODEL}"
{{extra}}
[stages.model.preprocess]
resize = [160, 120]
[stages.model.postprocess]
classes = ["pass", "reject"]
reject_thresholds = {{{{ reject = 0.9 }}}}
"""


@pytest.mark.parametrize(
    ("model_extra", "tail", "backlog", "expected"),
    [
        ("max_batch = 4", "", "newest_first",
         "model.max_batch = 4: batching decides the oldest waiting frames; it needs deadline.backlog = 'oldest_first'"),
        ("max_batch = 4", STAGE.format(extra=""), "oldest_first",
         r"model.max_batch = 4: batching is not supported with \[\[stages\]\]"),
        ("", STAGE.format(extra="max_batch = 2"), "oldest_first",
         "stages.0.model.max_batch = 2: a further stage runs one frame at a time"),
        ('max_batch = 4\nbackend = "tensorrt"', "", "oldest_first",
         "max_batch > 1 batches frames preprocessed on the CPU: set preprocess_on = 'cpu'"),
        ('max_batch = 4\nbackend = "tensorrt"\npreprocess_on = "cpu"\ncuda_graph = "on"', "", "oldest_first",
         "max_batch = 4 runs batches of several sizes, which a CUDA graph"),
        ('max_batch = 4\nbackend = "tensorrt"\npreprocess_on = "cpu"\nbatch_by = "sessions"', "", "oldest_first",
         "batch_by = 'sessions' runs one-frame onnxruntime sessions side by side; backend = 'tensorrt'"),
    ],
)
def test_what_cannot_batch_is_refused_by_name(
    tmp_path: Path, model_extra: str, tail: str, backlog: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(config_with(tmp_path, model_extra, tail, backlog))


def test_tensorrt_batches_with_preprocessing_on_the_cpu(tmp_path: Path) -> None:
    cfg = load_config(config_with(tmp_path, 'max_batch = 4\nbackend = "tensorrt"\npreprocess_on = "cpu"'))
    assert cfg.model.max_batch == 4 and not cfg.model.gpu_preprocess
    assert not cfg.model.batch_sessions  # over the batch dimension (an optimisation profile)


def test_a_batch_runs_over_the_batch_dimension_unless_sessions_are_asked_for(tmp_path: Path) -> None:
    """batch_by = "dimension" (the default): one run over the model's batch dimension; "sessions":
    one-frame sessions side by side (onnxruntime, any model); one frame at a time is neither."""
    assert not load_config(config_with(tmp_path, "max_batch = 4")).model.batch_sessions
    assert load_config(config_with(tmp_path, 'max_batch = 4\nbatch_by = "sessions"')).model.batch_sessions
    assert not load_config(config_with(tmp_path, 'batch_by = "sessions"')).model.batch_sessions


def test_check_config_runs_one_batch_and_says_how_batches_run(tmp_path: Path) -> None:
    """check-config with max_batch > 1 runs a batch of that many blank frames and names the way it
    runs; the demo model (batch fixed at 1) batches as sessions and is refused over its dimension,
    naming both fixes."""
    from linegate.config.check import check_config

    report = check_config(config_with(tmp_path, 'max_batch = 2\nbatch_by = "sessions"'))
    assert not report.problems, report.problems
    notes = " ".join(report.notes)
    assert "model.max_batch = 2: a backlog is decided up to 2 frames at a time (2 one-frame sessions" in notes
    assert "a batch of 2 blank frames runs (2 outputs)" in notes
    report = check_config(config_with(tmp_path, "max_batch = 2"))
    (problem,) = report.problems
    assert "model.max_batch = 2 with model.batch_by = 'dimension' needs a dynamic batch dimension" in problem
    assert "model.batch_by = 'sessions'" in problem and "model.max_batch = 1" in problem


@pytest.mark.parametrize(
    ("model_extra", "tail", "expected"),
    [
        ("parallel = 5", "", r"model.parallel = 5: each frame holds its ring slot .* at most half of ring.slots = 8"),
        ("parallel = 2\nmax_batch = 2", "", "parallel = 2 and max_batch = 2 are two ways to decide a backlog"),
        ('parallel = 2\nbackend = "tensorrt"\npreprocess_on = "cpu"', "",
         "parallel = 2 runs one-frame onnxruntime sessions at once; backend = 'tensorrt'"),
        ("", STAGE.format(extra="parallel = 2"), "stages.0.model.parallel = 2: a further stage runs one frame"),
        ("parallel = 17", "", "model.parallel"),
    ],
)
def test_what_cannot_run_in_parallel_is_refused_by_name(tmp_path: Path, model_extra: str, tail: str,
                                                        expected: str) -> None:  # fmt: skip
    with pytest.raises(ConfigError, match=expected):
        load_config(config_with(tmp_path, model_extra, tail))


def test_check_config_runs_each_parallel_session(tmp_path: Path) -> None:
    """check-config with parallel = 2 runs a blank frame on each session and says how they run; the
    demo model (well under 2 ms a run) under "auto" gets none."""
    from linegate.config.check import check_config

    report = check_config(config_with(tmp_path, "parallel = 2"))
    assert not report.problems, report.problems
    pattern = (r"model.parallel = 2 \(as set\): under a backlog up to 2 frames decided at once, each on a one-frame "
               r"session of \d+ threads?; each session runs a blank frame")
    assert any(re.match(pattern, n) for n in report.notes), report.notes
    report = check_config(config_with(tmp_path))
    assert not report.problems and not any("parallel" in n for n in report.notes), report.notes


def test_parallel_auto_is_one_where_a_number_would_be_refused(tmp_path: Path) -> None:
    """"auto" (the default) is never an error: where two sessions could not run (a batch, a small
    ring, a further stage's model) the engine is loaded with one. With [[stages]] the first model
    keeps "auto" (its sessions' frames run the stages as they end) and takes a number."""
    from linegate.config.schema import runnable_model

    plain = load_config(config_with(tmp_path))
    assert plain.model.parallel == "auto" and runnable_model(plain, plain.model).parallel == "auto"
    cfg = load_config(config_with(tmp_path, "max_batch = 2"))
    assert runnable_model(cfg, cfg.model).parallel == 1
    staged = load_config(config_with(tmp_path, "", STAGE.format(extra="")))
    assert runnable_model(staged, staged.model).parallel == "auto"
    assert [runnable_model(staged, st.model, stage=True).parallel for st in staged.stages] == [1]
    assert load_config(config_with(tmp_path, "parallel = 2", STAGE.format(extra=""))).model.parallel == 2
    small = config_with(tmp_path)
    small.write_text(small.read_text().replace("slots = 8", "slots = 3"))
    cfg = load_config(small)
    assert runnable_model(cfg, cfg.model).parallel == 1
