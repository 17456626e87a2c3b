"""Which decided frames the inference loop offers to the archive (pure, per process)."""

from __future__ import annotations


class ArchiveSampler:
    """Every reject; of passes, every ``passes_one_in``-th (0: none)."""

    def __init__(self, passes_one_in: int) -> None:
        if passes_one_in < 0:
            raise ValueError(f"passes_one_in must be >= 0 (got {passes_one_in})")
        self.passes_one_in = passes_one_in
        self._passes = 0

    def wants(self, reject: bool) -> bool:
        """Whether to offer this frame; call once per decided frame."""
        if reject:
            return True
        if not self.passes_one_in:
            return False
        self._passes += 1
        if self._passes >= self.passes_one_in:
            self._passes = 0
            return True
        return False
