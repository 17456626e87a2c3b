"""The naive baseline for tests/bench/bench_coil.py: one thread doing fetch, numpy, ONNX Runtime, Modbus write.

    python tests/bench/naive_inspect.py --port 5020 --frames 2000 --out naive.jsonl [--mode pulse|handshake]

What a line engineer would write first, kept naive on purpose: Harvesters on the simulated GenTL producer
(640x480 Mono8 at 100 fps, as config/demo.toml), then per frame in the same thread: numpy 4x4 area mean to
160x120 and x 1/255, an ONNX Runtime session with default options on engines/demo/ball_zone.onnx, the 0.5
threshold, and for a reject a synchronous pymodbus write:

- ``--mode pulse``: part id into two holding registers (one FC16), reject coil ON (FC5), sleep the pulse,
  coil OFF (FC5);
- ``--mode handshake``: the 12-word vision block (``linegate.plc.interface.encode_vision_block``) in one
  FC16 with the next result sequence number; no wait for the PLC's acknowledgement.

No retries, no deadline, no watchdog. One session run on zeros before the camera starts, so the first
frame does not pay ONNX Runtime's first-run cost (the comparison is about the steady state).

Writes one JSON line per frame to ``--out``: ``part_id`` (1, 2, 3 ...), ``frame_id``, ``t_in_hand_ns``
(``time.monotonic_ns()`` right after fetch returns), ``t_verdict_ns``, ``verdict``, and for a reject
``t_sent_ns`` (before the first write) and ``t_on_ns`` (the coil-ON / block write answered).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from harvesters.core import Harvester
from pymodbus.client import ModbusTcpClient

from linegate.camera.genicam import producer_path
from linegate.plc.interface import FaultCode, Result, Verdict, VisionState, encode_vision_block, next_seq

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5020)
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--mode", choices=("pulse", "handshake"), default="pulse")
    ap.add_argument("--model", type=Path, default=REPO / "engines" / "demo" / "ball_zone.onnx")
    ap.add_argument("--fps", type=float, default=100.0)
    ap.add_argument("--reject-coil", type=int, default=0)
    ap.add_argument("--part-id-register", type=int, default=0, help="-1: no part-id write")
    ap.add_argument("--register-base", type=int, default=0)
    ap.add_argument("--pulse-ms", type=float, default=2.0)
    args = ap.parse_args()

    session = ort.InferenceSession(str(args.model))
    session.run(None, {"image": np.zeros((1, 1, 120, 160), np.float32)})
    plc = ModbusTcpClient(args.host, port=args.port)
    if not plc.connect():  # type: ignore[no-untyped-call]
        raise SystemExit(f"cannot connect to the PLC at {args.host}:{args.port}")

    h = Harvester()
    h.add_file(producer_path("builtin:viky"))
    h.update()
    ia = h.create({"serial_number": "0"})
    nodes = ia.remote_device.node_map
    nodes.PixelFormat.value = "Mono8"
    nodes.Width.value = 640
    nodes.Height.value = 480
    nodes.AcquisitionFrameRate.value = args.fps
    ia.num_buffers = 16
    ia.start()

    seq = 0
    with args.out.open("w") as out:
        for part_id in range(1, args.frames + 1):
            with ia.fetch(timeout=1.0) as buffer:
                t_in_hand = time.monotonic_ns()
                frame_id = int(buffer.module.frame_id)
                image = buffer.payload.components[0].data.reshape(480, 640)
                small = image.reshape(120, 4, 160, 4).mean(axis=(1, 3)) / 255.0
                x = small.astype(np.float32)[None, None]
                scores = session.run(None, {"image": x})[0]
                reject = bool(scores[0, 1] >= 0.5)
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
                    result = Result(seq, part_id, Verdict.REJECT, 0, 1, float(scores[0, 1]))
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
