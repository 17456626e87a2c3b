"""argparse value types shared by the toolchain's commands: a number in a range, or a clear error
naming what was expected and what was given."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _range(low: float | None, high: float | None, open_ends: bool) -> str:
    if low is not None and high is not None:
        return f" between {low:g} and {high:g}" + (" (exclusive)" if open_ends else "")
    if low is not None:
        return f" {'>' if open_ends else '>='} {low:g}"
    return ""


def whole(low: int | None = None, high: int | None = None, what: str = "a whole number") -> Callable[[str], int]:
    """A whole number within [*low*, *high*] (either end may be open-ended)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what}{_range(low, high, False)}, got {text!r}")
        return value

    return parse


def decimal(
    low: float | None = None,
    high: float | None = None,
    *,
    open_ends: bool = False,
    what: str = "a number",
    example: str = "",
    strip: str = "",
) -> Callable[[str], float]:
    """A decimal number within [*low*, *high*] (or the open interval); *strip*: a unit suffix allowed."""
    hint = f" such as {example}" if example else ""

    def parse(text: str) -> float:
        try:
            value: float | None = float(text.rstrip(strip) if strip else text)
        except ValueError:
            value = None
        ok = value is not None and value == value  # not NaN
        if ok and low is not None:
            ok = value > low if open_ends else value >= low  # type: ignore[operator]
        if ok and high is not None:
            ok = value < high if open_ends else value <= high  # type: ignore[operator]
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {what}{_range(low, high, open_ends)}{hint}, got {text!r}")
        assert value is not None
        return value

    return parse


def percent(low: float) -> Callable[[str], float]:
    """A percentage from *low* to 100, "99.5" or "99.5%" (a fraction such as 0.995 is refused, not misread)."""
    return decimal(low, 100.0, what="a percentage", example="99.5", strip="%")


SHARE = decimal(0.0, 1.0, open_ends=True, what="a share", example="0.2")
"""A share strictly between 0 and 1."""
