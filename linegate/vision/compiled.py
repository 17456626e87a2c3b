"""The preprocessing plan as one compiled call per frame (numba), bit for bit the numpy path's result.

Why: on a CPU that also runs the camera, the PLC link and other processes, the numpy path's dozen
small calls per frame start with cold caches; each costs tens of microseconds there instead of one or
two. One compiled loop over the frame does the same arithmetic in one call (the demo's 640x480 ->
160x120 area: about 0.13 ms instead of 0.35 ms p50 after 10 ms idle on the 2-CPU machine).

Every kernel repeats the numpy path's float32 steps in its order (:mod:`linegate.vision.preprocess`),
including numpy's type promotion: a ``uint16`` block sum times a float32 gain is a float32 product,
a ``uint32`` one a float64 product rounded to float32. :func:`kernel` imports numba (0.4 s) only
when a process first needs a kernel, so commands that never preprocess do not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Kernel = Callable[..., None]

_KERNELS: dict[str, Kernel] = {}


def kernel(interpolation: str) -> Kernel:
    """The compiled kernel for *interpolation* ('area', 'nearest', 'bilinear'), compiled on first call."""
    if interpolation not in _KERNELS:
        import numba  # imported here: about 0.4 s, and only preprocessing processes need it

        bodies: dict[str, Kernel] = {"area": _area, "nearest": _nearest, "bilinear": _bilinear}
        body = bodies[interpolation]
        # nogil: the GIL is released while a frame is resampled; boundscheck off: indices come
        # from the plan, checked against the frame's shape before any call (Preprocessor).
        try:
            # cache: compiled once per machine (1.2 s), loaded after that (0.1 s): in
            # $NUMBA_CACHE_DIR when set (the systemd units set it), else next to this file, else
            # in ~/.cache.
            _KERNELS[interpolation] = numba.njit(nogil=True, boundscheck=False, cache=True)(body)
        except RuntimeError:  # numba found no writable cache directory: compile in every process
            _KERNELS[interpolation] = numba.njit(nogil=True, boundscheck=False)(body)
    return _KERNELS[interpolation]


def _area(
    frame: Any, width: int, channels: int, y0: int, x0: int, fy: int, fx: int, wide: bool,
    source: Any, gain: Any, offset: Any, out: Any, nchw: bool, rows: Any, sums: Any,
) -> None:  # fmt: skip
    """Block sums of *fy* x *fx* pixels from the flat *frame* (rows of ``width * channels`` bytes)."""
    out_h = out.shape[2] if nchw else out.shape[1]
    out_w = out.shape[3] if nchw else out.shape[2]
    span = out_w * fx * channels
    stride = width * channels
    step = fx * channels
    # Slices everywhere, indexed by loop counters only: no negative-index checks, so loops vectorise.
    for i in range(out_h):
        start = (y0 + i * fy) * stride + x0 * channels
        src = frame[start : start + span]
        for k in range(span):
            rows[k] = src[k]
        for a in range(1, fy):
            src = frame[start + a * stride : start + a * stride + span]
            for k in range(span):
                rows[k] += src[k]
        for ch in range(source.shape[0]):
            first = rows[source[ch] :: step]
            for j in range(out_w):
                sums[j] = first[j]
            for b in range(1, fx):
                shifted = rows[source[ch] + b * channels :: step]
                for j in range(out_w):
                    sums[j] += shifted[j]
            g, o = gain[ch], offset[ch]
            dst = out[0, ch, i] if nchw else out[0, i, :, ch]
            if wide:  # numpy's promotion: a uint32 sum times a float32 gain is a float64 product
                for j in range(out_w):
                    dst[j] = np.float32(np.float64(sums[j]) * np.float64(g)) + o
            else:  # a uint16 sum times a float32 gain is a float32 product
                for j in range(out_w):
                    dst[j] = np.float32(sums[j]) * g + o


def _nearest(
    frame: Any, width: int, channels: int, row_index: Any, col_index: Any,
    source: Any, gain: Any, offset: Any, out: Any, nchw: bool,
) -> None:  # fmt: skip
    """The source pixel at each output position (indices absolute in the frame)."""
    stride = width * channels
    out_w = col_index.shape[0]
    for i in range(row_index.shape[0]):
        line = frame[row_index[i] * stride : (row_index[i] + 1) * stride]
        for ch in range(source.shape[0]):
            plane = line[source[ch] :: channels]
            g, o = gain[ch], offset[ch]
            dst = out[0, ch, i] if nchw else out[0, i, :, ch]
            for j in range(out_w):
                dst[j] = np.float32(plane[col_index[j]]) * g + o


def _bilinear(
    frame: Any, width: int, channels: int, row_lo: Any, row_hi: Any, wy: Any,
    col_lo: Any, col_hi: Any, wx: Any, source: Any, gain: Any, offset: Any, out: Any, nchw: bool,
) -> None:  # fmt: skip
    """Each output pixel from its four neighbours: across first (top, bottom), then down."""
    stride = width * channels
    out_w = col_lo.shape[0]
    for i in range(row_lo.shape[0]):
        upper = frame[row_lo[i] * stride : (row_lo[i] + 1) * stride]
        lower = frame[row_hi[i] * stride : (row_hi[i] + 1) * stride]
        fy = wy[i]
        for ch in range(source.shape[0]):
            up, down = upper[source[ch] :: channels], lower[source[ch] :: channels]
            g, o = gain[ch], offset[ch]
            dst = out[0, ch, i] if nchw else out[0, i, :, ch]
            for j in range(out_w):
                left, right, fx = col_lo[j], col_hi[j], wx[j]
                top = np.float32(up[left])
                top = top + (np.float32(up[right]) - top) * fx
                bottom = np.float32(down[left])
                bottom = bottom + (np.float32(down[right]) - bottom) * fx
                dst[j] = ((bottom - top) * fy + top) * g + o
