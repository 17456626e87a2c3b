"""Board readings for the metrics endpoint: temperatures, GPU load and the Jetson power mode.

Read from plain files under an injectable root (``/`` on the board, a fake tree in tests) at
scrape time, never per frame. A file that is absent or unreadable is left out, never an error:
an x86 host simply has no GPU load or power mode. The power mode comes from nvpmodel's own files,
so no process is started: the active mode id from ``var/lib/nvpmodel/status`` (``pmode:0002``;
absent until a mode was set, then the configuration's default applies) and its name from
``etc/nvpmodel.conf`` (``< POWER_MODEL ID=2 NAME=MAXN_SUPER >``, ``< PM_CONFIG DEFAULT=2 >``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

THERMAL_DIR = "sys/class/thermal"
GPU_LOAD_FILES = ("sys/devices/platform/gpu.0/load", "sys/devices/gpu.0/load")
"""JetPack 6 (Orin) first, then older L4T; the value is per mille (0..1000)."""
NVPMODEL_STATUS = "var/lib/nvpmodel/status"
NVPMODEL_CONF = "etc/nvpmodel.conf"
ABSOLUTE_ZERO_MILLI_C = -273_150

_STATUS = re.compile(r"pmode:\s*(\d+)")
_MODEL = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)")
_DEFAULT = re.compile(r"<\s*PM_CONFIG\s+DEFAULT=(\d+)")


@dataclass(frozen=True)
class ThermalZone:
    """One ``thermal_zoneN``: its directory name, its ``type`` (e.g. ``cpu-thermal``) and reading."""

    zone: str
    type: str
    celsius: float


@dataclass(frozen=True)
class PowerMode:
    """The nvpmodel power mode: its id and name ("" when the configuration does not name it)."""

    id: int
    name: str


@dataclass(frozen=True)
class BoardReading:
    """What could be read at one scrape; empty fields were not readable."""

    zones: tuple[ThermalZone, ...] = ()
    gpu_load: float | None = None
    """0..1 (the GPU's busy share over its last sampling window)."""
    power_mode: PowerMode | None = None


def parse_millicelsius(text: str) -> float | None:
    """A thermal zone's ``temp`` file (millidegrees Celsius) in degrees; None if not a reading."""
    try:
        milli = int(text.strip())
    except ValueError:
        return None
    return None if milli < ABSOLUTE_ZERO_MILLI_C else milli / 1000


def parse_gpu_load(text: str) -> float | None:
    """The GPU ``load`` file (per mille) as a ratio 0..1; None if not a reading."""
    try:
        per_mille = int(text.strip())
    except ValueError:
        return None
    return min(max(per_mille, 0), 1000) / 1000


def parse_power_mode(status: str | None, conf: str | None) -> PowerMode | None:
    """The active mode: the id in nvpmodel's status file, else the configuration's default; named
    from the configuration. None when neither file says which mode is active."""
    found = _STATUS.search(status) if status else None
    mode_id = int(found.group(1)) if found else None
    if mode_id is None and conf:
        default = _DEFAULT.search(conf)
        mode_id = int(default.group(1)) if default else None
    if mode_id is None:
        return None
    names = {int(i): name for i, name in _MODEL.findall(conf or "")}
    return PowerMode(mode_id, names.get(mode_id, ""))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):  # absent, no permission, or a sensor that refuses (EINVAL)
        return None


class BoardStats:
    """Reads a :class:`BoardReading` from the files under *root*."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root

    def read(self) -> BoardReading:
        return BoardReading(self._zones(), self._gpu_load(), self._power_mode())

    def _zones(self) -> tuple[ThermalZone, ...]:
        try:
            dirs = sorted(self.root.joinpath(THERMAL_DIR).glob("thermal_zone*"), key=_zone_order)
        except OSError:
            return ()
        zones = []
        for d in dirs:
            kind, temp = _read(d / "type"), _read(d / "temp")
            celsius = parse_millicelsius(temp) if temp is not None else None
            if kind is not None and celsius is not None:
                zones.append(ThermalZone(d.name, kind.strip(), celsius))
        return tuple(zones)

    def _gpu_load(self) -> float | None:
        for name in GPU_LOAD_FILES:
            text = _read(self.root / name)
            if text is not None:
                return parse_gpu_load(text)
        return None

    def _power_mode(self) -> PowerMode | None:
        return parse_power_mode(_read(self.root / NVPMODEL_STATUS), _read(self.root / NVPMODEL_CONF))


def _zone_order(path: Path) -> tuple[int, str]:
    """thermal_zone2 before thermal_zone10."""
    digits = path.name.removeprefix("thermal_zone")
    return (int(digits), "") if digits.isdigit() else (1 << 30, path.name)


__all__ = ["BoardReading", "BoardStats", "PowerMode", "ThermalZone", "parse_gpu_load", "parse_millicelsius",
           "parse_power_mode"]
