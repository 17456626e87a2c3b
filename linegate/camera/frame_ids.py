"""Camera frame-id bookkeeping: gaps are lost frames, a step back is a camera restart (pure)."""

from __future__ import annotations


class FrameIdTracker:
    """Counts frames the camera numbered but never delivered."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.lost = 0
        self.restarts = 0

    def observe(self, frame_id: int) -> int:
        """Record *frame_id*; returns how many frames were lost just before it."""
        last, self.last = self.last, frame_id
        if last is None:
            return 0
        if frame_id <= last:
            self.restarts += 1
            return 0
        gap = frame_id - last - 1
        self.lost += gap
        return gap

    def observe_unnumbered(self) -> int:
        """A delivered frame whose id could not be read: it takes the next id (0 before any id was
        seen), so the next numbered frame does not count it as lost. Returns the id it was given."""
        if self.last is None:
            return 0
        self.last += 1
        return self.last

    def reset(self) -> None:
        """Forget the last id (after a deliberate stop/start, ids start again)."""
        self.last = None


class CameraClockMapper:
    """Maps camera timestamps onto the host's monotonic clock.

    The host receives each frame some non-negative latency after the camera stamped it, so the
    smallest observed ``host - camera`` over a recent window is the best offset estimate (it is
    reached by the frames that arrived fastest). The window lets the estimate follow clock drift.
    """

    def __init__(self, window: int = 256) -> None:
        self._window = window
        self._offsets: list[int] = []
        self._best: int | None = None

    def to_host(self, camera_ns: int, host_receipt_ns: int) -> int:
        offset = host_receipt_ns - camera_ns
        self._offsets.append(offset)
        if len(self._offsets) > self._window:
            dropped = self._offsets.pop(0)
            if dropped == self._best:
                self._best = min(self._offsets)
        if self._best is None or offset < self._best:
            self._best = offset
        return camera_ns + self._best
