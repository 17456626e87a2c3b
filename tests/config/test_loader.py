"""Configuration loading: valid files load; every kind of bad input names file, key and expectation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from linegate.config import load_config
from linegate.errors import ConfigError
from tests.conftest import DEMO_CONFIG, REFERENCE_CONFIG, REPO


def write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def demo_with(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the demo config next to its original (so relative paths still resolve) with one edit."""
    text = DEMO_CONFIG.read_text()
    assert old in text, old
    path = DEMO_CONFIG.parent / f".test-{tmp_path.name}.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.fixture(autouse=True)
def _cleanup_copies(tmp_path: Path):  # type: ignore[no-untyped-def]
    yield
    for p in DEMO_CONFIG.parent.glob(f".test-{tmp_path.name}.toml"):
        p.unlink()


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_demo_and_reference_configs_load() -> None:
    """Both shipped configuration files are valid."""
    demo = load_config(DEMO_CONFIG)
    ref = load_config(REFERENCE_CONFIG)
    assert demo.camera.width == 640 and demo.model.path.is_file()
    assert ref.model.id and ref.plc.modbus.reject_coil >= 0


def test_gray3_loads_with_a_mono8_camera(tmp_path: Path) -> None:
    """color = 'gray3' with ImageNet's three means and stds is valid on a Mono8 camera: three model channels."""
    edit = 'color = "gray3"\nmean = [0.485, 0.456, 0.406]\nstd = [0.229, 0.224, 0.225]'
    cfg = load_config(demo_with(tmp_path, 'color = "gray"', edit))
    assert cfg.camera.pixel_format == "Mono8"
    assert cfg.model.preprocess.color == "gray3" and cfg.model.preprocess.channels == 3


def test_relative_model_path_resolves_against_config_directory() -> None:
    """model.path is relative to the config file, not to the working directory."""
    cfg = load_config(DEMO_CONFIG)
    assert cfg.model.path == (REPO / "engines" / "demo" / "ball_zone.onnx").resolve()


def test_config_is_immutable() -> None:
    """Loaded configuration objects cannot be changed in place."""
    cfg = load_config(DEMO_CONFIG)
    with pytest.raises(pydantic.ValidationError):
        cfg.camera.width = 10  # type: ignore[misc]


def test_missing_file_is_named(tmp_path: Path) -> None:
    """A missing file is reported with its path."""
    msg = error_of(tmp_path / "nope.toml")
    assert "nope.toml" in msg and "not found" in msg


def test_invalid_toml_names_file_and_line(tmp_path: Path) -> None:
    """A TOML syntax error names the file and the line."""
    msg = error_of(write(tmp_path, "[camera]\nwidth = = 3\n"))
    assert "bad.toml" in msg and "invalid TOML" in msg and "line 2" in msg


def test_not_utf8_is_reported(tmp_path: Path) -> None:
    """Binary garbage is reported as not UTF-8, not as a crash."""
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8" in error_of(path)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("width = 640", "widht = 640", "camera.widht: unknown key"),
        ("width = 640", "width = 'wide'", "camera.width: Input should be a valid integer"),
        ("width = 640", "width = -4", "camera.width: Input should be greater than or equal to 1"),
        ("budget_ms = 50.0", "budget_ms = 0", "deadline.budget_ms: Input should be greater than 0"),
        ('when_full = "drop_newest"', 'when_full = "block"', "ring.when_full: Input should be 'drop_newest' or"),
        ("reject_coil = 0", "", "plc: mode = 'pulse' needs plc.modbus.reject_coil"),
        ('mode = "pulse"', 'mode = "blink"', "plc.mode: Input should be 'pulse' or 'handshake'"),
        ('protocol = "modbus"', 'protocol = "s7"', "plc: protocol = 's7' needs a [plc.s7] section"),
        ('path = "../engines/demo/ball_zone.onnx"', 'path = "missing.onnx"', "model.path: model file not found"),
        ('cti = "builtin:viky"', 'cti = "/nonexistent/producer.cti"', "camera.cti: GenTL producer file not found"),
        (
            'device = { serial_number = "0" }',
            'device = { serial_number = "0", index = 1 }',
            "camera.device: give exactly one of serial_number, user_id, index",
        ),
        (
            "reject_thresholds = { reject = 0.5 }",
            "reject_thresholds = { defect = 0.5 }",
            "names unknown classes ['defect']",
        ),
        ("reject_thresholds = { reject = 0.5 }", "reject_thresholds = { reject = 1.5 }", "reject_thresholds.reject"),
        ("resize = [160, 120]", "resize = [160, 120]\nroi = [600, 0, 100, 100]", "exceeds the camera frame 640x480"),
        ('color = "gray"', 'color = "rgb"', "needs a colour pixel_format"),
        ('color = "gray"', 'color = "bgr"', "camera gives Mono8 (for a 3-channel model on a Mono8 camera set"),
        (
            'color = "gray"',
            'color = "gray3"\nmean = [0.1, 0.2]',
            "model.preprocess: mean needs 1 or 3 values for color='gray3', got 2",
        ),
        ('color = "gray"', 'color = "gray"\nstd = [0.2, 0.2, 0.2]', "model.preprocess: std needs 1 value for"),
        ('color = "gray"', 'color = "grey3"', "model.preprocess.color: Input should be 'gray', 'gray3', 'rgb' or"),
        ("[logging]", "[logging]\nsurprise = 1", "logging.surprise: unknown key"),
        # frame and reject records are info records: a higher level would drop them
        ('level = "info"', 'level = "warning"', "logging.level: Input should be 'debug' or 'info'"),
        ("[instance]", "[instanse]", "instanse: unknown key"),
        ('name = "demo"', 'name = "Demo Line!"', "instance.name: String should match pattern"),
        ("port = 5020", "port = 70000", "plc.modbus.port: Input should be less than or equal to 65535"),
        ('mode = "pulse"', 'mode = "pulse"\npart_ids = "plc"', "plc: part_ids = 'plc' reads the PLC block's"),
        ('mode = "pulse"', 'mode = "handshake"\nhandshake = { buffer = 0 }', "plc.handshake.buffer: Input should be"),
        (
            "infer_rt_priority = 10",
            "infer_rt_priority = 100",
            "scheduling.infer_rt_priority: Input should be less than",
        ),
        # a fetch with no frame (a stopped line) must end well within the heartbeat timeout
        (
            "fetch_timeout_ms = 100",
            "fetch_timeout_ms = 1001",
            "camera.fetch_timeout_ms = 1001: a fetch with no frame lasts up to 1101 ms, more than half of "
            "supervisor.heartbeat_timeout_ms = 2000",
        ),
    ],
)
def test_bad_value_names_key_and_expectation(tmp_path: Path, old: str, new: str, expected: str) -> None:
    """Each kind of bad input is an error naming the file, the key path and what was expected."""
    path = demo_with(tmp_path, old, new)
    msg = error_of(path)
    assert expected in msg, msg
    assert str(path) in msg


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    """Several mistakes give one line each, not just the first."""
    path = demo_with(tmp_path, "width = 640\nheight = 480", "width = 0\nheight = 'tall'")
    msg = error_of(path)
    assert "camera.width" in msg and "camera.height" in msg and len(msg.splitlines()) == 2


def test_check_config_exit_codes(tmp_path: Path) -> None:
    """`linegate check-config` exits 0 on a valid file and 78 (EX_CONFIG) with the message otherwise."""
    ok = subprocess.run(
        [sys.executable, "-m", "linegate", "check-config", str(DEMO_CONFIG)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout
    bad = demo_with(tmp_path, "width = 640", "widht = 640")
    res = subprocess.run([sys.executable, "-m", "linegate", "check-config", str(bad)], capture_output=True, text=True)
    assert res.returncode == 78
    assert "camera.widht: unknown key" in res.stderr
