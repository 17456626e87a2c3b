"""The toolchain's argument types: values in range pass, others are refused naming what was expected."""

from __future__ import annotations

import argparse

import pytest

from linegate.toolchain.arg_types import SHARE, decimal, percent, whole


def test_whole_number_in_range_passes_and_others_name_the_range() -> None:
    """1..64 takes 1 and 64; 0, 65 and 'x' are refused with the range and the value given."""
    threads = whole(1, 64, what="a whole number of threads")
    assert (threads("1"), threads("64")) == (1, 64)
    for bad in ("0", "65", "x", "2.5"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"between 1 and 64, got '{bad}'"):
            threads(bad)


@pytest.mark.parametrize(("text", "value"), [("99.5", 99.5), ("99.5%", 99.5), ("50", 50.0), ("100", 100.0)])
def test_percent_accepts_a_percentage_with_or_without_the_sign(text: str, value: float) -> None:
    """A percentage may carry its % sign."""
    assert percent(50.0)(text) == value


@pytest.mark.parametrize("text", ["0.995", "100.1", "nan", "ninety"])
def test_percent_refuses_a_fraction_out_of_range_values_and_nan(text: str) -> None:
    """0.995 is a fraction, not a percentage: refused rather than misread; so are NaN and words."""
    with pytest.raises(argparse.ArgumentTypeError, match="expected a percentage between 50 and 100 such as 99.5"):
        percent(50.0)(text)


def test_open_and_one_sided_ranges() -> None:
    """A share excludes 0 and 1; a lower bound alone is inclusive."""
    assert SHARE("0.2") == 0.2
    for bad in ("0", "1"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"between 0 and 1 \(exclusive\)"):
            SHARE(bad)
    assert decimal(0.0)("0") == 0.0
    with pytest.raises(argparse.ArgumentTypeError, match="expected a number >= 0, got '-1'"):
        decimal(0.0)("-1")
