"""What to run: the models, the two rates per model, and each scenario's configuration.

Rates. Sustainable: the demo at 100 fps (its production rate); another model at
``min(100, 0.5 / floor_p50_s)`` (the engine busy half the time at most). Overload: ``OVERLOAD_FACTOR`` x
the engine floor's throughput (frames arrive faster than the engine can decide them), capped by the
camera's maximum frame rate; a capped rate says so in the scenario's note.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import linegate
from linegate.config import Config
from linegate.config.schema import PlcSection

CHECKOUT = Path(linegate.__file__).resolve().parents[1]
"""The repository root when linegate runs from a checkout (an editable install)."""
SUSTAINABLE_FPS = {"demo": 100.0}
MAX_SUSTAINABLE_FPS = 100.0
ENGINE_BUSY_SHARE = 0.5
OVERLOAD_FACTOR = 2.5
MAX_SCENARIO_S = 90.0
"""A scenario's frames are capped so that one side runs this long at most."""
MODELS = ("demo", "resnet18")


@dataclass(frozen=True)
class ModelSpec:
    """A model to benchmark: its configuration, or why it is skipped."""

    name: str
    config: Path | None
    skipped: str = ""


@dataclass(frozen=True)
class Scenario:
    """One model at one rate."""

    model: str
    load: str
    """"sustainable" or "overload"."""
    fps: float
    frames: int
    note: str = ""


def model_spec(name: str) -> ModelSpec:
    """The demo (installed with linegate) or ResNet-18 (a checkout's engines/resnet18, once exported)."""
    if name == "demo":
        from linegate.demo.runner import DEMO_CONFIG

        return ModelSpec("demo", DEMO_CONFIG)
    if name == "resnet18":
        folder = CHECKOUT / "engines" / "resnet18"
        onnx = folder / "resnet18.onnx"
        if not onnx.is_file():
            return ModelSpec(name, None, f"skipped: {onnx} missing, see engines/resnet18/README.md")
        return ModelSpec(name, folder / "resnet18.toml")
    raise ValueError(f"unknown model {name!r} (known: {', '.join(MODELS)})")


def plan(model: str, floor_p50_s: float, floor_fps: float, camera_max_fps: float, frames: int,
         quick: bool = False) -> list[Scenario]:
    """The sustainable and (unless *quick*) overload scenarios of *model*, from its engine floor."""
    sustainable = SUSTAINABLE_FPS.get(model, min(MAX_SUSTAINABLE_FPS, ENGINE_BUSY_SHARE / floor_p50_s))
    sustainable = round(min(sustainable, camera_max_fps), 1)
    out = [Scenario(model, "sustainable", sustainable, capped_frames(frames, sustainable))]
    if quick:
        return out
    wanted = OVERLOAD_FACTOR * floor_fps
    overload = round(min(wanted, camera_max_fps), 1)
    note = (f"capped at the camera's max {camera_max_fps:g} fps ({OVERLOAD_FACTOR:g}x the engine floor "
            f"would be {wanted:.0f} fps)" if wanted > camera_max_fps else
            f"{OVERLOAD_FACTOR:g}x the engine floor's {floor_fps:.1f} fps")
    out.append(Scenario(model, "overload", overload, capped_frames(frames, overload), note))
    return out


def capped_frames(frames: int, fps: float) -> int:
    """*frames*, or fewer where they would take more than ``MAX_SCENARIO_S`` at *fps* (at least 100)."""
    return max(min(frames, math.ceil(fps * MAX_SCENARIO_S)), min(frames, 100))


def with_model(cfg: Config, **settings: object) -> Config:
    """*cfg* with these ``[model]`` settings, validated as a configuration file is: a combination
    linegate would refuse is refused here too (pydantic's ValidationError, a ValueError)."""
    data = cfg.model_dump()
    data["model"].update(settings)
    return Config.model_validate(data)


def bench_config(base: Config, fps: float, port: int) -> Config:
    """*base* at *fps*, pulse mode on Modbus at 127.0.0.1:*port*, metrics off, an instance of its own."""
    from linegate.demo.runner import with_plc_port

    if base.plc.protocol != "modbus" or base.plc.modbus is None:
        raise ValueError("linegate bench needs a Modbus PLC section (the naive script speaks Modbus only)")
    plc = PlcSection.model_validate({**base.plc.model_dump(), "mode": "pulse"})
    if plc.modbus is not None and plc.modbus.reject_coil is None:
        plc = plc.model_copy(update={"modbus": plc.modbus.model_copy(update={"reject_coil": 0})})
    cfg = base.model_copy(update={
        "camera": base.camera.model_copy(update={"frame_rate_hz": fps}),
        "plc": plc,
        "metrics": base.metrics.model_copy(update={"enabled": False}),
        "instance": base.instance.model_copy(update={"name": f"bench-{os.getpid()}"}),
    })
    return with_plc_port(cfg, port)


def camera_max_fps(cfg: Config) -> float:
    """The camera's largest AcquisitionFrameRate at the configured size (opens it briefly)."""
    from harvesters.core import Harvester

    from linegate.camera.genicam import producer_path

    cam = cfg.camera
    h = Harvester()
    try:
        h.add_file(producer_path(cam.cti))
        h.update()
        ia = h.create(cam.device.index or 0) if cam.device.serial_number is None else h.create(
            {"serial_number": cam.device.serial_number})
        try:
            nodes = ia.remote_device.node_map
            nodes.PixelFormat.value = cam.pixel_format
            nodes.Width.value = cam.width
            nodes.Height.value = cam.height
            return float(nodes.AcquisitionFrameRate.max)
        finally:
            ia.destroy()
    finally:
        h.reset()
