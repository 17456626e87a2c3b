"""Several cameras in one linegate: each camera's configuration (its "lane") and the checks that
keep cameras apart.

A lane is one camera with its own acquisition worker, frame ring and PLC worker (its own link
to the PLC, its own outputs or handshake block); the one inference worker decides the frames of
every lane. A lane's configuration is the whole configuration with ``[camera]`` and ``[plc]``
replaced by that camera's: ``[camera]`` with the entry's device (and exposure, gain), ``[plc]``
with the entry's ``plc`` keys merged in. Without ``[[cameras]]`` there is one lane, the
configuration itself, named after the instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from linegate.config.schema import CameraEntry, Config, PlcSection

MAX_CAMERAS = 8


@dataclass(frozen=True)
class Lane:
    """One camera and the configuration its acquisition and PLC workers run with."""

    index: int
    name: str
    cfg: Config


def _given(section: BaseModel) -> dict[str, Any]:
    """The keys of an overrides section that are set."""
    return {k: v for k, v in section.model_dump().items() if v is not None}


def lane_config(cfg: Config, entry: CameraEntry, index: int = 0) -> Config:
    """*entry* (``cameras.<index>``)'s camera: ``[camera]`` with its device, exposure and gain (an
    error about those names the entry's key); ``[plc]`` with its keys."""
    settings = {"device": entry.device, "exposure_us": entry.exposure_us, "gain_db": entry.gain_db}
    own = {k: v for k, v in settings.items() if v is not None}
    camera = cfg.camera.model_copy(update=own)
    camera._keys = {k: f"cameras.{index}.{k}" for k in own}
    over = entry.plc
    plc = cfg.plc.model_dump()
    if over.fire_delay_ms is not None:
        plc["fire_delay_ms"] = over.fire_delay_ms
    for section in ("modbus", "s7", "tracking"):
        if plc.get(section) is not None:
            plc[section] = {**plc[section], **_given(getattr(over, section))}
    try:
        merged = PlcSection.model_validate(plc)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"cameras ({entry.name}): plc.{key}: {first['msg']}") from None
    return cfg.model_copy(update={"camera": camera, "plc": merged, "cameras": []})


def lanes_of(cfg: Config) -> list[Lane]:
    """Every camera of *cfg* with its configuration, in ``[[cameras]]`` order."""
    if not cfg.cameras:
        return [Lane(0, cfg.instance.name, cfg)]
    return [Lane(i, entry.name, lane_config(cfg, entry, i)) for i, entry in enumerate(cfg.cameras)]


def check_cameras(cfg: Config) -> None:
    """Raise ValueError naming the keys if the cameras are not kept apart: names and devices once
    each; each camera its own reject and fault outputs, part id register and handshake block."""
    entries = cfg.cameras
    if not entries:
        return
    if len(entries) > MAX_CAMERAS:
        raise ValueError(f"cameras: at most {MAX_CAMERAS} cameras in one linegate (got {len(entries)})")
    if "device" in cfg.camera.model_fields_set:
        raise ValueError("camera.device: with [[cameras]] each camera names its own device (cameras.N.device)")
    if cfg.recipes:
        raise ValueError(
            "recipes: with [[cameras]] one model decides every camera; recipes are not supported there yet"
        )
    _apart("name", [(i, e.name, 1) for i, e in enumerate(entries)])
    _apart("device", [(i, e.device.model_dump_json(exclude_none=True), 1) for i, e in enumerate(entries)])
    plcs = [lane_config(cfg, entry, i).plc for i, entry in enumerate(entries)]
    for key, spans in _plc_spans(cfg.plc, plcs).items():
        _apart(key, spans)


def _apart(key: str, spans: list[tuple[int, Any, int]]) -> None:
    """*spans*: ``(camera, start, length)``; a start is a number (a range of *length* from it), a
    tuple ending in one (the same within the tuple's other parts), any other value (equal or not),
    or None (not used). Two cameras' spans must not meet."""
    for a, (i, start_i, len_i) in enumerate(spans):
        for j, start_j, len_j in spans[a + 1 :]:
            if start_i is None or start_j is None:
                continue
            if _meet(start_i, len_i, start_j, len_j):
                shown = _shown(start_i) if start_i == start_j else f"{_shown(start_i)}, {_shown(start_j)}"
                raise ValueError(f"cameras.{i} and cameras.{j} share {key} ({shown}): give each camera its own")


def _meet(a: Any, len_a: int, b: Any, len_b: int) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return a[:-1] == b[:-1] and _meet(a[-1], len_a, b[-1], len_b)
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool):
        return a < b + len_b and b < a + len_a
    return bool(a == b)


def _shown(value: Any) -> str:
    """An address as the error names it, without the PLC (host, port) it is on: ``12``, ``100/3`` (DB/byte)."""
    last = value[-1] if isinstance(value, tuple) else value
    return "/".join(map(str, last)) if isinstance(last, tuple) else str(last)


def _plc_spans(plc: PlcSection, lanes: list[PlcSection]) -> dict[str, list[tuple[int, Any, int]]]:
    """Per PLC key, each camera's address and how far it reaches."""
    block = plc.mode == "handshake" or plc.tracking.by == "encoder"
    out: dict[str, list[tuple[int, Any, int]]] = {}
    # Addresses clash only on the same PLC: each is keyed by the PLC's host and port first.
    if plc.protocol == "modbus":
        links = [(i, (m.host, m.port, m.device_id), m) for i, p in enumerate(lanes) if (m := p.modbus) is not None]
        if plc.mode == "pulse":
            out["plc.modbus.reject_coil"] = [(i, _at(at, m.reject_coil), 1) for i, at, m in links]
            out["plc.modbus.fault_coil"] = [(i, _at(at, m.fault_coil), 1) for i, at, m in links]
            out["plc.modbus.part_id_register (2 registers)"] = [(i, _at(at, m.part_id_register), 2)
                                                                 for i, at, m in links]  # fmt: skip
        if block:
            out["plc.modbus.register_base (a 32-register block)"] = [(i, _at(at, m.register_base), 32)
                                                                       for i, at, m in links]  # fmt: skip
    else:
        s7 = [(i, (s.host, s.port), s) for i, p in enumerate(lanes) if (s := p.s7) is not None]
        if plc.mode == "pulse":
            out["plc.s7.db/reject_byte"] = [(i, _at(at, _in(s.db, s.reject_byte)), 1) for i, at, s in s7]
            out["plc.s7.db/fault_byte"] = [(i, _at(at, _in(s.db, s.fault_byte)), 1) for i, at, s in s7]
        if block:
            out["plc.s7.db/byte_base (a 64-byte block)"] = [(i, _at(at, (s.db, s.byte_base)), 64) for i, at, s in s7]
    return out


def _at(where: tuple[Any, ...], address: Any) -> tuple[Any, ...] | None:
    """*address* on the PLC *where* (host, port, ...); None when not used."""
    return None if address is None else (*where, address)


def _in(db: int, byte: int | None) -> tuple[int, int] | None:
    """An S7 byte in its data block; None when not used."""
    return None if byte is None else (db, byte)


__all__ = ["MAX_CAMERAS", "Lane", "check_cameras", "lane_config", "lanes_of"]
