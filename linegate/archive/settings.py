"""The ``[archive]`` table: where reject images (and sampled passes) go and how much may pile up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

GIB = 1024**3

ArchiveFormat = Literal["png", "npy"]


class ArchiveSection(BaseModel):
    """Reject image archive: every rejected frame and 1 in ``passes_one_in`` passes, with their
    metadata, written off the hot path; oldest files go first when over ``max_bytes`` or
    ``max_age_hours``. A full queue or a failing disk drops images (counted), never delays a verdict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    directory: Path = Path("/var/lib/linegate/archive")
    """Root of the archive (one sub-folder per UTC day). The default is inside the unit's
    StateDirectory=, writable under ProtectSystem=strict. Relative paths are resolved by the loader."""
    passes_one_in: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    """0: no pass frames; N: every Nth pass frame as well as every reject."""
    max_bytes: Annotated[int, Field(gt=0)] = 2 * GIB
    """Cap on the bytes of images and sidecars together; the oldest go first to stay under it."""
    max_age_hours: Annotated[float, Field(gt=0, le=24 * 3650)] = 168.0
    queue_frames: Annotated[int, Field(ge=1, le=256)] = 8
    """Frame-sized slots in the shared-memory hand-off from inference to the writer."""
    format: ArchiveFormat = "png"
    """png: viewable (zlib level 1, a few ms per megapixel); npy: raw array, fastest to write."""

    @field_validator("directory")
    @classmethod
    def _directory_given(cls, value: Path) -> Path:
        if not str(value).strip() or str(value) == ".":
            raise ValueError("archive.directory must name a folder (got an empty path)")
        return value

    @field_validator("max_bytes")
    @classmethod
    def _cap_not_tiny(cls, value: int) -> int:
        if value < 4096:
            raise ValueError(f"archive.max_bytes = {value} holds no image; give at least 4096 bytes (e.g. 2 GiB)")
        return value

    @property
    def max_age_s(self) -> float:
        return self.max_age_hours * 3600.0
