"""`[[stages]]`: models in series after `[model]`, validated against the stage before each."""

from __future__ import annotations

from pathlib import Path

import pytest

from linegate.config import load_config
from linegate.errors import ConfigError
from linegate.service.reload import plan_reload
from tests.conftest import DEMO_CONFIG

MODEL = (DEMO_CONFIG.parent / ".." / "engines" / "demo" / "ball_zone.onnx").resolve()


def with_stage(tmp_path: Path, when: str, name: str = "stage.toml", resize: str = "[160, 120]") -> Path:
    text = DEMO_CONFIG.read_text().replace("../engines/demo/ball_zone.onnx", str(MODEL))
    text += f"""
[[stages]]
when = {when}
[stages.model]
id = "second"
path = "{MODEL}"
[stages.model.preprocess]
resize = {resize}
[stages.model.postprocess]
classes = ["pass", "reject"]
reject_thresholds = {{ reject = 0.9 }}
"""
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_stage_loads_with_its_trigger_labels(tmp_path: Path) -> None:
    """A valid second stage is part of the configuration, triggered by the labels it names."""
    cfg = load_config(with_stage(tmp_path, '["reject"]'))
    assert [(s.when, s.model.id) for s in cfg.stages] == [(["reject"], "second")]


@pytest.mark.parametrize(
    ("when", "resize", "expected"),
    [
        ('["defect"]', "[160, 120]", "stages.0.when names ['defect'], not classes of the stage before it"),
        ("[]", "[160, 120]", "stages.0.when: List should have at least 1 item"),
        ('["reject"]', "[0, 120]", "stages.0.model.preprocess.resize"),
    ],
)
def test_bad_stage_is_named(tmp_path: Path, when: str, resize: str, expected: str) -> None:
    """A trigger label the previous stage does not have, no trigger, or a bad stage model key: the error
    names the stage by its index and the key."""
    with pytest.raises(ConfigError) as info:
        load_config(with_stage(tmp_path, when, resize=resize))
    assert expected in str(info.value), str(info.value)


def test_changing_the_stages_replaces_the_inference_worker(tmp_path: Path) -> None:
    """A reload that adds or changes stages swaps the inference worker (warm hand-over), nothing else."""
    old = load_config(DEMO_CONFIG)
    new = load_config(with_stage(tmp_path, '["reject"]'))
    assert plan_reload(old, new).replace == ("infer",) and plan_reload(old, new).needs_restart == ()


def test_check_config_loads_and_runs_each_stage_model(tmp_path: Path) -> None:
    """check-config runs every stage's model once, as it does [model], and names it by its stage."""
    from linegate.config.check import check_config

    report = check_config(with_stage(tmp_path, '["reject"]'))
    assert report.exit_code == 0, report.problems
    assert any(note.startswith("stages.0.model") for note in report.notes), report.notes
