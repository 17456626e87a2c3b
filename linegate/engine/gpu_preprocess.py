"""Preprocessing on the GPU: a frame-ring slot to the engine's device input, bounded by the frame's deadline.

:class:`GpuPreprocessor` executes a :class:`~linegate.vision.preprocess.Plan` with a CUDA kernel
compiled once at load (NVRTC, specialised for the plan's structure, cached per process). It repeats
the numpy path's float32 operations in the same order with the plan's own tables, so its output is
bit-identical to :class:`~linegate.vision.preprocess.Preprocessor`'s (see the kernel's comments).

:class:`GpuFramePath` is the per-frame path: the ROI's rows of a registered ring slot copied to the
device in one DMA (or, with a mapped registration as on Jetson, read in place), the kernel, an event,
and a wait on that event that ends at the frame's deadline.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from linegate.engine import cuda_memory as cm
from linegate.errors import EngineError
from linegate.timing.clock import Clock, MonotonicClock
from linegate.timing.polling import SLEEP_S, SPIN_NS
from linegate.vision.preprocess import Plan

KERNEL = "linegate_preprocess"
BLOCK = (32, 8, 1)

SOURCE = r"""
// One thread per output pixel, all model channels. Specialised with -D:
//   INTERP 0 area, 1 nearest, 2 bilinear; FY, FX the area block; C_SRC frame channels;
//   NS frame channels read; C_OUT model channels; MAP0..2 the frame channel of each model channel;
//   NHWC layout; HALF float16 output.
// src points at the ROI's first pixel; rows are pitch bytes apart. Tables hold source indices
// relative to the ROI: nearest [ix | iy]; bilinear [x0 | x1 | y0 | y1] and weights [wx | wy].
// Every float operation is an explicitly rounded intrinsic (never contracted into an FMA) in the
// order numpy performs it, so results equal the numpy path's bit for bit.

#if HALF
typedef unsigned short out_t;
__device__ __forceinline__ out_t to_out(float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));  // one rounding, to nearest even, as numpy's astype
    return h;
}
#else
typedef float out_t;
__device__ __forceinline__ out_t to_out(float v) { return v; }
#endif

#if INTERP == 0
typedef unsigned int raw_t;
// numpy scales uint16 block sums in float32 and uint32 ones in float64, then rounds to float32. One
// double product rounded to float equals both: a sum below 2^16 times a float32 is exact in a double.
__device__ __forceinline__ float scaled(raw_t v, float g) { return __double2float_rn(__dmul_rn((double)v, (double)g)); }
#else
typedef float raw_t;
__device__ __forceinline__ float scaled(raw_t v, float g) { return __fmul_rn(v, g); }
#endif

#define PICK(k, a, b, c) ((k) == 0 ? (a) : (k) == 1 ? (b) : (c))

extern "C" __global__ void __launch_bounds__(256) linegate_preprocess(
    const unsigned char* __restrict__ src, const int pitch, out_t* __restrict__ out, const int out_w,
    const int out_h, const int* __restrict__ tab, const float* __restrict__ wts, const float g0, const float g1,
    const float g2, const float o0, const float o1, const float o2)
{
    const int ox = blockIdx.x * blockDim.x + threadIdx.x;
    const int oy = blockIdx.y * blockDim.y + threadIdx.y;
    if (ox >= out_w || oy >= out_h) return;
    raw_t raw[NS];
#if INTERP == 0
    #pragma unroll
    for (int s = 0; s < NS; ++s) raw[s] = 0u;
    const unsigned char* row = src + (size_t)oy * FY * pitch + (size_t)ox * FX * C_SRC;
    for (int i = 0; i < FY; ++i, row += pitch) {
        for (int j = 0; j < FX; ++j) {
            #pragma unroll
            for (int s = 0; s < NS; ++s) raw[s] += row[j * C_SRC + s];
        }
    }
#elif INTERP == 1
    const unsigned char* p = src + (size_t)tab[out_w + oy] * pitch + (size_t)tab[ox] * C_SRC;
    #pragma unroll
    for (int s = 0; s < NS; ++s) raw[s] = (float)p[s];
#else
    const unsigned char* r0 = src + (size_t)tab[2 * out_w + oy] * pitch;
    const unsigned char* r1 = src + (size_t)tab[2 * out_w + out_h + oy] * pitch;
    const int x0 = tab[ox] * C_SRC, x1 = tab[out_w + ox] * C_SRC;
    const float wx = wts[ox], wy = wts[out_w + oy];
    #pragma unroll
    for (int s = 0; s < NS; ++s) {
        // numpy: top = a + (b - a) * wx; bottom likewise; value = (bottom - top) * wy + top
        const float a = r0[x0 + s], b = r0[x1 + s], c = r1[x0 + s], d = r1[x1 + s];
        const float top = __fadd_rn(a, __fmul_rn(__fsub_rn(b, a), wx));
        const float bottom = __fadd_rn(c, __fmul_rn(__fsub_rn(d, c), wx));
        raw[s] = __fadd_rn(__fmul_rn(__fsub_rn(bottom, top), wy), top);
    }
#endif
    #pragma unroll
    for (int k = 0; k < C_OUT; ++k) {
        const float v = __fadd_rn(scaled(raw[PICK(k, MAP0, MAP1, MAP2)], PICK(k, g0, g1, g2)), PICK(k, o0, o1, o2));
#if NHWC
        out[((size_t)oy * out_w + ox) * C_OUT + k] = to_out(v);
#else
        out[((size_t)k * out_h + oy) * out_w + ox] = to_out(v);
#endif
    }
}
"""

PARAMS = ("ptr", "i32", "ptr", "i32", "i32", "ptr", "ptr", "f32", "f32", "f32", "f32", "f32", "f32")
_INTERP = {"area": 0, "nearest": 1, "bilinear": 2}


def kernel_options(plan: Plan) -> tuple[str, ...]:
    """The NVRTC options that specialise the kernel for *plan*'s structure: interpolation, area block,
    channels, layout, dtype (not frame, ROI or output sizes, nor values)."""
    c_src = plan.frame_shape[2]
    mapping = (*plan.source_channel, 0, 0)[:3]
    defines = {
        "INTERP": _INTERP[plan.interpolation],
        "FY": plan.block[0],
        "FX": plan.block[1],
        "C_SRC": c_src,
        "NS": 1 if c_src == 1 else 3,  # never the alpha channel
        "C_OUT": len(plan.source_channel),
        "MAP0": mapping[0],
        "MAP1": mapping[1],
        "MAP2": mapping[2],
        "NHWC": int(plan.layout == "NHWC"),
        "HALF": int(plan.spec.dtype == np.float16),
    }
    # --fmad=false is belt and braces: the kernel's float operations are explicitly rounded intrinsics.
    return ("--fmad=false", *(f"-D{k}={v}" for k, v in defines.items()))


_MODULES: dict[tuple[str, ...], cm.Module] = {}


def _module(options: tuple[str, ...]) -> cm.Module:
    """Compile and load once per specialisation and process (a reload with the same structure reuses it)."""
    module = _MODULES.get(options)
    if module is None:
        module = _MODULES[options] = cm.Module(cm.compile_cuda(SOURCE, "linegate_preprocess.cu", options))
    return module


def _tables(plan: Plan) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """The sampling tables in the kernel's layout: int32 indices and float32 weights."""
    rows, cols = plan.rows, plan.cols
    if rows is None or cols is None:  # area
        return np.zeros(1, np.int32), np.zeros(1, np.float32)
    if plan.interpolation == "nearest":
        return np.concatenate([cols.lo, rows.lo]).astype(np.int32), np.zeros(1, np.float32)
    tab = np.concatenate([cols.lo, cols.hi, rows.lo, rows.hi]).astype(np.int32)
    return tab, np.concatenate([cols.weight, rows.weight]).astype(np.float32)


class GpuPreprocessor:
    """*plan* as a kernel: reads the ROI's rows from device (or mapped) memory, writes the model input.

    Compiled (or taken from the cache) and its tables uploaded at construction; a frame costs one
    launch.
    """

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        _, w, c = plan.frame_shape
        x, y, _, roi_h = plan.roi
        self.pitch = w * c
        self.band_offset = y * self.pitch
        """Bytes of the frame before the ROI's first row."""
        self.band_bytes = roi_h * self.pitch
        """The frame rows the kernel reads (the ROI's, at full width): what a frame path copies."""
        self._roi_offset = x * c
        self.out_bytes = int(np.prod(plan.spec.shape)) * plan.spec.dtype.itemsize
        out_h, out_w = plan.out_hw
        self._grid = (-(-out_w // BLOCK[0]), -(-out_h // BLOCK[1]), 1)
        self._kernel = _module(kernel_options(plan)).kernel(KERNEL, PARAMS)
        tab, wts = _tables(plan)
        self._tab = cm.DeviceBuffer.upload(tab)
        self._wts = cm.DeviceBuffer.upload(wts)
        k = self._kernel
        k.set(1, self.pitch)
        k.set(3, out_w)
        k.set(4, out_h)
        if plan.rows is not None:
            k.set(5, self._tab.ptr)
            k.set(6, self._wts.ptr)
        for i in range(len(plan.source_channel)):
            k.set(7 + i, float(plan.gain[i]))
            k.set(10 + i, float(plan.offset[i]))
        self._src = self._out = -1

    def enqueue(self, band: int, out: int, stream: cm.Stream) -> None:
        """Launch on *stream*: *band* is the device address of the ROI's first row (full frame width),
        *out* the model input on the device."""
        src = band + self._roi_offset
        if src != self._src:
            self._kernel.set(0, src)
            self._src = src
        if out != self._out:
            self._kernel.set(2, out)
            self._out = out
        self._kernel.launch(self._grid, BLOCK, stream)

    def close(self) -> None:
        """Free the tables (the compiled module stays cached for the process)."""
        self._tab.close()
        self._wts.close()


class _State(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    ABANDONED = "abandoned"


class GpuFramePath:
    """Per frame: ring slot -> device -> kernel (-> *then*, e.g. the engine's run) -> event, on one stream.

    One frame is in flight at a time. :meth:`wait` ends at the frame's deadline at the latest. A
    frame still running then is *abandoned*: the caller gives it the fail-safe verdict and reads
    nothing it produced. CUDA cannot cancel queued work, so until its event completes the path
    keeps the frame's slot (the copy may still be reading it: the caller must not hand it back to
    the producer) and refuses new frames (:attr:`idle` is False; the caller gives them the fail-safe
    verdict without touching the GPU). That bounds the queue to one frame and keeps every buffer
    (slot, device copy, model input) untouched by new work until the late work is done; the first
    :meth:`reclaim` after that returns the slot for release and makes the path idle again. Per frame::

        if (slot := path.reclaim()) is not None: release it
        if not path.idle: fail-safe verdict, release the new frame's slot
        path.start(slot, host_address); in_time = path.wait(deadline_ns)
        in_time: verdict from the model, release the slot; else: fail-safe verdict, keep the slot
    """

    def __init__(
        self,
        pre: GpuPreprocessor,
        out: int,
        stream: cm.Stream,
        *,
        mapped: bool = False,
        then: Callable[[cm.Stream], None] | None = None,
        clock: Clock | None = None,
        spin_ns: int = SPIN_NS,
        sleep_s: float = SLEEP_S,
    ) -> None:
        """*out*: the engine's device input; *mapped*: read slots in place through their mapped device
        address instead of copying (Jetson); *then*: more work to enqueue after the kernel, covered by
        the same event and deadline."""
        self._pre = pre
        self._out = out
        self._stream = stream
        self._then = then
        self._clock = clock or MonotonicClock()
        self._spin_ns, self._sleep_s = spin_ns, sleep_s
        self._copy = None if mapped else cm.DeviceBuffer(pre.band_bytes)
        self._done = cm.Event(timing=False)
        self._state = _State.IDLE
        self._slot: int | None = None

    @property
    def idle(self) -> bool:
        """True when a frame may start. An abandoned frame keeps the path busy until :meth:`reclaim`
        has returned its slot."""
        return self._state is _State.IDLE

    @property
    def held_slot(self) -> int | None:
        """The slot of the frame running or abandoned, if any."""
        return self._slot

    def start(self, slot: int, host: int, device: int | None = None) -> None:
        """Enqueue frame work for ring *slot*, whose pixels are at *host* (registered as pinned) and,
        for a mapped path, at *device*."""
        if self._state is not _State.IDLE:
            raise EngineError(f"GPU frame path is {self._state.value} (slot {self._slot}): start() needs it idle")
        self._slot = slot
        self._state = _State.ABANDONED  # until the event is recorded: a failed enqueue holds the slot
        pre, stream = self._pre, self._stream
        try:
            if self._copy is None:
                if device is None:
                    raise EngineError("a mapped GPU frame path needs the slot's device address")
                band = device + pre.band_offset
            else:
                cm.copy_h2d_async(self._copy.ptr, host + pre.band_offset, pre.band_bytes, stream)
                band = self._copy.ptr
            pre.enqueue(band, self._out, stream)
            if self._then is not None:
                self._then(stream)
        finally:
            self._done.record(stream)  # covers whatever was enqueued, so reclaim() knows when it is done
        self._state = _State.RUNNING

    def wait(self, deadline_ns: int) -> bool:
        """True: the frame is done (its output is in the engine's input) and its slot may be released.
        False: *deadline_ns* passed first: the frame is abandoned and its slot held (see the class)."""
        if self._state is not _State.RUNNING:
            raise EngineError(f"GPU frame path is {self._state.value}: wait() needs a started frame")
        if self._done.wait(deadline_ns, clock=self._clock, spin_ns=self._spin_ns, sleep_s=self._sleep_s):
            self._state, self._slot = _State.IDLE, None
            return True
        self._state = _State.ABANDONED
        return False

    def reclaim(self) -> int | None:
        """The slot of an abandoned frame whose work has finished since (release it now), else None."""
        if self._state is _State.ABANDONED and self._done.query():
            slot, self._state, self._slot = self._slot, _State.IDLE, None
            return slot
        return None

    def close(self) -> None:
        """Wait for any queued work (the GPU must be done with slots and buffers before they go), free."""
        self._stream.synchronize()
        self._done.close()
        if self._copy is not None:
            self._copy.close()
