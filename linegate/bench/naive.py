"""The naive baseline: one thread doing fetch, numpy, ONNX Runtime and a synchronous Modbus write.

    python -m linegate.bench.naive --port 5020 --frames 2000 --out naive.jsonl [--config FILE]
        [--mode pulse|handshake] [--fps 100]

What a line engineer would write first, kept naive on purpose: Harvesters on the configuration's
camera (default: the demo's simulated GenTL producer, 640x480 Mono8), then per frame in the same
thread: the configuration's preprocessing written plainly in numpy (ROI crop; area mean by
reshape, or bilinear/nearest by index arithmetic; gray or gray3; scale, mean, std), an ONNX Runtime
session with default options, softmax for logits, the configuration's reject thresholds, and for a
reject a synchronous pymodbus write:

- ``--mode pulse``: part id into two holding registers (one FC16), reject coil ON (FC5), sleep the
  pulse, coil OFF (FC5);
- ``--mode handshake``: the 12-word vision block (``linegate.plc.interface.encode_vision_block``) in
  one FC16 with the next result sequence number; no wait for the PLC's acknowledgement.

No retries, no deadline, no watchdog. ``--seconds`` ends a run that falls far behind the camera. One
session run on zeros before the camera starts, so the first frame does not pay ONNX Runtime's
first-run cost (the comparison is about the steady state).

Writes one JSON line per frame to ``--out``: ``part_id`` (1, 2, 3 ...), ``frame_id``,
``t_in_hand_ns`` (``time.monotonic_ns()`` right after fetch returns), ``t_verdict_ns``, ``verdict``,
and for a reject ``t_sent_ns`` (before the first write) and ``t_on_ns`` (the coil-ON / block write
answered).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.config.schema import ModelSection, PreprocessSection

Image = npt.NDArray[np.float32]


def resize(x: Image, width: int, height: int, how: str) -> Image:
    """*x* (H, W, float32) resized plainly: area by reshape-mean for whole factors, else bilinear/nearest."""
    h, w = x.shape[:2]
    if how == "area" and h % height == 0 and w % width == 0:
        out: Image = x.reshape(height, h // height, width, w // width).mean(axis=(1, 3), dtype=np.float32)
        return out
    ys = (np.arange(height) + 0.5) * h / height - 0.5
    xs = (np.arange(width) + 0.5) * w / width - 0.5
    if how == "nearest":
        out = x[np.clip(np.round(ys).astype(int), 0, h - 1)][:, np.clip(np.round(xs).astype(int), 0, w - 1)]
        return out
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0).astype(np.float32)[:, None], (xs - x0).astype(np.float32)[None, :]
    top = x[y0][:, x0] * (1 - fx) + x[y0][:, x1] * fx
    bottom = x[y1][:, x0] * (1 - fx) + x[y1][:, x1] * fx
    out = top * (1 - fy) + bottom * fy
    return out


def preprocess(image: npt.NDArray[np.uint8], pre: PreprocessSection) -> npt.NDArray[Any]:
    """A Mono8 frame to the model's input tensor, in numpy, allocating as it goes."""
    x: Image = image.astype(np.float32)
    if pre.roi is not None:
        left, top, width, height = pre.roi
        x = x[top:top + height, left:left + width]
    if pre.resize is not None:
        x = resize(x, pre.resize[0], pre.resize[1], pre.interpolation)
    channels = 1 if pre.color == "gray" else 3
    x = np.repeat(x[:, :, None], channels, axis=2) * np.float32(pre.scale)
    x = ((x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)).astype(np.float32)
    if pre.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None], dtype=pre.dtype)


def reject_score(output: npt.NDArray[Any], model: ModelSection) -> tuple[bool, float]:
    """Whether any thresholded class reaches its threshold, and the reject score (first such class)."""
    scores = np.asarray(output, dtype=np.float64).reshape(-1)
    if model.postprocess.scores == "logits":
        e = np.exp(scores - scores.max())
        scores = e / e.sum()
    classes = list(model.postprocess.classes)
    hits = [(float(scores[classes.index(c)]), t) for c, t in model.postprocess.reject_thresholds.items()]
    return any(s >= t for s, t in hits), hits[0][0]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from linegate.demo.runner import DEMO_CONFIG

    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--config", type=Path, default=DEMO_CONFIG, help="camera, model and preprocessing from here")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5020)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mode", choices=("pulse", "handshake"), default="pulse")
    ap.add_argument("--model", type=Path, help="the ONNX file (default: the configuration's model.path)")
    ap.add_argument("--fps", type=float, help="camera frame rate (default: the configuration's)")
    ap.add_argument("--reject-coil", type=int, default=0)
    ap.add_argument("--part-id-register", type=int, default=0, help="-1: no part-id write")
    ap.add_argument("--register-base", type=int, default=0)
    ap.add_argument("--pulse-ms", type=float, default=2.0)
    ap.add_argument("--seconds", type=float, help="also stop this long after the first frame in hand")
    return ap.parse_args(argv)


def open_camera(cfg: Any, fps: float) -> tuple[Any, Any]:
    """Harvester and started image acquirer on the configuration's camera (Mono8 only)."""
    from harvesters.core import Harvester

    from linegate.camera.genicam import producer_path

    cam = cfg.camera
    if cam.pixel_format != "Mono8":
        raise SystemExit(f"the naive script reads Mono8 frames only, not {cam.pixel_format}")
    h = Harvester()
    h.add_file(producer_path(cam.cti))
    h.update()
    ia = h.create(cam.device.index or 0) if cam.device.serial_number is None else h.create(
        {"serial_number": cam.device.serial_number})
    nodes = ia.remote_device.node_map
    nodes.PixelFormat.value = "Mono8"
    nodes.Width.value = cam.width
    nodes.Height.value = cam.height
    nodes.AcquisitionFrameRate.value = fps
    ia.num_buffers = cam.buffers
    ia.start()
    return h, ia


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort
    from pymodbus.client import ModbusTcpClient

    from linegate.config import load_config
    from linegate.plc.interface import FaultCode, Result, Verdict, VisionState, encode_vision_block, next_seq

    args = parse_args(argv)
    cfg = load_config(args.config)
    model, pre = cfg.model, cfg.model.preprocess
    session = ort.InferenceSession(str(args.model or model.path))
    input_name = model.input_name or session.get_inputs()[0].name
    session.run(None, {input_name: preprocess(np.zeros((cfg.camera.height, cfg.camera.width), np.uint8), pre)})
    plc = ModbusTcpClient(args.host, port=args.port)
    if not plc.connect():  # type: ignore[no-untyped-call]
        raise SystemExit(f"cannot connect to the PLC at {args.host}:{args.port}")
    h, ia = open_camera(cfg, args.fps or cfg.camera.frame_rate_hz or 100.0)

    seq = 0
    t_stop: int | None = None
    with args.out.open("w") as out:
        for part_id in range(1, args.frames + 1):
            with ia.fetch(timeout=1.0) as buffer:
                t_in_hand = time.monotonic_ns()
                if t_stop is None:
                    t_stop = t_in_hand + round((args.seconds or 1e9) * 1e9)
                elif t_in_hand > t_stop:
                    break
                frame_id = int(buffer.module.frame_id)
                image = buffer.payload.components[0].data.reshape(cfg.camera.height, cfg.camera.width)
                output = session.run(None, {input_name: preprocess(image, pre)})[0]
                reject, score = reject_score(output, model)
                t_verdict = time.monotonic_ns()
            record: dict[str, object] = {"part_id": part_id, "frame_id": frame_id, "t_in_hand_ns": t_in_hand,
                                         "t_verdict_ns": t_verdict, "verdict": "reject" if reject else "pass"}
            if reject:
                record["t_sent_ns"] = time.monotonic_ns()
                if args.mode == "pulse":
                    if args.part_id_register >= 0:
                        plc.write_registers(args.part_id_register, [part_id >> 16, part_id & 0xFFFF], device_id=1)
                    plc.write_coil(args.reject_coil, True, device_id=1)
                    record["t_on_ns"] = time.monotonic_ns()
                    time.sleep(args.pulse_ms / 1000)
                    plc.write_coil(args.reject_coil, False, device_id=1)
                else:
                    seq = next_seq(seq)
                    state = VisionState(alive=seq, ready=True, fault_code=FaultCode.NONE, toggle=bool(seq % 2),
                                        waiting=0)
                    result = Result(seq, part_id, Verdict.REJECT, 0, 1, score)
                    plc.write_registers(args.register_base, encode_vision_block(state, result), device_id=1)
                    record["t_on_ns"] = time.monotonic_ns()
            out.write(json.dumps(record) + "\n")

    ia.stop()
    ia.destroy()
    h.reset()
    plc.close()  # type: ignore[no-untyped-call]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
