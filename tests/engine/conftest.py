"""Engine tests: the ``gpu`` marker, and TensorRT for tests (the real one where importable, else the double).

GPU tests (marker ``gpu``) need cuda-python and a CUDA GPU and skip, saying why, elsewhere. One command
runs them on the GPU machine (with the TensorRT test double) and on a Jetson (with JetPack's real
TensorRT, picked automatically because ``import tensorrt`` works there)::

    python -m pytest -m gpu tests/engine

``LINEGATE_TEST_TENSORRT=real`` makes a missing TensorRT an error instead of a fall-back to the double
(use it on the Jetson); ``=double`` forces the double. Test ids show which ran: ``[trt-real]`` or
``[trt-double]``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.engine import trt_double

TRT_CHOICE = trt_double.choice()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a ``gpu`` test, saying why, where cuda-python or a CUDA device is missing."""
    if item.get_closest_marker("gpu") is None:
        return
    try:
        cm = importlib.import_module("linegate.engine.cuda_memory")
    except ImportError as exc:
        pytest.skip(f"needs cuda-python ({exc}); pip install 'linegate[gpu]' and run on a GPU machine")
    if cm.device_count() == 0:
        pytest.skip("needs a CUDA GPU: no CUDA device or driver on this machine")


@pytest.fixture(params=[TRT_CHOICE], ids=[f"trt-{TRT_CHOICE}"])
def trt(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """``tensorrt``: the real one where importable, else the test double (the test id says which)."""
    with trt_double.tensorrt_for_tests(request.param) as module:
        yield module


@pytest.fixture
def trt_build(trt: ModuleType) -> ModuleType:
    """linegate.engine.trt_build bound to the ``trt`` fixture's TensorRT."""
    return importlib.import_module("linegate.engine.trt_build")
