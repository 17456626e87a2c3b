"""Facts about the machine an engine is built on or loaded on: GPU name and compute capability
(CUDA driver API through cuda-python), the Jetson's L4T release (``/etc/nv_tegra_release``).

cuda-python is imported when asked, so a machine without it can still read and print engine keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linegate.engine.engine_key import Machine, parse_l4t_release
from linegate.errors import EngineError

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")


class GpuInfoError(EngineError):
    """No CUDA driver, device or cuda-python here: the GPU cannot be named."""


@dataclass(frozen=True)
class GpuFacts:
    """One CUDA device as the driver names it."""

    name: str
    compute_capability: tuple[int, int]

    @property
    def capability(self) -> str:
        """``"8.7"``, as the engine key records it."""
        return f"{self.compute_capability[0]}.{self.compute_capability[1]}"


def _driver() -> Any:
    try:  # cuda-python >= 12.6 / 13
        from cuda.bindings import driver
    except ImportError:
        try:  # older cuda-python layout
            from cuda import cuda as driver
        except ImportError as exc:
            raise GpuInfoError(f"cuda-python is not installed here ({exc}); pip install 'linegate[gpu]'") from None
    return driver


def _check(driver: Any, result: Any, call: str) -> Any:
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != int(driver.CUresult.CUDA_SUCCESS):
        _, name = driver.cuGetErrorName(err)
        raise GpuInfoError(f"{call} failed: {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else tuple(values)


def current_gpu(ordinal: int = 0) -> GpuFacts:
    """Name and compute capability of CUDA device *ordinal* (the one TensorRT uses by default)."""
    driver = _driver()
    try:
        return _query(driver, ordinal)
    except RuntimeError as exc:  # cuda-python without a driver library: DynamicLibNotFoundError
        raise GpuInfoError(f"no CUDA driver here: {exc}") from None


def _query(driver: Any, ordinal: int) -> GpuFacts:
    _check(driver, driver.cuInit(0), "cuInit")
    device = _check(driver, driver.cuDeviceGet(ordinal), f"cuDeviceGet({ordinal})")
    raw = _check(driver, driver.cuDeviceGetName(256, device), "cuDeviceGetName")
    name = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).split("\0", 1)[0].strip()
    attr = driver.CUdevice_attribute
    major = _check(driver, driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device),
                   "cuDeviceGetAttribute(compute capability major)")  # fmt: skip
    minor = _check(driver, driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device),
                   "cuDeviceGetAttribute(compute capability minor)")  # fmt: skip
    return GpuFacts(name, (int(major), int(minor)))


def l4t_release(path: Path = NV_TEGRA_RELEASE) -> str | None:
    """The L4T release of a Jetson (``"36.4.0"``); None where the file is absent or unreadable."""
    try:
        return parse_l4t_release(path.read_text(errors="replace"))
    except OSError:
        return None


def this_machine(tensorrt_version: str | None, *, unknown_tensorrt: str = "") -> Machine:
    """The running machine as an engine key sees it; what cannot be found out is None and said why."""
    unknown = [unknown_tensorrt] if tensorrt_version is None and unknown_tensorrt else []
    try:
        gpu: GpuFacts | None = current_gpu()
    except GpuInfoError as exc:
        gpu = None
        unknown.append(f"GPU: {exc}")
    return Machine(
        tensorrt_version=tensorrt_version,
        gpu_name=gpu.name if gpu else None,
        compute_capability=gpu.capability if gpu else None,
        l4t_release=l4t_release(),
        unknown=tuple(unknown),
    )
