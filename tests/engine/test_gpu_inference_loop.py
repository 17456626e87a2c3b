"""The inference loop on the GPU frame path: ring slot -> device -> NVRTC preprocessing -> TensorRT,
waited for no longer than each frame's deadline (``model.preprocess_on = "gpu"``).

The real :class:`InferenceLoop`, :class:`GpuFeed`, TensorRT backend and CUDA code run on a GPU; the
engine is the demo model built by ``linegate build-engine`` with the TensorRT test double (real
TensorRT where importable: test ids say ``[trt-double]`` or ``[trt-real]``). Marker ``gpu``:

    python -m pytest -m gpu tests/engine
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from linegate.config import Config
from linegate.counters import Count, SharedCounters
from linegate.engine import create_engine
from linegate.logs import configure_logging, get_logger, shutdown_logging
from linegate.pipeline.gpu_feed import GpuFeed
from linegate.pipeline.infer import InferenceLoop
from linegate.plc.reject_pipe import RejectOutbox, reject_channel
from linegate.ring import FrameRing, RingConsumer, RingGeometry, RingProducer
from linegate.vision.postprocess import Classifier
from linegate.vision.preprocess import build_preprocessor
from tests.conftest import DEMO_CONFIG
from tests.engine.trt_double import gpu_for_tests

pytest.importorskip("onnx", reason="the onnx package (dev extra) is needed by the TensorRT test double")
pytestmark = pytest.mark.gpu

CTX = mp.get_context("spawn")
DEMO_MODEL = (DEMO_CONFIG.parent / ".." / "engines" / "demo" / "ball_zone.onnx").resolve()
GEOMETRY = RingGeometry(480, 640, 1, "Mono8")


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def gpu_config(trt: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_config: Config) -> Config:
    """The demo configuration on a TensorRT engine of the demo model, preprocessed on the GPU."""
    gpu_for_tests(monkeypatch)
    from linegate.cli import main

    engine = tmp_path / "ball_zone.engine"
    argv = ["build-engine", str(DEMO_MODEL), "--precision", "fp32", "--output", str(engine), "--log-level", "error"]
    assert main(argv) == 0
    model = demo_config.model.model_copy(update={"backend": "tensorrt", "path": engine, "preprocess_on": "gpu"})
    return demo_config.model_copy(update={"model": model})


def frames(n: int, seed: int) -> list[np.ndarray]:
    """Frames like the simulated camera's: a white field with a black 20x20 ball at random places, in
    and out of the demo model's reject zone, so both verdicts occur."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        image = np.full(GEOMETRY.shape, 255, dtype=np.uint8)
        x, y = int(rng.integers(0, 620)), int(rng.integers(0, 460))
        image[y : y + 20, x : x + 20] = 0
        out.append(image)
    return out


@dataclass
class Run:
    loop: InferenceLoop
    producer: RingProducer
    consumer: RingConsumer
    ring: FrameRing
    gpu: GpuFeed
    log_path: Path

    def feed(self, images: list[np.ndarray]) -> None:
        for part, image in enumerate(images, start=1):
            _, slot = self.producer.reserve(part, part, time.monotonic_ns())
            assert slot is not None, "ring full: a slot was never released"
            self.producer.pixels(slot)[...] = image
            self.producer.publish(slot, time.monotonic_ns())
            assert self.consumer.wait(1.0)
            self.loop.step()

    def frame_records(self) -> list[dict[str, Any]]:
        """The frame records, once the log writer has flushed them (logging ends here)."""
        shutdown_logging()
        return [r for r in records(self.log_path) if r["event"] == "frame"]


class SlowEngine:
    """The real TensorRT engine, with a kernel spinning *spin_ns* queued after each run on its stream:
    a GPU that takes longer than the frame's deadline."""

    SPIN = r"""
    extern "C" __global__ void spin(unsigned long long ns) {
        unsigned long long t0, t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
        do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
    }
    """

    def __init__(self, engine: Any, spin_ns: int) -> None:
        from linegate.engine import cuda_memory as cm

        self._engine = engine
        self.cfg, self.device_input, self.stream = engine.cfg, engine.device_input, engine.stream
        self._spin = cm.Module(cm.compile_cuda(self.SPIN, "spin.cu", ())).kernel("spin", ("u64",))
        self._spin.set(0, spin_ns)

    @property
    def output(self) -> Any:
        return self._engine.output

    def enqueue_on_device_input(self, stream: Any) -> None:
        self._engine.enqueue_on_device_input(stream)
        self._spin.launch((1, 1, 1), (1, 1, 1), stream)


@pytest.fixture(params=[0], ids=["gpu"])
def gpu_run(request: pytest.FixtureRequest, gpu_config: Config, tmp_path: Path) -> Iterator[Run]:
    """The loop on the GPU path; ``request.param`` > 0: each run is followed by that many ns of spinning."""
    cfg = gpu_config
    ring = FrameRing.create(CTX, instance=cfg.instance.name, geometry=GEOMETRY, slots=4, journal_size=16,
                            when_full="drop_newest")  # fmt: skip
    producer, consumer = RingProducer(ring.handle), RingConsumer(ring.handle)
    pre = build_preprocessor(cfg.model.preprocess, GEOMETRY.shape, "Mono8")
    engine = create_engine(cfg.model, pre.spec.shape, pre.spec.dtype)
    engine.load()
    layout = ring.handle.layout
    fed = SlowEngine(engine, request.param) if request.param else engine
    gpu = GpuFeed(fed, cfg.model.preprocess, consumer, layout.slots, layout.slot_stride, GEOMETRY.shape, "Mono8")
    _, writer = reject_channel(CTX)
    log_path = tmp_path / "frames.jsonl"
    sink = configure_logging(file=log_path, stream=None)
    loop = InferenceLoop(cfg, consumer, engine, pre, RejectOutbox(writer, 64), SharedCounters.create(CTX),
                         get_logger(), sink, gpu=gpu)  # fmt: skip
    run = Run(loop, producer, consumer, ring, gpu, log_path)
    try:
        yield run
    finally:
        shutdown_logging()
        freed = gpu.close()
        if freed is not None:
            consumer.release(freed)
        engine.close()
        producer.close()
        consumer.close()
        ring.close()


def reference(cfg: Config, images: list[np.ndarray]) -> list[tuple[str, float]]:
    """Label and score of each frame through the CPU path: numpy preprocessing and ONNX Runtime."""
    model = cfg.model.model_copy(update={"backend": "onnxruntime", "path": DEMO_MODEL, "preprocess_on": "cpu"})
    pre = build_preprocessor(model.preprocess, GEOMETRY.shape, "Mono8")
    classify = Classifier(model.postprocess)
    out = []
    with create_engine(model, pre.spec.shape, pre.spec.dtype) as engine:
        for image in images:
            pre(image, engine.input)
            decision = classify(engine.infer())
            out.append((decision.label, decision.score))
    return out


def test_gpu_path_gives_the_cpu_paths_verdicts_and_scores(gpu_run: Run, gpu_config: Config) -> None:
    """Frames through slot -> device -> kernel -> engine get the label and score the numpy + ONNX Runtime
    path gives them, decided by the model in time, and every slot is released."""
    gpu_run.loop.warm_up(5)
    images = frames(20, seed=1)
    gpu_run.feed(images)
    recs = gpu_run.frame_records()
    assert [r["basis"] for r in recs] == ["model"] * 20
    expected = reference(gpu_config, images)
    assert [r["label"] for r in recs] == [label for label, _ in expected]
    np.testing.assert_allclose([r["score"] for r in recs], [score for _, score in expected], atol=2e-5)
    assert {label for label, _ in expected} == {"pass", "reject"}, "the frames should exercise both verdicts"
    assert gpu_run.ring.unresolved() == []


@pytest.mark.parametrize("gpu_run", [30_000_000], ids=["gpu-30ms-late"], indirect=True)
def test_a_frame_late_on_the_gpu_gets_the_fail_safe_verdict_and_its_slot_comes_back(gpu_run: Run) -> None:
    """The GPU takes 30 ms more per frame than a 10 ms deadline allows: each frame gets one fail-safe
    record (missed, or unreachable while a late frame still occupies the GPU), a late frame's slot is
    released once the GPU is done with it, and no slot is left claimed."""
    loop = gpu_run.loop
    loop.warm_up(3)
    loop.budget_ns = 10_000_000
    loop.expected_ns = 0  # the loop believes the frames can make it, so it starts them
    gpu_run.feed(frames(12, seed=2))  # 12 frames through 4 slots: a slot never handed back would stall this
    recs = gpu_run.frame_records()
    assert len(recs) == 12 and [r["part_id"] for r in recs] == list(range(1, 13))
    assert {r["basis"] for r in recs} <= {"deadline_missed", "deadline_unreachable"}
    assert "deadline_missed" in {r["basis"] for r in recs}
    assert all(r["verdict"] == "reject" for r in recs)  # the demo's fail-safe
    counters: Any = loop.counters
    assert counters.get(Count.DECIDED) == 12
    freed = gpu_run.gpu.close()
    if freed is not None:
        gpu_run.consumer.release(freed)
    assert gpu_run.ring.unresolved() == []
