"""Which decided frames are offered: every reject, every Nth pass."""

from __future__ import annotations

import pytest

from linegate.archive import ArchiveSampler


@pytest.mark.parametrize(("n", "expected"), [(0, 0), (1, 12), (3, 4), (5, 2), (13, 0)])
def test_every_reject_and_every_nth_pass(n: int, expected: int) -> None:
    sampler = ArchiveSampler(n)
    passes = sum(sampler.wants(False) for _ in range(12))
    rejects = sum(sampler.wants(True) for _ in range(5))
    assert (passes, rejects) == (expected, 5)


def test_negative_is_refused() -> None:
    with pytest.raises(ValueError, match="passes_one_in"):
        ArchiveSampler(-1)
