"""Durations such as ``1h``, ``30m``, ``90s`` or ``1h30m`` (pure)."""

from __future__ import annotations

import argparse
import re

_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
EXPECTED = "a duration such as 1h, 30m, 90s or 1h30m (a number and a unit h, m or s; greater than 0)"


def parse_duration(text: str) -> float:
    """Seconds in *text*; ValueError saying what was expected otherwise."""
    compact = text.strip().lower().replace(" ", "")
    parts = _PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact or len({u for _, u in parts}) != len(parts):
        raise ValueError(f"expected {EXPECTED}, got {text!r}")
    seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"expected {EXPECTED}, got {text!r}")
    return seconds


def duration_arg(text: str) -> float:
    """argparse type: argparse prefixes the option's name (``argument --duration: expected ...``)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def format_duration(seconds: float) -> str:
    """``1h 0m 0s``, ``2m 5s``, ``20.3s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m}m {s}s" if h else f"{m}m {s}s"
