"""Build steps pyproject.toml cannot express (all metadata lives there).

- The demo's configuration and model are copied from the checkout (``config/demo.toml``,
  ``engines/demo/ball_zone.onnx``) into the wheel as package data under ``linegate/demo/data/``,
  keeping their relative layout, so ``linegate demo`` works from a plain ``pip install``.
- README.md (with the maintenance runbook) is installed as ``<venv>/share/doc/linegate/README.md``,
  the page the systemd unit's ``Documentation=`` names.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DEMO_FILES = ("config/demo.toml", "engines/demo/ball_zone.onnx")
DEMO_DATA = Path("linegate", "demo", "data")


class BuildPyWithDemo(build_py):
    """build_py that also places the demo's files in the built package (not for editable installs:
    those find them in the checkout)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        root = Path(__file__).resolve().parent
        for name in DEMO_FILES:
            target = Path(self.build_lib) / DEMO_DATA / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, target)


setup(
    cmdclass={"build_py": BuildPyWithDemo},
    data_files=[("share/doc/linegate", ["README.md"])],
)
