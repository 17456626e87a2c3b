"""`linegate check-config`: everything `run` would refuse is refused first, one line naming file and key."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from linegate.demo.runner import PlcSimProcess
from tests.conftest import DEMO_CONFIG, REPO

if TYPE_CHECKING:
    from linegate.config.check import CheckReport

MODEL = REPO / "engines" / "demo" / "ball_zone.onnx"
MODEL_LINE = 'path = "../engines/demo/ball_zone.onnx"'


def demo_copy(tmp_path: Path, *edits: tuple[str, str], name: str = "check.toml") -> Path:
    """config/demo.toml in *tmp_path* with the model path made absolute and each (old, new) edit applied."""
    text = DEMO_CONFIG.read_text().replace(MODEL_LINE, f'path = "{MODEL}"')
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(text)
    return path


def model_path(path: Path) -> tuple[str, str]:
    """The edit pointing [model] at *path*."""
    return (f'path = "{MODEL}"', f'path = "{path}"')


def check_config(path: Path) -> CheckReport:
    """The check in this process (the module is imported here, so older code fails test by test)."""
    from linegate.config.check import check_config as check

    return check(path)


def check_config_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linegate", "check-config", *args], capture_output=True, text=True, timeout=120
    )


def onnx_model(path: Path, shape: tuple[int, ...], *, softmax: bool = True, classes: int = 2) -> Path:
    """mean(image) -> Gemm -> (softmax) with input 'image' of *shape* (any layout) and *classes* outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.linspace(10.0, -10.0, classes, dtype=np.float32)[None, :], "W")
    bias = numpy_helper.from_array(np.linspace(-5.0, 5.0, classes, dtype=np.float32), "B")
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"]),
        helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Gemm", ["mean", "W", "B"], ["logits" if softmax else "scores"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], axis=1))
    graph = helper.make_graph(
        nodes,
        "mean_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, classes])],
        [weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


# The five cases (and gray3 on a colour camera), end to end through the command: each was "ok" before.
CASES = {
    "garbage model file": (lambda t: [model_path(garbage(t))], "model.path: ", "cannot load model"),
    "input shape not what preprocessing gives": (
        lambda t: [model_path(onnx_model(t / "small.onnx", (1, 1, 12, 16)))],
        "model.path: ",
        "has shape [1, 1, 12, 16], but model.preprocess produces [1, 1, 120, 160]",
    ),
    "gray with a colour pixel format": (
        lambda t: [('pixel_format = "Mono8"', 'pixel_format = "RGB8"')],
        "model.preprocess.color: ",
        "'gray' needs camera.pixel_format = 'Mono8', the camera gives 'RGB8'",
    ),
    "gray3 with a colour pixel format": (
        lambda t: [('pixel_format = "Mono8"', 'pixel_format = "RGBa8"'), ('color = "gray"', 'color = "gray3"')],
        "model.preprocess.color: ",
        "'gray3' needs camera.pixel_format = 'Mono8', the camera gives 'RGBa8'",
    ),
    "area resize factors that do not divide": (
        lambda t: [("resize = [160, 120]", "resize = [150, 120]")],
        "model.preprocess.resize: ",
        "whole multiple of resize (150x120)",
    ),
    "host that is no host": (
        lambda t: [('host = "127.0.0.1"', 'host = "not a host!!"')],
        "plc.modbus.host: ",
        "expected an IPv4 address",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_config_refuses_what_run_refuses(tmp_path: Path, case: str) -> None:
    """Each config `run` rejects makes check-config exit 78 with one line naming the file and the key."""
    edits, key, expected = CASES[case]
    path = demo_copy(tmp_path, *edits(tmp_path))
    done = check_config_cli(str(path))
    assert done.returncode == 78, done
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "linegate: configuration error:" and len(lines) == 2, done.stderr
    assert lines[1].startswith(f"{path}: {key}") and expected in lines[1], lines[1]
    assert "Traceback" not in done.stderr and "ok" not in done.stdout


def test_valid_config_says_ok_and_what_was_checked(tmp_path: Path) -> None:
    """A valid file: exit 0, 'ok', the model loaded and run once, the camera and PLC not contacted."""
    done = check_config_cli(str(demo_copy(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert "ok (model 'demo-ball-zone-v1'" in done.stdout
    assert f"{MODEL} loads (onnxruntime), input [1, 1, 120, 160] float32, 2 scores" in done.stdout
    assert "camera and PLC not contacted" in done.stdout


def test_a_real_time_loop_on_the_acquisitions_only_cpu_is_noted(tmp_path: Path) -> None:
    """The loop's priority that run would refuse (it would keep the acquisition worker off its only
    CPU) is named in the notes, with the worker and its CPU."""
    pinned = ("infer_rt_priority = 10", "infer_rt_priority = 10\ninfer_cpus = [0]\nacquire_cpus = [0]")
    done = check_config_cli(str(demo_copy(tmp_path, pinned)))
    assert done.returncode == 0, done.stderr
    assert "scheduling.infer_rt_priority=10: not applied: the acquisition worker (CPU 0, priority 0)" in (
        done.stdout
    )


def test_nhwc_model_with_nchw_preprocessing_gets_a_layout_hint(tmp_path: Path) -> None:
    """A model taking NHWC input while preprocess.layout is NCHW: refused, and the fix is named."""
    report = check_config(demo_copy(tmp_path, model_path(onnx_model(tmp_path / "nhwc.onnx", (1, 120, 160, 1)))))
    (line,) = report.problems
    assert "model.path: " in line and "set model.preprocess.layout = 'NHWC'" in line
    assert report.exit_code == 78


def test_output_that_does_not_fit_the_classes_is_refused(tmp_path: Path) -> None:
    """A model with 3 outputs for 2 configured classes: refused naming postprocess.classes."""
    report = check_config(demo_copy(tmp_path, model_path(onnx_model(tmp_path / "three.onnx", (1, 1, 120, 160),
                                                                     classes=3))))
    (line,) = report.problems
    assert "model.postprocess.classes: model output has 3 scores, config names 2 classes" in line


def test_logits_declared_as_probabilities_are_refused(tmp_path: Path) -> None:
    """A model without softmax while postprocess.scores = 'probabilities': refused, 'logits' suggested."""
    report = check_config(demo_copy(tmp_path, model_path(onnx_model(tmp_path / "logits.onnx", (1, 1, 120, 160),
                                                                     softmax=False))))
    (line,) = report.problems
    assert "model.postprocess.scores: 'probabilities'" in line and "set scores = 'logits'" in line
    fixed = check_config(demo_copy(tmp_path, model_path(tmp_path / "logits.onnx"),
                                   ('scores = "probabilities"', 'scores = "logits"'), name="fixed.toml"))
    assert fixed.problems == [], fixed.problems


def test_recipe_models_are_checked_too(tmp_path: Path) -> None:
    """A recipe's unloadable model is refused under its own key, recipes.N.model.path."""
    path = demo_copy(tmp_path, ('mode = "pulse"', 'mode = "handshake"'))
    path.write_text(path.read_text() + (
        f'\n[recipes.2.model]\nid = "r2"\npath = "{garbage(tmp_path)}"\n'
        '[recipes.2.model.preprocess]\nresize = [160, 120]\n'
        '[recipes.2.model.postprocess]\nclasses = ["pass", "reject"]\nreject_thresholds = { reject = 0.5 }\n'
    ))
    report = check_config(path)
    (line,) = report.problems
    assert line.startswith(f"{path}: recipes.2.model.path: ") and "cannot load model 'r2'" in line


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed: engines load")
def test_tensorrt_engine_without_tensorrt_gets_file_checks_and_says_so(tmp_path: Path) -> None:
    """Without TensorRT: an ONNX or text file as an engine is refused, so is an engine without its sidecar
    key; a binary file with a key passes with the skipped checks named."""
    trt = ('backend = "onnxruntime"', 'backend = "tensorrt"')
    onnx_as_engine = check_config(demo_copy(tmp_path, trt))
    assert "model.path: " in onnx_as_engine.problems[0] and "is an ONNX model, not a TensorRT engine" in (
        onnx_as_engine.problems[0])
    text = tmp_path / "notes.engine"
    text.write_text("this is not an engine\n")
    assert "is a text file" in check_config(demo_copy(tmp_path, trt, model_path(text), name="t.toml")).problems[0]
    binary = tmp_path / "model.engine"
    binary.write_bytes(b"ftrt\0\0\0\0" + bytes(range(256)) * 8)
    keyless = check_config(demo_copy(tmp_path, trt, model_path(binary), name="b.toml"))
    assert len(keyless.problems) == 1 and "no engine key model.engine.key.json" in keyless.problems[0]
    assert "linegate build-engine" in keyless.problems[0]
    (tmp_path / "model.engine.key.json").write_text("{}")  # present: its content is checked where TensorRT runs
    report = check_config(demo_copy(tmp_path, trt, model_path(binary), name="b.toml"))
    assert report.problems == [] and report.exit_code == 0
    assert any("TensorRT is not installed here" in note and "run check-config on the Jetson" in note
               for note in report.notes)


def free_closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_probe_opens_the_camera_and_reads_the_plc(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """--probe: the simulated camera is opened and configured and the PLC simulator is read: exit 0."""
    done = check_config_cli("--probe", str(demo_copy(tmp_path, ("port = 5020", f"port = {plc_sim.port}"))))
    assert done.returncode == 0, done.stderr
    assert "camera: opened" in done.stdout and "640x480 Mono8" in done.stdout
    assert f"plc: connected to 127.0.0.1:{plc_sim.port} (modbus, pulse mode) and read the reject output" in (
        done.stdout)
    assert plc_sim.edges == []  # read only: nothing was written


def test_probe_with_cameras_opens_each_camera_and_reads_each_cameras_plc_output(
    tmp_path: Path, plc_sim: PlcSimProcess
) -> None:
    """[[cameras]]: the note names each camera and its device; --probe opens every camera's device and
    reads every camera's PLC output; a camera that is not there (serial 9) is exit 1, named."""

    def config(serials: tuple[str, str]) -> Path:
        cameras = "".join(
            f'\n[[cameras]]\nname = "cam{serial}"\ndevice = {{ serial_number = "{serial}" }}\n'
            f"plc = {{ modbus = {{ reject_coil = {coil}, part_id_register = {10 + 2 * coil} }} }}\n"
            for coil, serial in enumerate(serials)
        )
        edits = (("port = 5020", f"port = {plc_sim.port}"), ('device = { serial_number = "0" }\n', ""))
        path = demo_copy(tmp_path, *edits, name=f"cams{''.join(serials)}.toml")
        path.write_text(path.read_text() + cameras)
        return path

    done = check_config_cli(str(config(("1", "2"))))
    assert done.returncode == 0, done.stderr
    assert "cameras: cam1 (serial_number 1), cam2 (serial_number 2): each its own acquisition" in done.stdout
    done = check_config_cli("--probe", str(config(("1", "2"))))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("plc: connected to") == 2 and done.stdout.count("camera: opened") == 2, done.stdout
    done = check_config_cli("--probe", str(config(("1", "9"))))
    assert done.returncode == 1, done
    # named by its [[cameras]] entry's key, not a [camera] key the file does not have
    assert "cameras.1.device.serial_number='9': no unique matching device" in done.stderr, done.stderr
    assert plc_sim.edges == []


def test_probe_of_an_absent_plc_is_exit_1_within_seconds(tmp_path: Path) -> None:
    """--probe with nothing at the PLC's address: exit 1 (not a config error) naming host and port, quickly."""
    path = demo_copy(tmp_path, ("port = 5020", f"port = {free_closed_port()}"))
    t0 = time.monotonic()
    done = check_config_cli("--probe", str(path))
    assert done.returncode == 1, done
    assert time.monotonic() - t0 < 40
    assert f"{path}: plc.modbus.host, plc.modbus.port: nothing accepts a TCP connection" in done.stderr


def test_probe_of_an_address_the_plc_refuses_is_a_config_error(tmp_path: Path, plc_sim: PlcSimProcess) -> None:
    """--probe where the PLC refuses the configured coil: exit 78 naming plc.modbus."""
    path = demo_copy(tmp_path, ("port = 5020", f"port = {plc_sim.port}"), ("reject_coil = 0", "reject_coil = 60000"))
    done = check_config_cli("--probe", str(path))
    assert done.returncode == 78, done
    assert f"{path}: plc.modbus: the PLC refuses linegate's addresses: read_coils(60000)" in done.stderr


def test_an_archive_folder_that_cannot_exist_is_a_problem_a_writable_one_a_note(tmp_path: Path) -> None:
    """archive.directory under a regular file: a problem naming the key and the file in the way;
    under a writable folder: noted as writable."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bad = demo_copy(tmp_path, name="bad.toml")
    bad.write_text(bad.read_text() + f'\n[archive]\nenabled = true\ndirectory = "{blocker / "images"}"\n')
    report = check_config(bad)
    assert report.exit_code == 78
    assert any("archive.directory" in p and str(blocker) in p and "is a file" in p for p in report.problems)
    good = demo_copy(tmp_path, name="good.toml")
    good.write_text(good.read_text() + f'\n[archive]\nenabled = true\ndirectory = "{tmp_path / "new" / "images"}"\n')
    report = check_config(good)
    assert report.exit_code == 0, report.problems
    assert any(n.startswith("archive.directory:") and "can be written" in n for n in report.notes)
