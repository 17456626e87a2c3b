"""Benchmark: what the simulated camera and Harvesters cost alone (the rig's share of the CPUs that
linegate's acquisition worker reports): a bare fetch loop on viky.cti, 640x480 Mono8, nothing done
with the frames, at each rate and each wait slice of Harvesters (``--slice-ms``: how long one GenTL
event wait lasts before Harvesters' fetch loop wakes to look at its timeout; Harvesters' default 1,
linegate's :func:`linegate.camera.event_wait.event_wait_ms`); process CPU time and voluntary context
switches (wake-ups) over --seconds.

    python tests/bench/bench_camera_fetch_cpu.py [--fps 50,100,200] [--slice-ms 1,50] [--seconds 4]

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import time

from harvesters.core import Harvester

from linegate.camera.genicam import producer_path
from linegate.config.schema import BUILTIN_VIKY


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fps", default="50,100,200")
    ap.add_argument("--slice-ms", default="1,50")
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    h = Harvester()
    h.add_file(producer_path(BUILTIN_VIKY), check_existence=True, check_validity=True)
    h.update()
    ia = h.create(0)
    try:
        nodes = ia.remote_device.node_map
        nodes.Width.value, nodes.Height.value, nodes.PixelFormat.value = 640, 480, "Mono8"
        rates = [(float(f), int(w)) for f in args.fps.split(",") for w in args.slice_ms.split(",")]
        for fps, slice_ms in rates:
            ia.timeout_period_on_update_event_data_call = slice_ms
            nodes.AcquisitionFrameRate.value = fps
            ia.start()
            for _ in range(20):  # past the start
                with ia.fetch(timeout=1):
                    pass
            cpu0, t0, n = time.process_time_ns(), time.monotonic_ns(), 0
            wakes0 = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
            while time.monotonic_ns() - t0 < args.seconds * 1e9:
                with ia.fetch(timeout=1):
                    n += 1
            cpu_ns, wall_ns = time.process_time_ns() - cpu0, time.monotonic_ns() - t0
            wakes = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - wakes0
            ia.stop()
            print(f"set {fps:g} fps, wait slice {slice_ms} ms: {wakes / n:.1f} wake-ups per frame, "
                  f"got {n / wall_ns * 1e9:.1f} fps, CPU {100 * cpu_ns / wall_ns:.1f}% of one CPU, "
                  f"{cpu_ns / 1e6 / n:.3f} ms per frame", flush=True)  # fmt: skip
    finally:
        ia.destroy()
        h.reset()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
