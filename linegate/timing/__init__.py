"""Time: clocks, per-frame deadlines and latency statistics."""
