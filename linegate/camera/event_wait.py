"""How Harvesters' fetch waits for a buffer (pure arithmetic, shared by the camera and the config check).

Harvesters' fetch waits in slices, one GenTL event wait each (1 ms by default), and looks at its
timeout between them: at 100 fps about ten wake-ups a frame, each taking the CPU from whatever runs
there (the engine, on a small budget). A buffer ends a wait at once whatever its length, so linegate
waits in slices of half the fetch timeout, at most 100 ms.
"""

from __future__ import annotations

EVENT_WAIT_MAX_MS = 100


def event_wait_ms(fetch_timeout_ms: int) -> int:
    """The longest single GenTL event wait inside a fetch of *fetch_timeout_ms*: half of it rounded
    up, at most :data:`EVENT_WAIT_MAX_MS`."""
    return max(1, min(EVENT_WAIT_MAX_MS, (fetch_timeout_ms + 1) // 2))


def longest_fetch_ms(fetch_timeout_ms: int) -> int:
    """How long a fetch with no frame can last (the timeout is looked at between waits): the
    acquisition loop's heartbeat is that long apart when the line stops."""
    return fetch_timeout_ms + event_wait_ms(fetch_timeout_ms)
