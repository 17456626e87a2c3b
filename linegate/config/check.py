"""``linegate check-config``: what ``linegate run`` would refuse, found before it runs.

Without the camera or the PLC: the file against the schema; each model's preprocessing built for
the camera's frames; the model loaded as ``run`` loads it (ONNX Runtime on the CPU; a TensorRT
engine where TensorRT is installed, else file checks only) and run once on a blank frame through the
postprocessing. With ``probe``: the camera opened and configured (in a child process, bounded) and
the PLC connected and read (never written), each within a bounded time.

Each problem is one line ``file: key: what is wrong``.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
from dataclasses import dataclass, field, replace
from importlib.metadata import version as _version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from linegate.config.lanes import lanes_of
from linegate.config.loader import load_config
from linegate.config.schema import CameraSection, Config, ModelSection, PreprocessSection, runnable_model
from linegate.errors import ConfigError, EngineError
from linegate.pipeline.scheduling import ServiceCpus, loop_would_starve, usable_cpus
from linegate.vision.preprocess import Preprocessor, build_preprocessor, plan_preprocess

if TYPE_CHECKING:
    from linegate.engine.base import Engine

CAMERA_PROBE_S = 30.0
"""--probe: the camera must be open and configured within this long (GigE discovery included)."""
PLC_CONNECT_S = 3.0
"""--probe: the PLC must accept a TCP connection within this long."""


@dataclass
class CheckReport:
    """Outcome of a check: configuration problems (exit 78), unreachable devices (exit 1), notes."""

    path: Path
    config: Config | None = None
    problems: list[str] = field(default_factory=list)
    """Each is one line naming file and key; no restart fixes these."""
    unreachable: list[str] = field(default_factory=list)
    """--probe: a device that does not answer now (the file may be right)."""
    notes: list[str] = field(default_factory=list)
    """What was checked, and what was skipped and why."""

    @property
    def exit_code(self) -> int:
        return 78 if self.problems else 1 if self.unreachable else 0


def check_config(path: Path, *, probe: bool = False) -> CheckReport:
    """Check *path* as ``run`` would use it; with *probe* also open the camera and reach the PLC."""
    report = CheckReport(path)
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        report.problems.extend(str(exc).splitlines())
        return report
    report.config = cfg
    models = [("model", cfg.model)] + [(f"recipes.{n}.model", r.model) for n, r in sorted(cfg.recipes.items())]
    models += [(f"stages.{i}.model", stage.model) for i, stage in enumerate(cfg.stages)]
    for key, model in models:
        check_model(report, key, runnable_model(cfg, model, stage=key.startswith("stages.")), cfg.camera)
    if cfg.cameras:
        named = ", ".join(f"{lane.name} ({_device(lane.cfg.camera)})" for lane in lanes_of(cfg))
        report.notes.append(f"cameras: {named}: each its own acquisition and PLC worker, one inference worker for all")
    if cfg.archive.enabled:
        archive_directory(report, cfg.archive.directory)
    report.notes.extend(scheduling_notes(cfg))
    if probe:
        for lane in lanes_of(cfg):  # each camera's device and PLC addresses ([[cameras]]), or the one
            probe_camera(report, lane.cfg.camera)
            probe_plc(report, lane.cfg)
    else:
        report.notes.append("camera and PLC not contacted (--probe opens the camera and connects to the PLC)")
    return report


def scheduling_notes(cfg: Config) -> list[str]:
    """The loop's real-time priority that run would refuse on this machine's CPUs, judged with the
    configured priorities granted (as the shipped unit's LimitRTPRIO=20 grants them; this shell's
    own limits are not the service's)."""
    service = frozenset(os.sched_getaffinity(0))
    unpinned = ServiceCpus(loop=service, service=service, usable=usable_cpus())
    cpus = replace(unpinned, loop=unpinned.of_worker(cfg.scheduling.infer_cpus))  # where run pins the loop
    why = loop_would_starve(cfg.scheduling, cpus, granted=lambda asked: asked)
    return [f"on this machine's CPUs ({', '.join(map(str, sorted(service)))}): {w}" for w in why]


def _device(camera: CameraSection) -> str:
    """How the camera's device is selected, in words (``serial_number 21034455``)."""
    return ", ".join(f"{k} {v}" for k, v in camera.device.model_dump(exclude_none=True).items())


def archive_directory(report: CheckReport, directory: Path) -> None:
    """archive.directory: a folder that can never exist (a file in its path) is a problem; one this
    user cannot create or write is noted (the service may run as another user). Either way the
    service would inspect on and drop every image."""
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        report.problems.append(
            f"{report.path}: archive.directory: {directory} cannot be created: {existing} is a file, not a folder"
        )
    elif not os.access(existing, os.W_OK | os.X_OK):
        report.notes.append(f"archive.directory: {existing} is not writable by this user (the service's may differ)")
    else:
        report.notes.append(f"archive.directory: {directory} can be written")


def frame_shape(camera: CameraSection) -> tuple[int, ...]:
    """The shape of one frame in the ring: (h, w) for Mono8, (h, w, c) otherwise."""
    return (camera.height, camera.width) if camera.channels == 1 else (camera.height, camera.width, camera.channels)


def check_model(report: CheckReport, key: str, model: ModelSection, camera: CameraSection) -> None:
    """Preprocessing for the camera's frames, the model loaded, one run on a blank frame."""
    src = report.path
    problems = preprocess_problems(src, key, model.preprocess, camera)
    if problems:
        report.problems.extend(problems)
        return
    try:
        pre = build_preprocessor(model.preprocess, frame_shape(camera), camera.pixel_format)
    except ConfigError as exc:
        report.problems.append(f"{src}: {key}.preprocess: {exc}")
        return
    if pre.fallback:
        report.notes.append(f"{key}.preprocess.kernel = 'auto': numpy path here ({pre.fallback})")
    elif pre.compiled:
        report.notes.append(f"{key}.preprocess: one compiled call per frame (numba {_version('numba')})")
    if model.backend == "tensorrt" and importlib.util.find_spec("tensorrt") is None:
        report.problems.extend(engine_file_problems(src, key, model.path))
        report.problems.extend(engine_key_problems(src, key, model))
        report.notes.append(
            f"{key} {model.id!r}: TensorRT is not installed here: {model.path} was only checked to be a readable "
            "binary file; run check-config on the Jetson to load it and check its inputs and outputs"
        )
        return
    run_once(report, key, model, camera, pre)


def preprocess_problems(src: Path, key: str, pre: PreprocessSection, camera: CameraSection) -> list[str]:
    """Preprocessing settings the camera's frames cannot satisfy, each naming its key."""
    problems = []
    if pre.color in ("gray", "gray3") and camera.channels != 1:
        problems.append(
            f"{src}: {key}.preprocess.color: {pre.color!r} needs camera.pixel_format = 'Mono8', the camera gives "
            f"{camera.pixel_format!r} (set color = 'rgb' or 'bgr', or change the pixel format)"
        )
    if pre.interpolation == "area":
        _, _, w, h = pre.roi if pre.roi is not None else (0, 0, camera.width, camera.height)
        out_w, out_h = pre.resize if pre.resize is not None else (w, h)
        if w % out_w or h % out_h:
            what = "preprocess.roi" if pre.roi is not None else "camera frame"
            problems.append(
                f"{src}: {key}.preprocess.resize: interpolation = 'area' needs the {what} ({w}x{h}) to be a whole "
                f"multiple of resize ({out_w}x{out_h}); use interpolation = 'bilinear', or change resize or roi"
            )
    return problems


def run_once(report: CheckReport, key: str, model: ModelSection, camera: CameraSection, pre: Preprocessor) -> None:
    """Load *model* as ``run`` does, preprocess a blank frame into it, infer once, classify."""
    from linegate.engine import create_engine

    src, spec = report.path, pre.spec
    try:
        engine = create_engine(model, spec.shape, spec.dtype)
        engine.load()
    except EngineError as exc:
        report.problems.append(f"{src}: {key}.path: {exc}{layout_hint(key, model, camera)}")
        return
    try:
        pre(np.zeros(frame_shape(camera), dtype=np.uint8), engine.input)
        output = engine.infer()
        report_output(report, key, model, spec.shape, spec.dtype, output)
    except Exception as exc:  # whatever the backend raises: one line, not a traceback
        report.problems.append(f"{src}: {key}.path: loads, but one run on a blank frame fails: {exc}")
    else:
        if engine.max_batch > 1:
            report_batching(report, key, model, engine)
        if engine.parallel > 1:
            report_parallel(report, key, engine)
    finally:
        engine.close()


def report_batching(report: CheckReport, key: str, model: ModelSection, engine: Engine) -> None:
    """``max_batch`` > 1: one batch of that many blank frames must run; say how batches run."""
    rows = engine.max_batch
    try:
        out = engine.infer_batch(rows)
    except Exception as exc:  # whatever the backend raises: one line, not a traceback
        report.problems.append(f"{report.path}: {key}.max_batch = {rows}: a batch of {rows} blank frames fails: {exc}")
        return
    if model.batch_sessions:
        each = engine.settings.get("batch_session_threads")
        how = f"{rows} one-frame sessions side by side, {each} thread{'s' if each != 1 else ''} each"
    else:
        how = "one run over the model's batch dimension"
    report.notes.append(f"{key}.max_batch = {rows}: a backlog is decided up to {rows} frames at a time ({how}); "
                        f"a batch of {rows} blank frames runs ({len(out)} outputs)")  # fmt: skip


def report_parallel(report: CheckReport, key: str, engine: Engine) -> None:
    """``parallel`` > 1 (as set, or as "auto" decided at load): each one-frame session must run a
    blank frame; say how many there are and how many threads each has."""
    runs = engine.frame_runs()
    for i, run in enumerate(runs):
        try:
            run.input[...] = engine.input
            run.run()
        except Exception as exc:  # whatever the backend raises: one line, not a traceback
            report.problems.append(f"{report.path}: {key}.parallel = {engine.parallel}: session {i} fails on a "
                                   f"blank frame: {exc}")  # fmt: skip
            return
    each = engine.settings.get("parallel_threads")
    how = "as set" if isinstance(engine.cfg.parallel, int) else "auto: a model of 2 ms or more a run"
    report.notes.append(f"{key}.parallel = {len(runs)} ({how}): under a backlog up to {len(runs)} frames decided at "
                        f"once, each on a one-frame session of {each} thread{'s' if each != 1 else ''}; each session "
                        "runs a blank frame")  # fmt: skip


def report_output(
    report: CheckReport, key: str, model: ModelSection, shape: tuple[int, ...], dtype: np.dtype[np.floating],
    output: npt.NDArray[np.floating],
) -> None:
    """The model's output on a blank frame must fit the postprocessing: size, finite, 0..1 if probabilities."""
    from linegate.vision.postprocess import Classifier

    src, post = report.path, model.postprocess
    scores = output.astype(np.float64).reshape(-1)
    try:
        decision = Classifier(post)(output)
    except ValueError as exc:
        report.problems.append(f"{src}: {key}.postprocess.classes: {exc} ({model.path})")
        return
    if not np.isfinite(scores).all():
        report.problems.append(f"{src}: {key}.path: the model's output on a blank frame is not finite: {scores}")
    elif post.scores == "probabilities" and (scores.min() < -1e-3 or scores.max() > 1 + 1e-3):
        report.problems.append(
            f"{src}: {key}.postprocess.scores: 'probabilities', but the model's output on a blank frame is "
            f"{np.round(scores, 3).tolist()}, outside 0..1 (logits? set scores = 'logits')"
        )
    else:
        report.notes.append(
            f"{key} {model.id!r}: {model.path} loads ({model.backend}), input {list(shape)} {dtype}, "
            f"{scores.size} scores for {list(post.classes)}; a blank frame gives {decision.verdict.value} "
            f"({decision.label} {decision.score:.2f})"
        )


def layout_hint(key: str, model: ModelSection, camera: CameraSection) -> str:
    """If the ONNX model loads with the other channel layout, say so (the usual shape mismatch)."""
    from linegate.engine import create_engine

    if model.backend != "onnxruntime":
        return ""
    other = "NHWC" if model.preprocess.layout == "NCHW" else "NCHW"
    swapped = model.model_copy(
        update={"preprocess": model.preprocess.model_copy(update={"layout": other}), "parallel": 1}
    )
    try:
        spec = plan_preprocess(swapped.preprocess, frame_shape(camera), camera.pixel_format).spec
        engine = create_engine(swapped, spec.shape, spec.dtype)
        engine.load()
        engine.close()
    except (EngineError, ConfigError):
        return ""
    return f" (the model takes {other} input: set {key}.preprocess.layout = {other!r})"


def engine_key_problems(src: Path, key: str, model: ModelSection) -> list[str]:
    """Without TensorRT: the engine's sidecar key, which the tensorrt backend checks before loading."""
    from linegate.engine.engine_key import key_path

    sidecar = key_path(model.path)
    if model.engine_key == "optional" or sidecar.is_file():
        return []
    return [
        f"{src}: {key}.path: no engine key {sidecar.name} beside {model.path}: the tensorrt backend refuses the "
        f"engine; build it on the device with `linegate build-engine MODEL.onnx --output {model.path}` (or set "
        f"{key}.engine_key = 'optional')"
    ]


def engine_file_problems(src: Path, key: str, path: Path) -> list[str]:
    """What can be said of a TensorRT engine file without TensorRT: readable, binary, not ONNX."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError as exc:
        return [f"{src}: {key}.path: cannot read {path}: {exc.strerror}"]
    if not head:
        return [f"{src}: {key}.path: {path} is empty, not a serialized TensorRT engine"]
    if path.suffix.lower() == ".onnx":
        return [
            f"{src}: {key}.path: {path} is an ONNX model, not a TensorRT engine: set {key}.backend = "
            "'onnxruntime', or build an engine from it with `linegate build-engine` on the Jetson (engines/README.md)"
        ]
    if b"\0" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            return []
        return [f"{src}: {key}.path: {path} is a text file, not a serialized TensorRT engine"]
    return []


# --- --probe -------------------------------------------------------------------------------------


def probe_camera(report: CheckReport, camera: CameraSection) -> None:
    """Open and configure the camera in a child process (Harvesters can block; it is killed after
    CAMERA_PROBE_S), then close it."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_open_camera, args=(camera, sender), name="linegate-camera-probe", daemon=True)
    proc.start()
    sender.close()
    try:
        if not receiver.poll(CAMERA_PROBE_S):
            report.unreachable.append(
                f"{report.path}: camera: not open within {CAMERA_PROBE_S:.0f} s (producer {camera.cti}); check the "
                "camera's power, cable and link LED, and that no other program (a running linegate) holds it"
            )
            return
        try:
            kind, message = receiver.recv()
        except EOFError:
            kind, message = "down", "the probe process died before it could say why"
    finally:
        receiver.close()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if kind == "ok":
        report.notes.append(f"camera: opened {message}")
    elif kind == "config":
        report.problems.append(f"{report.path}: {message}")
    else:
        report.unreachable.append(f"{report.path}: camera: {message}")


def _open_camera(camera: CameraSection, conn: Connection) -> None:
    """Child process: open, configure and close the camera; send ``(kind, message)`` back."""
    try:
        from linegate.camera.genicam import GenICamCamera

        cam = GenICamCamera(camera)
        try:
            info = cam.open()
        finally:
            cam.close()
        conn.send(("ok", f"{info.vendor} {info.model} (serial {info.serial_number!r}) as {camera.width}x"
                         f"{camera.height} {camera.pixel_format} through {info.producer}"))
    except ConfigError as exc:  # the camera refused a configured setting
        conn.send(("config", str(exc)))
    except Exception as exc:
        conn.send(("down", str(exc) or type(exc).__name__))
    finally:
        conn.close()


def probe_plc(report: CheckReport, cfg: Config) -> None:
    """Connect to the PLC and read what linegate will use (never write), each step bounded."""
    from linegate.plc.interface import PLC_OFFSET, PLC_WORDS
    from linegate.plc.link import Flag, PlcLinkError, PlcRefusedError, tcp_reachable
    from linegate.plc.links import create_link

    plc, link_cfg = cfg.plc, cfg.plc.link
    assert link_cfg is not None
    key, peer = f"plc.{plc.protocol}", f"{link_cfg.host}:{link_cfg.port}"
    if not tcp_reachable(link_cfg.host, link_cfg.port, PLC_CONNECT_S):
        report.unreachable.append(
            f"{report.path}: {key}.host, {key}.port: nothing accepts a TCP connection at {peer} within "
            f"{PLC_CONNECT_S:.0f} s (PLC off, wrong address or port, or a firewall)"
        )
        return
    link = create_link(plc)
    try:
        link.connect()
        if plc.mode == "handshake":
            link.read_words(PLC_OFFSET, PLC_WORDS)
            what = f"read the PLC block (interface words {PLC_OFFSET}..{PLC_OFFSET + PLC_WORDS - 1})"
        else:
            flags: list[Flag] = [flag for flag in ("reject", "fault") if link.has_flag(flag)]
            for flag in flags:
                link.read_flag(flag)
            what = f"read the {' and '.join(flags)} output{'s' if len(flags) > 1 else ''}"
    except PlcRefusedError as exc:
        report.problems.append(f"{report.path}: {key}: the PLC refuses linegate's addresses: {exc}")
        return
    except PlcLinkError as exc:
        report.unreachable.append(
            f"{report.path}: {key}: {exc} (within {key}.timeout_ms = {link_cfg.timeout_ms:g} ms)"
        )
        return
    finally:
        link.close()
    report.notes.append(f"plc: connected to {peer} ({plc.protocol}, {plc.mode} mode) and {what}")
