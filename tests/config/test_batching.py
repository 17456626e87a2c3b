"""model.max_batch: accepted for a first model decided oldest first on the CPU path; every
combination the loop cannot batch is refused, naming the key and what to change."""

from __future__ import annotations

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
    assert load_config(config_with(tmp_path, "max_batch = 64")).model.max_batch == 64
    with pytest.raises(ConfigError, match="model.max_batch"):
        load_config(config_with(tmp_path, "max_batch = 65"))


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
