"""The vision engineer's toolchain: commands that turn a model into a verified engine for the line.

Each command is a module here with ``SUMMARY``, ``DESCRIPTION``, ``add_arguments(parser)`` and
``run(args) -> int`` (an exit code of :mod:`linegate.errors`). Modules import heavy or vendor
libraries (onnxruntime, tensorrt, cuda-python) inside ``run`` only, so ``linegate --help`` and the
line's own commands never load them.
"""

from __future__ import annotations

COMMANDS = {
    "build-engine": "linegate.toolchain.build_engine_cmd",
    "inspect-engine": "linegate.toolchain.inspect_engine_cmd",
    "calibrate": "linegate.toolchain.calibrate_cmd",
    "compare": "linegate.toolchain.compare_cmd",
    "capture": "linegate.toolchain.capture_cmd",
    "bench": "linegate.toolchain.bench_cmd",
    "soak": "linegate.toolchain.soak_cmd",
}
"""Command name -> module implementing it."""
