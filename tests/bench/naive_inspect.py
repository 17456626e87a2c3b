"""The naive baseline for tests/bench/bench_coil.py: now :mod:`linegate.bench.naive` (installed with linegate).

    python tests/bench/naive_inspect.py --port 5020 --frames 2000 --out naive.jsonl [--mode pulse|handshake]

Same options and output as ``python -m linegate.bench.naive`` (see its docstring); this file stays so
that existing command lines keep working.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from linegate.bench.naive import main

if __name__ == "__main__":
    raise SystemExit(main())
