"""ROI crop, resize, colour order, normalisation and layout into a preallocated input tensor.

Everything that depends only on the configuration (index tables, weights, scale and offset) is
computed once in :func:`build_preprocessor`; the per-frame call only runs vectorised numpy with
``out=`` buffers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from linegate.config.schema import PreprocessSection
from linegate.errors import ConfigError

Frame = npt.NDArray[np.uint8]
Tensor = npt.NDArray[np.floating]

Resample = Callable[[Frame], npt.NDArray[np.number]]

_SOURCE_ORDER = {"Mono8": "l", "RGB8": "rgb", "BGR8": "bgr", "RGBa8": "rgb", "BGRa8": "bgr"}


@dataclass(frozen=True)
class InputSpec:
    """Shape and dtype of the model input this preprocessor fills."""

    shape: tuple[int, ...]
    dtype: np.dtype[np.floating]


class Preprocessor:
    """Callable ``(frame, out) -> None`` that writes one frame into the model input *out*."""

    def __init__(
        self,
        spec: InputSpec,
        resample: Resample,
        channel_index: npt.NDArray[np.intp] | None,
        gain: npt.NDArray[np.float32],
        offset: npt.NDArray[np.float32],
        layout: str,
    ) -> None:
        self.spec = spec
        self._resample = resample
        self._channel_index = channel_index
        self._gain = gain
        self._offset = offset
        self._nchw = layout == "NCHW"

    def __call__(self, frame: Frame, out: Tensor) -> None:
        hwc = self._resample(frame)  # (h, w, c_src): block sums, source pixels or interpolated values
        if self._channel_index is not None:
            hwc = hwc[..., self._channel_index]
        target = out[0].transpose(1, 2, 0) if self._nchw else out[0]
        # Scale and offset written straight into the engine's input: two passes, no temporaries.
        np.multiply(hwc, self._gain, out=target, casting="same_kind")
        np.add(target, self._offset, out=target, casting="same_kind")


def build_preprocessor(cfg: PreprocessSection, frame_shape: tuple[int, ...], pixel_format: str) -> Preprocessor:
    """Compile *cfg* for frames of *frame_shape* ((h, w) or (h, w, c)) in *pixel_format*."""
    src_h, src_w = frame_shape[0], frame_shape[1]
    x, y, w, h = cfg.roi if cfg.roi is not None else (0, 0, src_w, src_h)
    if x + w > src_w or y + h > src_h:
        raise ConfigError(f"model.preprocess.roi {[x, y, w, h]} exceeds the {src_w}x{src_h} frame")
    out_w, out_h = cfg.resize if cfg.resize is not None else (w, h)
    rows, cols = slice(y, y + h), slice(x, x + w)
    c_src = 1 if len(frame_shape) == 2 else frame_shape[2]
    resample, factor = _resampler(cfg.interpolation, rows, cols, h, w, out_h, out_w, c_src)

    order = _SOURCE_ORDER[pixel_format]
    c_out = cfg.channels
    if cfg.color == "gray":
        if order != "l":
            raise ConfigError(f"model.preprocess.color='gray' needs Mono8 frames, camera gives {pixel_format}")
        channel_index = None
    else:
        channel_index = np.array([order.index(ch) for ch in cfg.color], dtype=np.intp)
    mean = np.broadcast_to(np.asarray(cfg.mean, dtype=np.float32), (c_out,))
    std = np.broadcast_to(np.asarray(cfg.std, dtype=np.float32), (c_out,))
    gain = (np.float32(cfg.scale * factor) / std).astype(np.float32)
    offset = (-mean / std).astype(np.float32)
    shape = (1, c_out, out_h, out_w) if cfg.layout == "NCHW" else (1, out_h, out_w, c_out)
    return Preprocessor(InputSpec(shape, np.dtype(cfg.dtype)), resample, channel_index, gain, offset, cfg.layout)


def _resampler(
    method: str, rows: slice, cols: slice, h: int, w: int, out_h: int, out_w: int, c: int
) -> tuple[Resample, float]:
    """The resampling function and the factor its output still needs (area returns block sums)."""
    if method == "area":
        if h % out_h or w % out_w:
            raise ConfigError(
                f"model.preprocess: interpolation='area' needs whole-number factors, "
                f"but {w}x{h} -> {out_w}x{out_h} is not (use 'bilinear' or change resize/roi)"
            )
        fy, fx = h // out_h, w // out_w
        # Sum the blocks with strided adds into small integer accumulators: much faster than a
        # reduction over short inner axes, and exact. Rows first: those adds run over whole rows.
        acc_dtype = np.uint16 if fy * fx * 255 <= np.iinfo(np.uint16).max else np.uint32
        rows_sum = np.empty((out_h, w, c), dtype=acc_dtype)
        acc = np.empty((out_h, out_w, c), dtype=acc_dtype)

        def area(frame: Frame) -> npt.NDArray[np.unsignedinteger]:
            roi = frame[rows, cols].reshape(h, w, c)
            np.copyto(rows_sum, roi[0::fy], casting="unsafe")
            for i in range(1, fy):
                np.add(rows_sum, roi[i::fy], out=rows_sum, casting="unsafe")
            np.copyto(acc, rows_sum[:, 0::fx])
            for j in range(1, fx):
                np.add(acc, rows_sum[:, j::fx], out=acc)
            return acc

        return area, 1.0 / (fy * fx)

    if method == "nearest":
        iy = np.minimum(((np.arange(out_h) + 0.5) * h / out_h).astype(np.intp), h - 1) + rows.start
        ix = np.minimum(((np.arange(out_w) + 0.5) * w / out_w).astype(np.intp), w - 1) + cols.start
        grid = np.ix_(iy, ix)

        def nearest(frame: Frame) -> npt.NDArray[np.uint8]:
            return frame[grid].reshape(out_h, out_w, c)

        return nearest, 1.0

    # bilinear, half-pixel centres (as OpenCV INTER_LINEAR)
    def taps(
        n_in: int, n_out: int, start: int
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]:
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo + start, hi + start, (pos - lo).astype(np.float32)

    y0, y1, wy = taps(h, out_h, rows.start)
    x0, x1, wx = taps(w, out_w, cols.start)
    wy3, wx3 = wy[:, None, None], wx[None, :, None]
    buf = np.empty((out_h, out_w, c), dtype=np.float32)
    top = np.empty((out_h, out_w, c), dtype=np.float32)
    bottom = np.empty((out_h, out_w, c), dtype=np.float32)

    def bilinear(frame: Frame) -> npt.NDArray[np.float32]:
        img = frame.reshape(frame.shape[0], frame.shape[1], c)
        r0, r1 = img[y0], img[y1]
        np.copyto(top, r0[:, x0], casting="unsafe")
        np.add(top, (r0[:, x1] - top) * wx3, out=top)
        np.copyto(bottom, r1[:, x0], casting="unsafe")
        np.add(bottom, (r1[:, x1] - bottom) * wx3, out=bottom)
        np.subtract(bottom, top, out=buf)
        np.multiply(buf, wy3, out=buf)
        np.add(buf, top, out=buf)
        return buf

    return bilinear, 1.0
