"""GenICam cameras through Harvesters over a GenTL producer (the only module importing harvesters).

One long-lived image acquirer per camera: re-creating acquirers leaks memory in Harvesters, so a
restart is ``stop()``/``start()``, not ``close()``/``open()``. ``fetch`` uses short timeouts because
Harvesters holds the GIL while it waits.

Harvesters' fetch waits for a buffer in slices of half its timeout, not 1 ms (see
:mod:`linegate.camera.event_wait`).

Every frame the camera delivers reaches the callback as a :class:`CameraFrame`, also one that cannot
be inspected (``defect`` set, see :mod:`linegate.camera.defects`). Harvesters 1.4.3's ``fetch()``
re-queues a buffer the producer flagged incomplete and waits on for the next one, with its timeout
started afresh: the frame would vanish (a frame-id gap) and a stream of incomplete buffers would
block ``fetch`` for good. Its ``INCOMPLETE_BUFFER`` callback (emitted after the re-queue) raises
here instead, so ``fetch`` returns and the frame gets its fail-safe verdict (its id is not readable
then: the acquisition side takes it as the next id).
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from genicam import gentl
from harvesters.core import Callback, Harvester, ImageAcquirer

from linegate.camera.defects import UNKNOWN_BYTES, DefectKind, FrameDefect, check_payload
from linegate.camera.event_wait import event_wait_ms
from linegate.config.schema import BUILTIN_VIKY, CameraSection, NodeValue
from linegate.errors import CameraError, CameraSettingError


@dataclass(frozen=True)
class CameraFrame:
    """One frame as the camera delivered it, whole or not."""

    pixels: npt.NDArray[np.uint8] | None
    """Shaped ``(height, width)`` or ``(height, width, channels)``; a view of the camera's buffer, valid
    only during the callback. None when ``defect`` is set."""
    frame_id: int | None
    """The camera's frame id; None when the buffer was discarded before its id could be read."""
    t_receipt_ns: int
    camera_ns: int | None
    defect: FrameDefect | None = None
    """Why the frame cannot be inspected; ``str(defect)`` is its text (e.g. ``incomplete``)."""


FrameCallback = Callable[[CameraFrame], None]


class _IncompleteBuffer(Exception):
    """Raised out of Harvesters' fetch when it discards a buffer the producer flagged incomplete."""


class _RaiseOnIncomplete(Callback):  # type: ignore[misc]
    def emit(self, context: object = None) -> None:
        raise _IncompleteBuffer


# Typed config keys -> GenICam SFNC node names, in the order they must be applied.
_TYPED_NODES: tuple[tuple[str, str], ...] = (
    ("pixel_format", "PixelFormat"),
    ("width", "Width"),
    ("height", "Height"),
    ("trigger_source", "TriggerSource"),
    ("trigger_mode", "TriggerMode"),
    ("exposure_us", "ExposureTime"),
    ("gain_db", "Gain"),
    ("frame_rate_hz", "AcquisitionFrameRate"),
)
_GEOMETRY_NODES = ("pixel_format", "width", "height")


def producer_path(cti: str) -> str:
    """Resolve ``builtin:viky`` to the simulated producer inside the genicam package."""
    if cti == BUILTIN_VIKY:
        import genicam

        return os.path.join(os.path.dirname(genicam.__file__), "viky.cti")
    return cti


@dataclass
class CameraInfo:
    """What was opened and how it was configured."""

    producer: str
    vendor: str
    model: str
    serial_number: str
    applied: dict[str, NodeValue] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    """Typed settings whose node the camera does not have (not an error: logged)."""


class GenICamCamera:
    """Open, configure, stream and close one camera; ``fetch`` hands frames to a callback."""

    def __init__(self, cfg: CameraSection) -> None:
        self.cfg = cfg
        self._harvester: Harvester | None = None
        self._acquirer: ImageAcquirer | None = None
        self._fetch_timeout_ms = 0
        """The fetch timeout Harvesters is set for (0: not set)."""
        self.timeouts = 0
        self.defective = 0
        channels = cfg.channels
        self.shape: tuple[int, ...] = (cfg.height, cfg.width) if channels == 1 else (cfg.height, cfg.width, channels)
        self._timestamps_available = True

    def open(self) -> CameraInfo:
        """Load the producer, find the device, create the acquirer and apply settings."""
        path = producer_path(self.cfg.cti)
        h = Harvester()
        self._harvester = h
        try:
            h.add_file(path, check_existence=True, check_validity=True)
        except (FileNotFoundError, OSError) as exc:
            raise CameraError(f"camera.cti: cannot load GenTL producer {path}: {exc}") from exc
        h.update()
        if not h.device_info_list:
            raise CameraError(f"camera.cti: producer {path} reports no devices")
        key, where = self._search_key()
        previous = signal.getsignal(signal.SIGINT)
        try:
            ia = h.create(key)
        except (ValueError, IndexError) as exc:
            found = [d.property_dict.get("serial_number") for d in h.device_info_list]
            raise CameraError(f"{where}: no unique matching device (serial numbers found: {found})") from exc
        except gentl.GenericException as exc:
            raise CameraError(f"{where}: cannot open device: {exc}") from exc
        finally:
            # Harvester.create() installs its own SIGINT handler (upstream issue 463).
            signal.signal(signal.SIGINT, previous)
        self._acquirer = ia
        self._fetch_timeout_ms = 0  # Harvesters' own defaults until set
        self._wait_in_slices_for(self.cfg.fetch_timeout_ms)
        ia.add_callback(ImageAcquirer.Events.INCOMPLETE_BUFFER, _RaiseOnIncomplete())
        info = ia.device.module
        camera = CameraInfo(
            producer=path,
            vendor=str(_safe(lambda: info.vendor, "")),
            model=str(_safe(lambda: info.model, "")),
            serial_number=str(_safe(lambda: info.serial_number, "")),
        )
        self._apply_settings(ia, camera)
        self._verify_geometry(ia)
        ia.num_buffers = self.cfg.buffers
        return camera

    def _search_key(self) -> tuple[int | dict[str, str], str]:
        dev, where = self.cfg.device, self.cfg.key("device")
        if dev.serial_number is not None:
            return {"serial_number": dev.serial_number}, f"{where}.serial_number={dev.serial_number!r}"
        if dev.user_id is not None:
            return {"user_defined_name": dev.user_id}, f"{where}.user_id={dev.user_id!r}"
        assert dev.index is not None
        return dev.index, f"{where}.index={dev.index}"

    def _apply_settings(self, ia: ImageAcquirer, info: CameraInfo) -> None:
        node_map = ia.remote_device.node_map
        for key, node_name in _TYPED_NODES:
            value = getattr(self.cfg, key)
            if value is None:
                continue
            if not node_map.has_node(node_name):
                if key in _GEOMETRY_NODES:
                    raise CameraSettingError(f"{self.cfg.key(key)}: the camera has no {node_name} node")
                info.skipped.append(key)
                continue
            if key == "frame_rate_hz" and node_map.has_node("AcquisitionFrameRateEnable"):
                _set(node_map, "AcquisitionFrameRateEnable", True, "camera.frame_rate_hz")
            _set(node_map, node_name, value, self.cfg.key(key))
            info.applied[node_name] = value
        for name, value in self.cfg.nodes.items():
            if not node_map.has_node(name):
                raise CameraSettingError(f"camera.nodes.{name}: the camera has no such node")
            _set(node_map, name, value, f"camera.nodes.{name}")
            info.applied[name] = value

    def _verify_geometry(self, ia: ImageAcquirer) -> None:
        node_map = ia.remote_device.node_map
        actual = (node_map.get_node("Width").value, node_map.get_node("Height").value)
        fmt = node_map.get_node("PixelFormat").value
        if actual != (self.cfg.width, self.cfg.height) or fmt != self.cfg.pixel_format:
            raise CameraSettingError(
                f"camera: asked for {self.cfg.width}x{self.cfg.height} {self.cfg.pixel_format}, "
                f"camera reports {actual[0]}x{actual[1]} {fmt}"
            )

    def start(self) -> None:
        self._require().start()

    def stop(self) -> None:
        if self._acquirer is not None and self._acquirer.is_acquiring():
            self._acquirer.stop()

    def fetch(self, on_frame: FrameCallback, timeout_s: float | None = None) -> bool:
        """Wait *timeout_s* (and up to one event wait more:
        :func:`linegate.camera.event_wait.longest_fetch_ms`) for one frame
        and pass it to *on_frame* while the buffer is held.

        Returns False on timeout (counted in ``timeouts``). The buffer is re-queued when the
        callback returns, so the callback must copy what it keeps. A frame that cannot be inspected
        is handed over too, with ``defect`` set (counted in ``defective``); it never raises.
        """
        ia = self._require()
        timeout = self.cfg.fetch_timeout_ms / 1000 if timeout_s is None else timeout_s
        self._wait_in_slices_for(self.cfg.fetch_timeout_ms if timeout_s is None else math.ceil(timeout * 1000))
        try:
            try:
                buffer = ia.fetch(timeout=timeout)
            except _IncompleteBuffer:  # already re-queued by Harvesters
                self._deliver_unread(on_frame, DefectKind.INCOMPLETE)
                return True
            except ValueError as exc:  # Harvesters could not map the payload (e.g. a part larger than the buffer)
                raise CameraError(f"camera: unreadable buffer: {exc}") from exc
            if buffer is None:  # Harvesters could not read the buffer's information and re-queued it
                self._deliver_unread(on_frame, DefectKind.NO_IMAGE)
                return True
            with buffer:
                on_frame(self._frame(buffer, time.monotonic_ns()))
        except gentl.TimeoutException:
            self.timeouts += 1
            return False
        except gentl.GenericException as exc:
            raise CameraError(f"camera: fetch failed: {type(exc).__name__}: {exc}") from exc
        return True

    def _wait_in_slices_for(self, timeout_ms: int) -> None:
        """Harvesters' fetch timeout and its event-wait slice for fetches of *timeout_ms*.

        Set in the order that keeps the slice below the timeout, of which Harvesters' setters warn.
        """
        if timeout_ms == self._fetch_timeout_ms:
            return
        ia = self._require()
        grows = timeout_ms > self._fetch_timeout_ms
        if grows:
            ia.timeout_period_on_client_fetch_call = timeout_ms / 1000
        ia.timeout_period_on_update_event_data_call = event_wait_ms(timeout_ms)
        if not grows:
            ia.timeout_period_on_client_fetch_call = timeout_ms / 1000
        self._fetch_timeout_ms = timeout_ms

    def _frame(self, buffer: Any, t_receipt: int) -> CameraFrame:
        """The thin Harvesters-facing part: read the buffer, let :func:`check_payload` decide."""
        module = buffer.module
        frame_id = int(module.frame_id)
        # Harvesters 1.4.3 hands over complete buffers only; checked again so that does not matter.
        incomplete = not _safe(module.is_complete, False)
        payload = buffer.payload
        components = payload.components if payload is not None else []
        data = components[0].data if components else None
        pixels, defect = check_payload(data, self.shape, incomplete=incomplete)
        if defect is not None:
            self.defective += 1
        return CameraFrame(pixels, frame_id, t_receipt, self._camera_timestamp(buffer), defect)

    def _deliver_unread(self, on_frame: FrameCallback, kind: DefectKind) -> None:
        self.defective += 1
        bytes_ = UNKNOWN_BYTES if kind == DefectKind.INCOMPLETE else 0
        defect = FrameDefect(kind, bytes_, math.prod(self.shape))
        on_frame(CameraFrame(None, None, time.monotonic_ns(), None, defect))

    def _camera_timestamp(self, buffer: Any) -> int | None:
        if not self._timestamps_available:
            return None
        try:
            return int(buffer.module.timestamp_ns)
        except gentl.GenericException:
            self._timestamps_available = False  # e.g. Viky: NotAvailable on every buffer
            return None

    @property
    def is_open(self) -> bool:
        return self._acquirer is not None

    def abort(self) -> None:
        """Destroy the acquirer without stopping it first, as a lost device leaves it (fault drills)."""
        if self._acquirer is not None:
            acquirer, self._acquirer = self._acquirer, None
            _safe(acquirer.destroy, None)
        if self._harvester is not None:
            _safe(self._harvester.reset, None)
            self._harvester = None

    def close(self) -> None:
        """Stop and destroy the acquirer and release the producer; safe to call twice."""
        if self._acquirer is not None:
            try:
                self.stop()
            finally:
                self._acquirer.destroy()
                self._acquirer = None
        if self._harvester is not None:
            self._harvester.reset()
            self._harvester = None

    def _require(self) -> ImageAcquirer:
        if self._acquirer is None:
            raise CameraError("camera: not open")
        return self._acquirer

    def __enter__(self) -> GenICamCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _set(node_map: Any, name: str, value: NodeValue, key: str) -> None:
    node = node_map.get_node(name)
    try:
        node.value = value
    except Exception as exc:  # genapi raises OutOfRange/InvalidArgument/AccessException, all worth a clear message
        limits = ""
        lo, hi = _safe(lambda: node.min, None), _safe(lambda: node.max, None)
        if lo is not None and hi is not None:
            limits = f" (allowed {lo}..{hi})"
        symbolics = _safe(lambda: node.symbolics, None)
        if symbolics:
            limits = f" (allowed {list(symbolics)})"
        raise CameraSettingError(f"{key}: camera refused {name}={value!r}{limits}: {type(exc).__name__}") from exc


def _safe(read: Callable[[], Any], default: Any) -> Any:
    try:
        return read()
    except Exception:
        return default
