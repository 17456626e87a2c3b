"""``linegate capture``: save frames from the configured camera as files, for calibration and comparison sets.

Each file is one whole frame as the camera delivers it (no preprocessing), named
``<prefix><frame id>.<format>``, so ``calibrate`` and ``compare`` later apply the runtime
preprocessing themselves. Frames the camera delivers incomplete are skipped and counted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from linegate.toolchain.arg_types import whole

SUMMARY = "save N frames from the configured camera as image files (calibration and comparison sets)"
DESCRIPTION = (
    "Open the configuration's camera as `linegate run` does (it must not be in use by a running linegate), "
    "stream, and save --count whole frames into --out: PNG (default), BMP or TIFF through Pillow (pip install "
    "'linegate[toolchain]'), or .npy without it. --every K keeps every K-th good frame, spreading a set over "
    "more of the line; --skip N drops the first N frames, so a held-out set can be taken from later frames. "
    "Files are named <prefix><frame id>.<format> and never overwritten. Frames the camera delivers "
    "incomplete are skipped and counted."
)

FORMATS = ("png", "bmp", "tiff", "npy")
STALL_S = 5.0
"""No good frame for this long ends the capture with an error."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", metavar="FILE", type=Path, required=True, help="configuration whose [camera] is opened")
    add("--out", metavar="DIR", type=Path, required=True, help="folder for the frames (created if missing)")
    add("--count", metavar="N", type=whole(1), default=500, help="frames to save (default: %(default)s)")
    add("--every", metavar="K", type=whole(1), default=1,
        help="save every K-th good frame (default: %(default)s: each one)")
    add("--skip", metavar="N", type=whole(0), default=0, help="drop the first N good frames (default: %(default)s)")
    add("--format", choices=FORMATS, default="png", help="file format (default: %(default)s)")
    add("--camera", metavar="NAME", default=None,
        help="with [[cameras]]: the camera to capture from, by its name (default: the first one)")
    add("--prefix", metavar="TEXT", default=None,
        help="file name prefix (default: the start time, YYYYmmdd-HHMMSS-)")


def run(args: argparse.Namespace) -> int:
    from linegate.config import load_config
    from linegate.config.lanes import lanes_of
    from linegate.engine.image_files import check_writable, pillow

    cfg = load_config(args.config)
    lanes = {lane.name: lane for lane in lanes_of(cfg)}
    if args.camera is not None and (not cfg.cameras or args.camera not in lanes):
        known = ", ".join(lanes) if cfg.cameras else "none: the configuration has no [[cameras]]"
        print(f"linegate capture: --camera {args.camera}: no such camera in {args.config} ({known})", file=sys.stderr)
        return 2
    camera_cfg = (lanes[args.camera] if args.camera is not None else next(iter(lanes.values()))).cfg.camera
    # Fail before the camera is opened.
    check_writable(f".{args.format}", cfg.camera.pixel_format, f"--format {args.format}")
    if args.format != "npy":
        pillow(f"--format {args.format}")
    prefix = args.prefix if args.prefix is not None else time.strftime("%Y%m%d-%H%M%S-")
    if "/" in prefix or "\0" in prefix:
        print(f"linegate capture: --prefix must be a plain file name part, got {prefix!r}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    from linegate.camera.genicam import CameraFrame, GenICamCamera
    from linegate.engine.image_files import write_frame
    from linegate.errors import LinegateError

    plan = CapturePlan(args.count, args.every, args.skip)
    pending: list[tuple[int, Any]] = []
    defective = 0

    def keep(frame: CameraFrame) -> None:
        nonlocal defective
        if frame.pixels is None or frame.frame_id is None:
            defective += 1
        elif plan.take():
            pending.append((frame.frame_id, frame.pixels.copy()))

    t0 = time.monotonic_ns()
    saved = 0
    with GenICamCamera(camera_cfg) as camera:
        info = camera.open()
        print(f"capturing {args.count} frames from {info.vendor} {info.model} (serial {info.serial_number}) "
              f"{cfg.camera.width}x{cfg.camera.height} {cfg.camera.pixel_format} into {args.out}", file=sys.stderr)
        camera.start()
        last_good = time.monotonic_ns()
        while saved < args.count:
            seen = plan.seen
            camera.fetch(keep)
            now = time.monotonic_ns()
            if plan.seen > seen:
                last_good = now
            elif now - last_good > STALL_S * 1e9:
                raise LinegateError(f"camera: no good frame for {STALL_S:g} s after {saved} of {args.count} were saved")
            for frame_id, pixels in pending:
                name = f"{prefix}{frame_id:08d}.{args.format}"
                path = args.out / name
                if path.exists():
                    raise LinegateError(f"{path}: exists; choose another --out or --prefix (files are never "
                                        "overwritten)")
                write_frame(path, pixels, cfg.camera.pixel_format)
                saved += 1
                if saved % 100 == 0:
                    print(f"  {saved}/{args.count}", file=sys.stderr)
            pending.clear()
    elapsed = (time.monotonic_ns() - t0) / 1e9
    print(f"saved {saved} frames ({args.format}) into {args.out} in {elapsed:.1f} s; "
          f"{defective} incomplete frames skipped")
    return 0


class CapturePlan:
    """Which good frames to keep: drop *skip*, then keep every *every*-th until *count* are kept."""

    def __init__(self, count: int, every: int, skip: int) -> None:
        self.count, self.every, self.skip = count, every, skip
        self.seen = 0
        self.kept = 0

    def take(self) -> bool:
        """Called once per good frame; True when this one is to be saved."""
        self.seen += 1
        index = self.seen - self.skip
        if index < 1 or self.kept >= self.count or index % self.every:
            return False
        self.kept += 1
        return True
