"""A plain (non-editable) install, as the runbook does it, carries everything `linegate demo` and the unit need.

The wheel is built from a copy of the checkout and installed into a fresh virtual environment in a
temporary directory; the demo then runs from there. To keep the test quick the new environment
borrows this one's installed dependencies through a .pth line (pip does not install them again);
.ci/run does the full install, dependencies included.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO

SKIP = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.jsonl")


def run(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    # The installed copy alone: a PYTHONPATH pointing at a checkout would shadow it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the checkout with linegate installed from its wheel (not editable)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=SKIP)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", src, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("linegate-*.whl")
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    purelib = Path(run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                       cwd=tmp).stdout.strip())
    borrowed = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (purelib / "borrowed_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(borrowed)))
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps", wheel, cwd=tmp)
    return venv


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CI") == "true", reason="CI runs this check itself, in full (.ci/run, wheel step)")
def test_demo_runs_from_a_wheel_installed_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    """`pip install` of the wheel into a fresh venv, then `linegate demo` from another directory:
    linegate, the demo's config and model all come from that venv, and 300 frames run and reconcile."""
    python = installed / "bin" / "python"
    where = run(python, "-c", "import linegate.demo.runner as r; print(r.__file__); print(r.DEMO_CONFIG)",
                cwd=tmp_path).stdout.split()
    assert all(Path(p).is_relative_to(installed) for p in where), where
    done = run(installed / "bin" / "linegate", "demo", "--max-frames", "300", cwd=tmp_path, timeout=180)
    assert "model demo-ball-zone-v1 (onnxruntime)" in done.stdout
    log = tmp_path / "linegate-demo.jsonl"
    assert sum(json.loads(line)["event"] == "frame" for line in log.read_text().splitlines()) == 300


def test_unit_documentation_is_installed_by_pip(installed: Path) -> None:
    """The unit's Documentation= file is what `pip install` into /opt/linegate/venv puts there: the README."""
    unit = (REPO / "systemd" / "linegate.service").read_text()
    (url,) = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("Documentation=")]
    assert url.startswith("file:///opt/linegate/venv/")
    doc = installed / url.removeprefix("file:///opt/linegate/venv/")
    assert doc.read_text() == (REPO / "README.md").read_text()
    assert "Maintenance runbook" in doc.read_text()
