"""The [archive] table: defaults, limits, unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from linegate.archive import ArchiveSection


def test_defaults() -> None:
    s = ArchiveSection()
    assert (s.enabled, s.passes_one_in, s.max_bytes, s.max_age_hours, s.queue_frames, s.format) == (
        False, 0, 2 * 1024**3, 168.0, 8, "png"
    )  # fmt: skip
    assert s.directory == Path("/var/lib/linegate/archive") and s.max_age_s == 168 * 3600


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_bytes": 100}, "at least 4096 bytes"),
        ({"max_bytes": 0}, "greater than 0"),
        ({"passes_one_in": -1}, "greater than or equal to 0"),
        ({"queue_frames": 0}, "greater than or equal to 1"),
        ({"max_age_hours": 0}, "greater than 0"),
        ({"format": "jpg"}, "'png' or 'npy'"),
        ({"directory": ""}, "must name a folder"),
        ({"dir": "/x"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_values_are_refused_with_a_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ArchiveSection.model_validate(fields)


def test_frozen() -> None:
    with pytest.raises(ValidationError):
        ArchiveSection().enabled = True
