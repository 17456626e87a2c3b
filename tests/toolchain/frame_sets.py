"""Configurations and frame folders for the calibrate and compare command tests (written in the test's tmp_path)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from linegate.demo.ground_truth import BALL_SIZE, DEMO_ZONE
from linegate.engine.image_files import write_frame

REPO = Path(__file__).resolve().parents[2]
DEMO_MODEL = REPO / "engines" / "demo" / "ball_zone.onnx"


def write_config(path: Path, model: Path, *, width: int = 16, height: int = 12, preprocess: str = "") -> Path:
    """A minimal valid configuration: the simulated camera at width x height Mono8, *model*, reject at 0.5."""
    path.write_text(
        f"""
[camera]
cti = "builtin:viky"
width = {width}
height = {height}
pixel_format = "Mono8"

[model]
id = "test-model"
path = "{model}"

[model.preprocess]
{preprocess}

[model.postprocess]
classes = ["pass", "reject"]
reject_thresholds = {{ reject = 0.5 }}

[plc]
protocol = "modbus"

[plc.modbus]
host = "127.0.0.1"
reject_coil = 0
""",
        encoding="utf-8",
    )
    return path


def demo_config(path: Path) -> Path:
    """The demo model's configuration (640x480 Mono8, 4x4 area mean to 160x120)."""
    preprocess = 'resize = [160, 120]\ninterpolation = "area"'
    return write_config(path, DEMO_MODEL, width=640, height=480, preprocess=preprocess)


def level_frames(folder: Path, levels: Sequence[int], *, seed: int, prefix: str = "f") -> list[Path]:
    """16x12 Mono8 .npy frames, each one grey level with +-8 noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, level in enumerate(levels):
        frame = np.clip(level + rng.integers(-8, 9, (12, 16)), 0, 255).astype(np.uint8)
        paths.append(folder / f"{prefix}-{i:04d}.npy")
        write_frame(paths[-1], frame, "Mono8")
    return paths


def far_levels(n: int, seed: int) -> list[int]:
    """Grey levels away from the threshold: half dark (20..100, rejects), half bright (155..235, passes)."""
    rng = np.random.default_rng(seed)
    return [int(rng.integers(20, 101)) if i % 2 else int(rng.integers(155, 236)) for i in range(n)]


def ball_frames(folder: Path, n: int, *, seed: int, prefix: str = "b", near_edges: bool = False) -> list[Path]:
    """640x480 Mono8 frames as the simulated camera draws them: white, a black 20x20 ball at a random place
    (with *near_edges*: its centre within 3 px of a vertical edge of the demo's reject zone, x = 160 or 480)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        frame = np.full((480, 640), 255, dtype=np.uint8)
        if near_edges:
            edge = (DEMO_ZONE.x0, DEMO_ZONE.x1)[i % 2]
            x = edge + int(rng.integers(-3, 4)) - BALL_SIZE // 2
            y = int(rng.integers(DEMO_ZONE.y0 + 10, DEMO_ZONE.y1 - 30))
        else:
            x, y = int(rng.integers(0, 640 - BALL_SIZE + 1)), int(rng.integers(0, 480 - BALL_SIZE + 1))
        frame[y : y + BALL_SIZE, x : x + BALL_SIZE] = 0
        paths.append(folder / f"{prefix}-{i:04d}.npy")
        write_frame(paths[-1], frame, "Mono8")
    return paths


def centred_classifier(path: Path, gain: float, centre: float = 0.5) -> Path:
    """mean(image) m -> logits [gain * (m - centre), gain * (centre - m)] -> softmax: rejects when m <= centre.

    With gain 10 and centre 0.5 it is tests.engine.onnx_models.linear_classifier.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.array([[gain, -gain]], dtype=np.float32), "W"),
        numpy_helper.from_array(np.array([-gain * centre, gain * centre], dtype=np.float32), "B"),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["scores"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "centred",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 12, 16])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def reject_probability(frame_mean: float, gain: float, centre: float = 0.5) -> float:
    """P(reject) of :func:`centred_classifier` for a frame whose pixels average *frame_mean* (0..1)."""
    return float(1.0 / (1.0 + np.exp(-2.0 * gain * (centre - frame_mean))))
