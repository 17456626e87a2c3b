"""What a TensorRT engine was built from and for, and whether this machine can run it: pure data and rules.

A serialized engine only runs on the TensorRT version and the GPU that built it. ``linegate
build-engine`` writes a sidecar key (``ENGINE.key.json``) beside each engine; the backend compares it
with the running machine before it deserialises anything, and refuses with what differs and the
command that rebuilds the engine. The optimisation-profile rules (plan one profile per input size,
pick the profile that holds a shape) live here too: the key records the profiles.

No file, GPU or TensorRT access here; callers read files and probe the machine.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from linegate.errors import ModelError

KEY_FORMAT = 1
"""Version of the sidecar's layout; a key of another format is refused (rebuild the engine)."""
KEY_SUFFIX = ".key.json"
PRECISIONS = ("fp32", "fp16", "int8")

Shape = tuple[int, ...]
_NUMBER_LIST = re.compile(r"\[([-0-9,\s]+)\]")
"""A JSON list of integers spread over lines by ``indent``: written on one line instead."""


def key_path(engine: Path) -> Path:
    """The sidecar of *engine*: ``model.engine`` -> ``model.engine.key.json``."""
    return engine.with_name(engine.name + KEY_SUFFIX)


# --- optimisation profiles ------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorProfile:
    """The shape range one optimisation profile gives one input."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def holds(self, shape: Shape) -> bool:
        """True if *shape* lies within min..max in every dimension."""
        return len(shape) == len(self.min) and all(
            lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max, strict=True)
        )

    def __str__(self) -> str:
        return f"{self.name} min {list(self.min)} opt {list(self.opt)} max {list(self.max)}"


Profile = tuple[TensorProfile, ...]
"""One optimisation profile: a range for every input with dynamic dimensions."""


def plan_profiles(
    inputs: Mapping[str, Shape], sizes: Sequence[int], batch: tuple[int, int, int] | None
) -> list[Profile]:
    """One profile per square input size, covering every input's dynamic dimensions (-1).

    Dimension 0, if dynamic, is the batch: *batch* gives its (min, opt, max), default 1:1:1. Any other
    dynamic dimensions must be exactly two (height and width, NCHW or NHWC); each of *sizes* makes one
    profile with both set to it. Sizes for a model whose height and width are fixed, or a batch range
    for one whose batch is fixed, are refused. A model with no dynamic dimension gets no profile
    (TensorRT needs none). Raises ModelError naming the input.
    """
    if any(s < 1 for s in sizes) or len(set(sizes)) != len(sizes):
        raise ModelError(f"--sizes {_csv(sizes)}: expected distinct whole numbers >= 1")
    if batch is not None and not 1 <= batch[0] <= batch[1] <= batch[2]:
        raise ModelError(f"--batch {':'.join(map(str, batch))}: expected MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX")
    dynamic = {name: shape for name, shape in inputs.items() if -1 in shape}
    spatial = {name: _spatial_dims(name, shape) for name, shape in dynamic.items()}
    if batch is not None and batch != (1, 1, 1) and not any(s[0] == -1 for s in dynamic.values()):
        raise ModelError(f"--batch given, but no input has a dynamic batch dimension: {_shapes(inputs)}")
    if sizes and not any(spatial.values()):
        raise ModelError(
            f"--sizes given, but no input has a dynamic height and width: {_shapes(inputs)} (export the ONNX "
            "model with dynamic height and width to build one profile per size, or leave out --sizes)"
        )
    missing = [name for name, dims in spatial.items() if dims and not sizes]
    if missing:
        raise ModelError(
            f"input {missing[0]!r} has a dynamic height and width ({list(inputs[missing[0]])}): give the sizes "
            "to build for, e.g. --sizes 512,768,1024 (one optimisation profile each)"
        )
    if not dynamic:
        return []
    lo, opt, hi = batch if batch is not None else (1, 1, 1)
    profiles = []
    for size in sizes or [0]:
        ranges = []
        for name, shape in dynamic.items():
            bounds = [[d, d, d] for d in shape]
            if shape[0] == -1:
                bounds[0] = [lo, opt, hi]
            for i in spatial[name]:
                bounds[i] = [size, size, size]
            ranges.append(TensorProfile(name, *(tuple(b[k] for b in bounds) for k in range(3))))
        profiles.append(tuple(ranges))
    return profiles


def _spatial_dims(name: str, shape: Shape) -> list[int]:
    """Indices of the dynamic height and width of *shape* (none, or exactly two besides the batch)."""
    dims = [i for i, d in enumerate(shape) if d == -1 and i > 0]
    if dims and len(dims) != 2:
        raise ModelError(
            f"input {name!r} has shape {list(shape)}: dynamic dimensions {dims} besides the batch; build-engine "
            "makes profiles for a dynamic batch (dimension 0) and a dynamic height and width (two dimensions)"
        )
    return dims


def pick_profile(profiles: Sequence[TensorProfile], shape: Shape) -> int | None:
    """Index of the profile that holds *shape*, preferring one whose opt shape is *shape*; None if none does."""
    holding = [i for i, p in enumerate(profiles) if p.holds(shape)]
    exact = [i for i in holding if profiles[i].opt == shape]
    chosen = exact or holding
    return chosen[0] if chosen else None


def _csv(values: Sequence[int]) -> str:
    return ",".join(map(str, values))


def _shapes(inputs: Mapping[str, Shape]) -> str:
    return ", ".join(f"{n} {list(s)}" for n, s in inputs.items())


# --- the key ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineKey:
    """The sidecar: what the engine was built from, with what, for which machine."""

    onnx_file: str
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    """``"major.minor"``, e.g. ``"8.7"`` for Jetson Orin."""
    l4t_release: str | None
    """The Jetson's L4T release (``"36.4.0"`` for JetPack 6.1), None elsewhere."""
    precision: str
    profiles: tuple[Profile, ...]
    calibration_set_sha256: str | None
    engine_sha256: str
    built_at: str
    """UTC, ISO 8601."""
    build_seconds: float
    linegate_version: str
    rebuild_command: str
    """The build-engine command line that made this engine; run it again to rebuild."""
    workspace_mib: int | None = None
    format: int = field(default=KEY_FORMAT)

    def to_json(self) -> str:
        data = asdict(self)
        data["profiles"] = [[_profile_json(t) for t in p] for p in self.profiles]
        text = json.dumps(data, indent=2)
        return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"

    @classmethod
    def from_json(cls, text: str, source: Path) -> EngineKey:
        """Parse a sidecar; ModelError naming *source* if it is not a key this linegate understands."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ModelError(f"{source}: not a JSON engine key: {exc}") from None
        if not isinstance(data, dict):
            raise ModelError(f"{source}: not an engine key (expected a JSON object)")
        if data.get("format") != KEY_FORMAT:
            raise ModelError(
                f"{source}: engine key format {data.get('format')!r}, this linegate reads format {KEY_FORMAT}"
            )
        try:
            profiles = tuple(tuple(_profile_from(t) for t in p) for p in data.pop("profiles"))
            return cls(profiles=profiles, **data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: incomplete or malformed engine key: {exc}") from None


def _profile_json(t: TensorProfile) -> dict[str, Any]:
    return {"name": t.name, "min": list(t.min), "opt": list(t.opt), "max": list(t.max)}


def _profile_from(data: Mapping[str, Any]) -> TensorProfile:
    return TensorProfile(str(data["name"]), *(tuple(int(d) for d in data[k]) for k in ("min", "opt", "max")))


@dataclass(frozen=True)
class Machine:
    """What the running machine offers; None where it could not be found out (the reason in *unknown*)."""

    tensorrt_version: str | None
    gpu_name: str | None
    compute_capability: str | None
    l4t_release: str | None = None
    unknown: tuple[str, ...] = ()


@dataclass(frozen=True)
class Difference:
    """One reason the engine does not fit this machine."""

    what: str
    recorded: str
    here: str

    def __str__(self) -> str:
        return f"{self.what}: the engine was built for {self.recorded}, this machine has {self.here}"


@dataclass(frozen=True)
class KeyCheck:
    """The key against the machine: differences refuse the engine; unchecked facts were not comparable here."""

    differences: tuple[Difference, ...]
    unchecked: tuple[str, ...]
    """What could not be compared (``"GPU"``, ``"TensorRT version"``...)."""
    reasons: tuple[str, ...]
    """Why not (the machine's :attr:`Machine.unknown`)."""
    notes: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.differences


def compare(key: EngineKey, machine: Machine, engine_sha256: str | None) -> KeyCheck:
    """Compare the key with the running TensorRT, GPU and the engine file's digest.

    A fact the machine could not give (None) is listed as unchecked, never as a difference. A
    different L4T release is only a note: the TensorRT version decides whether the engine loads.
    """
    diffs: list[Difference] = []
    unchecked: list[str] = []
    pairs = [
        ("TensorRT version", key.tensorrt_version, machine.tensorrt_version),
        ("GPU", key.gpu_name, machine.gpu_name),
        ("compute capability", key.compute_capability, machine.compute_capability),
    ]
    for what, recorded, here in pairs:
        if here is None:
            unchecked.append(what)
        elif recorded != here:
            diffs.append(Difference(what, recorded, here))
    if engine_sha256 is None:
        unchecked.append("engine sha256")
    elif engine_sha256 != key.engine_sha256:
        diffs.append(
            Difference(
                "engine file sha256", key.engine_sha256[:16] + "…",
                engine_sha256[:16] + "… (the file was changed or replaced after it was built)",
            )
        )  # fmt: skip
    notes = []
    if key.l4t_release != machine.l4t_release:
        built, here = key.l4t_release or "no Jetson", machine.l4t_release or "no Jetson"
        notes.append(f"L4T release: built on {built}, here {here} (TensorRT's version decides whether it loads)")
    return KeyCheck(tuple(diffs), tuple(unchecked), machine.unknown, tuple(notes))


def refusal(engine: Path, key: EngineKey, check: KeyCheck) -> str:
    """The message for an engine whose key does not fit: every difference, then the rebuild command."""
    lines = [f"{engine}: refusing this TensorRT engine: it was built for another machine or changed since:"]
    lines += [f"  - {d}" for d in check.differences]
    lines.append(f"Rebuild it on this device (linegate never builds on the line):\n  {key.rebuild_command}")
    return "\n".join(lines)


def missing_key(engine: Path, optional_hint: str | None = None) -> str:
    """The message for an engine without its sidecar key; *optional_hint* says how to allow that."""
    message = (
        f"{engine}: no engine key {key_path(engine).name} beside it, so linegate cannot tell which TensorRT "
        "and GPU built it; rebuild it on this device (linegate never builds on the line):\n  "
        + shlex.join(["linegate", "build-engine", "MODEL.onnx", "--output", str(engine)])
    )
    return message + (f"\n({optional_hint})" if optional_hint else "")


def parse_l4t_release(text: str) -> str | None:
    """``/etc/nv_tegra_release``'s first line -> ``"36.4.0"``; None if it does not look like one."""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9][0-9.]*)", text)
    if match is None:
        return None
    return f"{match.group(1)}.{match.group(2).rstrip('.')}"
