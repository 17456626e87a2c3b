"""ROI crop, resize, colour order, normalisation and layout into a preallocated input tensor.

:func:`plan_preprocess` turns the configuration into a :class:`Plan`: pure data (ROI, sampling
tables, the frame channel behind each model channel, per-channel gain and offset) computed once.
The numpy path here and the GPU kernel (:mod:`linegate.engine.gpu_preprocess`) both execute a plan,
with the same float32 operations in the same order, so their outputs agree bit for bit. Per frame
the numpy path only runs vectorised numpy with ``out=`` buffers.
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


@dataclass(frozen=True, eq=False)
class Taps:
    """Sampling along one axis, per output index: source indices relative to the ROI and the weight of ``hi``.

    Nearest uses ``lo`` only (``hi`` is ``lo``, weights 0); bilinear blends ``lo`` and ``hi``.
    """

    lo: npt.NDArray[np.intp]
    hi: npt.NDArray[np.intp]
    weight: npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Plan:
    """Everything preprocessing does to a frame, decided once from the configuration."""

    frame_shape: tuple[int, int, int]
    """(height, width, channels) of the camera frame."""
    roi: tuple[int, int, int, int]
    """x, y, width, height inside the frame."""
    interpolation: str
    block: tuple[int, int]
    """area: (rows, columns) summed per output pixel; (1, 1) otherwise."""
    rows: Taps | None
    """nearest and bilinear: the source rows of each output row; None for area."""
    cols: Taps | None
    source_channel: tuple[int, ...]
    """The frame channel each model channel is taken from (gray3: (0, 0, 0))."""
    gain: npt.NDArray[np.float32]
    """Per model channel: scale / std, times 1 / (block pixels) for area, which yields block sums."""
    offset: npt.NDArray[np.float32]
    """Per model channel: -mean / std."""
    layout: str
    spec: InputSpec

    @property
    def out_hw(self) -> tuple[int, int]:
        shape = self.spec.shape
        return (shape[2], shape[3]) if self.layout == "NCHW" else (shape[1], shape[2])


def plan_preprocess(cfg: PreprocessSection, frame_shape: tuple[int, ...], pixel_format: str) -> Plan:
    """Check *cfg* against frames of *frame_shape* ((h, w) or (h, w, c)) in *pixel_format* and plan it."""
    src_h, src_w = frame_shape[0], frame_shape[1]
    c_src = 1 if len(frame_shape) == 2 else frame_shape[2]
    x, y, w, h = cfg.roi if cfg.roi is not None else (0, 0, src_w, src_h)
    if x + w > src_w or y + h > src_h:
        raise ConfigError(f"model.preprocess.roi {[x, y, w, h]} exceeds the {src_w}x{src_h} frame")
    out_w, out_h = cfg.resize if cfg.resize is not None else (w, h)
    source_channel = _source_channels(cfg.color, pixel_format)

    block, rows, cols = (1, 1), None, None
    if cfg.interpolation == "area":
        if h % out_h or w % out_w:
            raise ConfigError(
                f"model.preprocess: interpolation='area' needs whole-number factors, "
                f"but {w}x{h} -> {out_w}x{out_h} is not (use 'bilinear' or change resize/roi)"
            )
        block = (h // out_h, w // out_w)
    elif cfg.interpolation == "nearest":
        rows, cols = _nearest_taps(h, out_h), _nearest_taps(w, out_w)
    else:
        rows, cols = _bilinear_taps(h, out_h), _bilinear_taps(w, out_w)

    c_out = cfg.channels
    factor = 1.0 / (block[0] * block[1])
    mean = np.broadcast_to(np.asarray(cfg.mean, dtype=np.float32), (c_out,))
    std = np.broadcast_to(np.asarray(cfg.std, dtype=np.float32), (c_out,))
    gain = (np.float32(cfg.scale * factor) / std).astype(np.float32)
    offset = (-mean / std).astype(np.float32)
    shape = (1, c_out, out_h, out_w) if cfg.layout == "NCHW" else (1, out_h, out_w, c_out)
    return Plan(
        frame_shape=(src_h, src_w, c_src),
        roi=(x, y, w, h),
        interpolation=cfg.interpolation,
        block=block,
        rows=rows,
        cols=cols,
        source_channel=source_channel,
        gain=gain,
        offset=offset,
        layout=cfg.layout,
        spec=InputSpec(shape, np.dtype(cfg.dtype)),
    )


def _source_channels(color: str, pixel_format: str) -> tuple[int, ...]:
    order = _SOURCE_ORDER[pixel_format]
    if color in ("gray", "gray3"):
        if order != "l":
            raise ConfigError(f"model.preprocess.color={color!r} needs Mono8 frames, camera gives {pixel_format}")
        return (0,) if color == "gray" else (0, 0, 0)
    if order == "l":
        raise ConfigError(
            f"model.preprocess.color={color!r} needs colour frames, camera gives Mono8 "
            "(for a 3-channel model on a Mono8 camera use color='gray3')"
        )
    return tuple(order.index(ch) for ch in color)


def _nearest_taps(n_in: int, n_out: int) -> Taps:
    idx = np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.intp), n_in - 1)
    return Taps(idx, idx, np.zeros(n_out, dtype=np.float32))


def _bilinear_taps(n_in: int, n_out: int) -> Taps:
    """Half-pixel centres, edges clamped (as OpenCV INTER_LINEAR)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    return Taps(lo, hi, (pos - lo).astype(np.float32))


class Preprocessor:
    """Callable ``(frame, out) -> None`` that writes one frame into the model input *out*.

    *kernel* 'compiled' (float32 inputs only) runs one numba-compiled call per frame
    (:mod:`linegate.vision.compiled`); 'numpy' the vectorised numpy path below; 'auto' the compiled
    call where numba compiles it here, else numpy, with the reason in :attr:`fallback`. Both paths
    give the same tensor, bit for bit.
    """

    def __init__(self, plan: Plan, kernel: str = "numpy") -> None:
        self.plan = plan
        self.spec = plan.spec
        self.fallback = ""
        """Why 'auto' runs the numpy path ('' when it does not)."""
        self.compiled = kernel != "numpy" and plan.spec.dtype == np.float32
        if self.compiled:
            try:
                self._compiled_call = _compiled_call(plan)
                # Compiled (or loaded from numba's cache) now, not at the first frame.
                zeros = np.zeros(plan.frame_shape, dtype=np.uint8)
                self._compiled_call(zeros, np.zeros(plan.spec.shape, np.float32))
            except Exception as exc:
                if kernel == "compiled":
                    raise ConfigError(
                        f"model.preprocess.kernel = 'compiled': the kernel does not compile here ({exc!r}); "
                        "set kernel = 'auto' or 'numpy'"
                    ) from exc
                self.compiled, self.fallback = False, f"numba could not compile the kernel: {exc!r}"
            self._frame_size = int(np.prod(plan.frame_shape))
        self._resample = _resampler(plan)
        # A Mono8 frame resamples to one channel; gain and offset broadcast it to three for gray3.
        multi = plan.frame_shape[2] > 1
        self._channel_index = np.array(plan.source_channel, dtype=np.intp) if multi else None
        self._gain, self._offset = plan.gain, plan.offset
        self._nchw = plan.layout == "NCHW"
        out_h, out_w = plan.out_hw
        # float16 inputs: scale and offset in float32 and round once at the end, as the GPU kernel does.
        half = plan.spec.dtype == np.float16
        self._scratch = np.empty((out_h, out_w, len(plan.source_channel)), dtype=np.float32) if half else None

    def __call__(self, frame: Frame, out: Tensor) -> None:
        if self.compiled:
            # The compiled loops do not check bounds: a frame or an input of another size stops here.
            if frame.size != self._frame_size or out.shape != self.spec.shape:
                raise ValueError(
                    f"frame of shape {frame.shape} into an input of shape {out.shape}, "
                    f"expected {self.plan.frame_shape} into {self.spec.shape}"
                )
            self._compiled_call(frame, out)
            return
        hwc = self._resample(frame)  # (h, w, c_src): block sums, source pixels or interpolated values
        if self._channel_index is not None:
            hwc = hwc[..., self._channel_index]
        target = out[0].transpose(1, 2, 0) if self._nchw else out[0]
        work = target if self._scratch is None else self._scratch
        # Scale and offset written straight into the engine's input (float32): two passes, no temporaries.
        np.multiply(hwc, self._gain, out=work, casting="same_kind")
        np.add(work, self._offset, out=work, casting="same_kind")
        if self._scratch is not None:
            np.copyto(target, work, casting="same_kind")


def build_preprocessor(cfg: PreprocessSection, frame_shape: tuple[int, ...], pixel_format: str) -> Preprocessor:
    """Compile *cfg* for frames of *frame_shape* ((h, w) or (h, w, c)) in *pixel_format*."""
    return Preprocessor(plan_preprocess(cfg, frame_shape, pixel_format), kernel=cfg.kernel)


def _compiled_call(plan: Plan) -> Callable[[Frame, Tensor], None]:
    """``(frame, out)`` through the compiled kernel of *plan*, its arguments bound once."""
    from linegate.vision import compiled

    run = compiled.kernel(plan.interpolation)
    _h, w, c = plan.frame_shape
    x, y, roi_w, _roi_h = plan.roi
    source = np.array(plan.source_channel, dtype=np.intp)
    gain, offset = plan.gain.astype(np.float32), plan.offset.astype(np.float32)
    nchw = plan.layout == "NCHW"
    if plan.interpolation == "area":
        fy, fx = plan.block
        wide = fy * fx * 255 > np.iinfo(np.uint16).max  # the numpy path's accumulator is uint32 then
        rows = np.empty(roi_w * c, dtype=np.uint32)
        sums = np.empty(roi_w // fx, dtype=np.uint32)

        def area(frame: Frame, out: Tensor) -> None:
            run(frame.reshape(-1), w, c, y, x, fy, fx, wide, source, gain, offset, out, nchw, rows, sums)

        return area
    assert plan.rows is not None and plan.cols is not None
    row_lo, row_hi = plan.rows.lo + y, plan.rows.hi + y
    col_lo, col_hi = plan.cols.lo + x, plan.cols.hi + x
    if plan.interpolation == "nearest":

        def nearest(frame: Frame, out: Tensor) -> None:
            run(frame.reshape(-1), w, c, row_lo, col_lo, source, gain, offset, out, nchw)

        return nearest
    wy, wx = plan.rows.weight, plan.cols.weight

    def bilinear(frame: Frame, out: Tensor) -> None:
        run(frame.reshape(-1), w, c, row_lo, row_hi, wy, col_lo, col_hi, wx, source, gain, offset, out, nchw)

    return bilinear


def _resampler(plan: Plan) -> Resample:
    """The per-frame resampling function of *plan* (area returns block sums; gain holds 1 / block size)."""
    x, y, w, h = plan.roi
    c = plan.frame_shape[2]
    out_h, out_w = plan.out_hw
    if plan.interpolation == "area":
        rows, cols = slice(y, y + h), slice(x, x + w)
        fy, fx = plan.block
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

        return area

    assert plan.rows is not None and plan.cols is not None
    if plan.interpolation == "nearest":
        grid = np.ix_(plan.rows.lo + y, plan.cols.lo + x)

        def nearest(frame: Frame) -> npt.NDArray[np.uint8]:
            return frame[grid].reshape(out_h, out_w, c)

        return nearest

    src_h, src_w = plan.frame_shape[0], plan.frame_shape[1]
    # The four neighbours of every output pixel as flat pixel indices into the frame: one gather
    # each into a small uint8 buffer, then one conversion to float32. Numpy's mixed uint8/float32
    # arithmetic on gathered rows took 3x as long (ResNet-18's 480x480 -> 224x224 on the 2-CPU
    # machine: 1.0 ms before, 0.36 ms now; RGB 7.1 -> 1.7 ms).
    neighbours = [
        (rows[:, None] * src_w + cols[None, :]).ravel()
        for rows in (plan.rows.lo + y, plan.rows.hi + y)
        for cols in (plan.cols.lo + x, plan.cols.hi + x)
    ]
    gathered = [np.empty((out_h * out_w, c), dtype=np.uint8) for _ in neighbours]
    top, top_right, bottom, bottom_right = (np.empty((out_h, out_w, c), dtype=np.float32) for _ in neighbours)
    wy3, wx3 = plan.rows.weight[:, None, None], plan.cols.weight[None, :, None]

    # The GPU kernel repeats these float32 steps one for one: keep the two in step.
    def bilinear(frame: Frame) -> npt.NDArray[np.float32]:
        pixels = frame.reshape(src_h * src_w, c)
        for index, raw, value in zip(neighbours, gathered, (top, top_right, bottom, bottom_right), strict=True):
            np.take(pixels, index, axis=0, out=raw)
            np.copyto(value, raw.reshape(out_h, out_w, c))
        np.subtract(top_right, top, out=top_right)  # top += (top_right - top) * wx
        np.multiply(top_right, wx3, out=top_right)
        np.add(top, top_right, out=top)
        np.subtract(bottom_right, bottom, out=bottom_right)  # bottom += (bottom_right - bottom) * wx
        np.multiply(bottom_right, wx3, out=bottom_right)
        np.add(bottom, bottom_right, out=bottom)
        np.subtract(bottom, top, out=bottom_right)  # top + (bottom - top) * wy
        np.multiply(bottom_right, wy3, out=bottom_right)
        np.add(bottom_right, top, out=bottom_right)
        return bottom_right

    return bilinear
