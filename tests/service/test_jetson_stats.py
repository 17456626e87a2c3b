"""Board readings from sysfs and nvpmodel's files, on a fake tree of real files under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from linegate.service.jetson_stats import (
    BoardReading,
    BoardStats,
    PowerMode,
    ThermalZone,
    parse_gpu_load,
    parse_millicelsius,
    parse_power_mode,
)

NVPMODEL_CONF = """\
# nvpmodel configuration (abridged)
< POWER_MODEL ID=0 NAME=15W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=25W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=2 NAME=MAXN_SUPER >
CPU_ONLINE CORE_0 1
< PM_CONFIG DEFAULT=2 >
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def orin_tree(root: Path) -> Path:
    """The files an Orin running JetPack 6 has, as far as the metrics read them."""
    write(root, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    write(root, "sys/class/thermal/thermal_zone0/temp", "47250\n")
    write(root, "sys/class/thermal/thermal_zone1/type", "gpu-thermal\n")
    write(root, "sys/class/thermal/thermal_zone1/temp", "45968\n")
    write(root, "sys/class/thermal/thermal_zone10/type", "tj-thermal\n")
    write(root, "sys/class/thermal/thermal_zone10/temp", "48000\n")
    write(root, "sys/devices/platform/gpu.0/load", "372\n")
    write(root, "var/lib/nvpmodel/status", "pmode:0001 fmode:quiet\n")
    write(root, "etc/nvpmodel.conf", NVPMODEL_CONF)
    return root


def test_orin_tree_reads_zones_gpu_load_and_power_mode(tmp_path: Path) -> None:
    """Every zone with its type and degrees (numeric order), the GPU load as a ratio, the active mode by name."""
    reading = BoardStats(orin_tree(tmp_path)).read()
    assert reading == BoardReading(
        zones=(
            ThermalZone("thermal_zone0", "cpu-thermal", 47.25),
            ThermalZone("thermal_zone1", "gpu-thermal", 45.968),
            ThermalZone("thermal_zone10", "tj-thermal", 48.0),
        ),
        gpu_load=0.372,
        power_mode=PowerMode(1, "25W"),
    )


def test_bare_host_reads_nothing(tmp_path: Path) -> None:
    """A root without any of the files gives an empty reading, not an error."""
    assert BoardStats(tmp_path).read() == BoardReading()


def test_older_gpu_path_is_used_when_the_platform_one_is_absent(tmp_path: Path) -> None:
    """/sys/devices/gpu.0/load (older L4T) is read when /sys/devices/platform/gpu.0/load does not exist."""
    write(tmp_path, "sys/devices/gpu.0/load", "1000\n")
    assert BoardStats(tmp_path).read().gpu_load == 1.0


def test_a_zone_that_cannot_be_read_is_left_out(tmp_path: Path) -> None:
    """A zone without a temp file, with garbage in it, or whose temp is a directory (read fails) is skipped."""
    orin_tree(tmp_path)
    write(tmp_path, "sys/class/thermal/thermal_zone2/type", "no-temp\n")
    write(tmp_path, "sys/class/thermal/thermal_zone3/type", "garbage\n")
    write(tmp_path, "sys/class/thermal/thermal_zone3/temp", "n/a\n")
    write(tmp_path, "sys/class/thermal/thermal_zone4/type", "unreadable\n")
    (tmp_path / "sys/class/thermal/thermal_zone4/temp").mkdir()
    zones = BoardStats(tmp_path).read().zones
    assert [z.type for z in zones] == ["cpu-thermal", "gpu-thermal", "tj-thermal"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_file_without_read_permission_is_left_out(tmp_path: Path) -> None:
    """A GPU load file the linegate user may not read is treated as absent."""
    write(tmp_path, "sys/devices/platform/gpu.0/load", "500\n").chmod(0)
    assert BoardStats(tmp_path).read().gpu_load is None


def test_power_mode_without_status_is_the_configured_default() -> None:
    """No status file yet (never switched): the configuration's PM_CONFIG DEFAULT is the active mode."""
    assert parse_power_mode(None, NVPMODEL_CONF) == PowerMode(2, "MAXN_SUPER")


def test_power_mode_without_configuration_has_no_name() -> None:
    """A status file alone gives the id, with an empty name; neither file gives no mode."""
    assert parse_power_mode("pmode:0003\n", None) == PowerMode(3, "")
    assert parse_power_mode(None, None) is None
    assert parse_power_mode("garbage", "# nothing here\n") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("47250\n", 47.25), ("-5000", -5.0), ("0", 0.0), ("", None), ("hot", None), ("-300000", None)],
)
def test_millicelsius(text: str, expected: float | None) -> None:
    """Millidegrees become degrees; text that is not a number, or below absolute zero, is not a reading."""
    assert parse_millicelsius(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("0", 0.0), ("372\n", 0.372), ("1200", 1.0), ("x", None)])
def test_gpu_load(text: str, expected: float | None) -> None:
    """Per mille becomes a ratio, clamped to 1; anything else is not a reading."""
    assert parse_gpu_load(text) == expected
