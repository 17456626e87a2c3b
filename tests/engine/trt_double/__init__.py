"""Choosing TensorRT for a test: the real ``tensorrt`` where it is importable, else the TEST DOUBLE beside this.

The double (``tests/engine/trt_double/tensorrt``) is put on ``sys.path`` only inside
:func:`tensorrt_for_tests`, and removed again with every linegate module that imported it, so tests
that run later in the same session (``check-config`` looks for ``tensorrt``) never see it.

``LINEGATE_TEST_TENSORRT`` picks: ``auto`` (default: real if importable, else the double), ``real``
(fail if TensorRT is not importable) or ``double`` (the double even where TensorRT is installed).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

DOUBLE_ROOT = Path(__file__).resolve().parent
"""The folder holding the ``tensorrt`` test double package."""

DEPENDENTS = ("linegate.engine.trt_backend", "linegate.engine.trt_build")
"""linegate modules that bind ``tensorrt`` at import: dropped with the double."""


def choice() -> str:
    """``"real"`` or ``"double"``: which TensorRT the tests of this session use (decided at collection)."""
    wanted = os.environ.get("LINEGATE_TEST_TENSORRT", "auto")
    if wanted not in ("auto", "real", "double"):
        raise ValueError(f"LINEGATE_TEST_TENSORRT={wanted!r}: expected auto, real or double")
    if wanted == "double":
        return "double"
    real = "tensorrt" in sys.modules and not is_double(sys.modules["tensorrt"])
    real = real or importlib.util.find_spec("tensorrt") is not None
    if wanted == "real" and not real:
        raise RuntimeError("LINEGATE_TEST_TENSORRT=real, but tensorrt is not importable here")
    return "real" if real else "double"


def is_double(module: ModuleType) -> bool:
    return bool(getattr(module, "IS_LINEGATE_TEST_DOUBLE", False))


@contextmanager
def tensorrt_for_tests(which: str) -> Iterator[ModuleType]:
    """Yield the ``tensorrt`` module to test with; with the double, undo every trace of it afterwards."""
    if which == "real":
        yield importlib.import_module("tensorrt")
        return
    saved = {name: sys.modules.pop(name) for name in ("tensorrt", *DEPENDENTS) if name in sys.modules}
    forget_dependents()
    sys.path.insert(0, str(DOUBLE_ROOT))
    try:
        module = importlib.import_module("tensorrt")
        assert is_double(module), f"expected the test double, imported {module.__file__}"
        yield module
    finally:
        sys.path.remove(str(DOUBLE_ROOT))
        for name in ("tensorrt", *DEPENDENTS):
            sys.modules.pop(name, None)
        forget_dependents()
        sys.modules.update(saved)
        for name, module in saved.items():
            if name in DEPENDENTS:
                setattr(sys.modules[name.rpartition(".")[0]], name.rpartition(".")[2], module)


def forget_dependents() -> None:
    """Drop ``linegate.engine.trt_*`` from their package too, so ``from linegate.engine import ...`` re-imports."""
    for name in DEPENDENTS:
        parent, _, child = name.rpartition(".")
        if parent in sys.modules and hasattr(sys.modules[parent], child):
            delattr(sys.modules[parent], child)


TEST_GPU = ("linegate test GPU (no CUDA here)", (8, 7))
"""The GPU facts CPU-only tests pretend to have (a Jetson Orin's compute capability)."""


def gpu_for_tests(monkeypatch: Any) -> Any:
    """This machine's GPU facts where cuda-python and a GPU are here, else TEST_GPU patched in; returned."""
    from linegate.engine import gpu_info

    try:
        return gpu_info.current_gpu()
    except gpu_info.GpuInfoError:
        facts = gpu_info.GpuFacts(*TEST_GPU)
        monkeypatch.setattr(gpu_info, "current_gpu", lambda ordinal=0: facts)
        return facts
