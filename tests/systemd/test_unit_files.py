"""The systemd unit, sysusers and tmpfiles files: linted by systemd's own tools, offline.

No systemd manager is started and nothing on this machine is changed: `systemd-analyze` reads
the files, and sysusers/tmpfiles run against a temporary --root.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "linegate.service"
TEMPLATE = SYSTEMD / "linegate@.service"
EXEC = "/opt/linegate/venv/bin/linegate"
SECURITY_GOAL = 3.0  # --threshold takes tenths: 30 means 3.0

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def unit_with_runnable_exec(tmp_path: Path, unit_file: Path = UNIT) -> Path:
    """The unit with only ExecStart's path pointed at an executable that exists here.

    `systemd-analyze verify` refuses an ExecStart binary that does not exist, and linegate is not
    installed at /opt/linegate on a test machine; every other line is verified as shipped.
    """
    binary = tmp_path / "bin" / "linegate"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    text = unit_file.read_text()
    assert text.count(EXEC) == 2  # ExecStart= and ExecReload=
    unit = tmp_path / unit_file.name.replace("@.", "@cam1.")  # an instance of the template
    unit.write_text(text.replace(EXEC, str(binary)))
    return unit


def directives(text: str) -> dict[str, list[str]]:
    """Every key=value of a unit file (keys may repeat), comments and sections skipped."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@needs_analyze
@pytest.mark.parametrize("unit_file", [UNIT, TEMPLATE], ids=["linegate.service", "linegate@cam1.service"])
def test_unit_verifies_with_nothing_on_stderr(tmp_path: Path, unit_file: Path) -> None:
    """systemd-analyze verify: exit 0 and no output at all (a misspelled key only warns)."""
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_with_runnable_exec(tmp_path, unit_file))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


@needs_analyze
@pytest.mark.parametrize("unit_file", [UNIT, TEMPLATE], ids=["linegate.service", "linegate@cam1.service"])
def test_security_exposure_is_at_most_the_goal(tmp_path: Path, unit_file: Path) -> None:
    """systemd-analyze security --offline: the exposure score is <= 3.0 (printed)."""
    unit = unit_with_runnable_exec(tmp_path, unit_file)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--threshold={int(SECURITY_GOAL * 10)}", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout + result.stderr)
    assert match, result.stdout[-2000:] + result.stderr
    print(f"systemd-analyze security --offline=true: {match.group(1)}")
    assert float(match.group(1)) <= SECURITY_GOAL and result.returncode == 0


def test_unit_has_what_supervision_needs() -> None:
    """Type=notify with a watchdog, restart policy that never loops on a bad config, ordered stop,
    pinned memory and real-time limits, an unprivileged user, and CUDA-compatible hardening."""
    d = directives(UNIT.read_text())
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["WatchdogSec"] == "20s" and one["Restart"] == "on-failure" and one["RestartSec"]
    assert one["RestartPreventExitStatus"] == "78"
    assert one["StartLimitIntervalSec"] and one["StartLimitBurst"]
    assert one["KillMode"] == "mixed" and one["TimeoutStopSec"] == "30s" and one["TimeoutStartSec"]
    assert one["ExecReload"].startswith(f"{EXEC} reload --config /etc/linegate/linegate.toml")  # waits for the outcome
    assert one["RuntimeDirectory"] == "linegate" and one["RuntimeDirectoryMode"] == "0755"  # linegate status
    assert one["LimitMEMLOCK"] == "infinity" and one["LimitRTPRIO"] == "20"
    assert one["User"] == "linegate" and one["CapabilityBoundingSet"] == "" and one["NoNewPrivileges"] == "yes"
    assert (one["ConfigurationDirectory"], one["StateDirectory"], one["LogsDirectory"]) == ("linegate",) * 3
    assert one["MemoryDenyWriteExecute"] == "no"  # CUDA/TensorRT JIT needs W+X mappings
    assert one["RestrictRealtime"] == "no" and one["PrivateDevices"] == "no" and one["DevicePolicy"] == "closed"
    assert not {"OpenFile", "ExitType", "MemoryKSM", "ReloadSignal"} & set(d)  # directives newer than systemd 249


def test_the_template_is_the_service_but_for_the_instance_name() -> None:
    """linegate@.service (one instance per camera) differs from linegate.service only where it names
    the instance: its config file /etc/linegate/%i.toml and its description; comments aside. Both
    keep the shared runtime directory when stopped (another unit's state file lives there)."""
    def settings(path: Path) -> list[str]:
        return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]

    service, template = settings(UNIT), settings(TEMPLATE)
    instance_lines = [line for line in template if "%i" in line]
    assert instance_lines == [
        "Description=linegate line-side inspection (%i)",
        f"ExecStart={EXEC} run --config /etc/linegate/%i.toml",
        f"ExecReload={EXEC} reload --config /etc/linegate/%i.toml --timeout 25",
    ]
    as_service = [
        line.replace(" (%i)", "").replace("/etc/linegate/%i.toml", "/etc/linegate/linegate.toml") for line in template
    ]
    assert as_service == service
    assert "RuntimeDirectoryPreserve=yes" in service


def test_supervisor_stop_timeout_fits_inside_the_units() -> None:
    """linegate's own stop deadline (supervisor.stop_timeout_ms) ends before systemd's SIGKILL."""
    from linegate.config.schema import SupervisorSection

    d = directives(UNIT.read_text())
    assert SupervisorSection().stop_timeout_ms / 1000 < int(d["TimeoutStopSec"][-1].rstrip("s"))
    assert SupervisorSection().heartbeat_timeout_ms / 1000 < int(d["WatchdogSec"][-1].rstrip("s"))


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers not installed")
def test_sysusers_creates_the_user_in_a_scratch_root(tmp_path: Path) -> None:
    """systemd-sysusers --root=<tmp> accepts the file and creates the linegate user and group there."""
    etc = tmp_path / "etc"
    etc.mkdir()
    for name in ("passwd", "group", "shadow", "gshadow"):
        (etc / name).write_text("")
    (etc / "group").write_text("video:x:44:\nrender:x:105:\n")
    result = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSTEMD / "linegate.sysusers.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^linegate:x:\d+:\d+:", (etc / "passwd").read_text(), re.M)
    groups = (etc / "group").read_text()
    assert re.search(r"^video:x:44:linegate$", groups, re.M) and re.search(r"^render:x:105:linegate$", groups, re.M)


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd-tmpfiles not installed")
def test_tmpfiles_creates_the_engines_folder_in_a_scratch_root(tmp_path: Path) -> None:
    """systemd-tmpfiles --root=<tmp> --create makes /var/lib/linegate/engines (owner resolved in that root)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("linegate:x:990:990::/var/lib/linegate:/usr/sbin/nologin\n")
    (etc / "group").write_text("linegate:x:990:\n")
    result = subprocess.run(
        ["systemd-tmpfiles", f"--root={tmp_path}", "--create", str(SYSTEMD / "linegate.tmpfiles.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    engines = tmp_path / "var" / "lib" / "linegate" / "engines"
    assert engines.is_dir() and oct(engines.stat().st_mode & 0o777) == "0o750"
