"""``linegate inspect-engine ENGINE``: what a TensorRT engine takes and gives, its key, and whether it fits here.

TensorRT and cuda-python are imported in :func:`run` only; without TensorRT the key is still shown.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from linegate.engine.engine_key import EngineKey, KeyCheck, Profile, compare, key_path
from linegate.errors import ModelError

SUMMARY = "show a TensorRT engine's inputs, outputs, profiles and sidecar key, and whether it fits this machine"
DESCRIPTION = (
    "Show ENGINE's input and output tensors (names, dtypes, shapes; -1 is dynamic), its optimisation "
    "profiles (min/opt/max of each input), its sidecar key (ENGINE.key.json, written by build-engine) and "
    "the key checked against this machine (TensorRT version, GPU, compute capability, the file's sha256), "
    "as the tensorrt backend checks it before loading. Where TensorRT is not installed the key is still "
    "shown and checked as far as possible, and the engine itself is not opened. Exit 0 when nothing wrong "
    "was found (what could not be checked here is listed), 78 when the key is missing or does not fit, or "
    "the engine cannot be opened."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("engine", metavar="ENGINE", type=Path, help="serialized TensorRT engine (.engine / .plan)")


def run(args: argparse.Namespace) -> int:
    path: Path = args.engine
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the engine: {exc.strerror or exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    print(f"engine   {path}  ({len(data)} bytes, sha256 {digest})")
    problems: list[str] = []

    try:
        from linegate.engine import trt_build
    except ImportError as exc:
        trt_version = None
        print(f"TensorRT is not installed here ({exc}): the engine itself cannot be opened on this machine; "
              "below is what its key records")  # fmt: skip
    else:
        trt_version = trt_build.tensorrt_version()
        print(f"TensorRT {trt_version} here")
        try:
            info = trt_build.describe(data, path)
        except ModelError as exc:
            problems.append(str(exc))
        else:
            for mode in ("input", "output"):
                print(f"{mode}s:")
                for t in (t for t in info.tensors if t.mode == mode):
                    print(f"  {t.name:<20} {t.dtype:<8} {list(t.shape)}")
            print("optimisation profiles:")
            print(format_profiles(info.profiles))
        del data

    key = _read_key(path, problems)
    if key is not None:
        print(format_key(key_path(path), key))
        from linegate.engine import gpu_info

        machine = gpu_info.this_machine(trt_version, unknown_tensorrt="TensorRT: not installed here")
        check = compare(key, machine, digest)
        print(format_check(check))
        problems.extend(str(d) for d in check.differences)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 78 if problems else 0


def _read_key(engine: Path, problems: list[str]) -> EngineKey | None:
    sidecar = key_path(engine)
    try:
        return EngineKey.from_json(sidecar.read_text(encoding="utf-8"), sidecar)
    except FileNotFoundError:
        problems.append(
            f"no engine key {sidecar.name} beside the engine: the tensorrt backend refuses it; rebuild it on the "
            f"device with `linegate build-engine MODEL.onnx --output {engine}`"
        )
    except OSError as exc:
        problems.append(f"{sidecar}: cannot read the engine key: {exc.strerror or exc}")
    except ModelError as exc:
        problems.append(str(exc))
    return None


def format_profiles(profiles: tuple[Profile, ...], indent: str = "  ") -> str:
    """One line per input range, numbered by profile."""
    if not profiles:
        return f"{indent}none (no dynamic input)"
    lines = []
    for index, ranges in enumerate(profiles):
        lines += [f"{indent}{index}: {r}" for r in ranges] or [f"{indent}{index}: (no dynamic input)"]
    return "\n".join(lines)


def format_key(source: Path, key: EngineKey) -> str:
    rows = [
        ("onnx", f"{key.onnx_file} (sha256 {key.onnx_sha256})"),
        ("built", f"{key.built_at} in {key.build_seconds:g} s by linegate {key.linegate_version}"),
        ("TensorRT", key.tensorrt_version),
        ("GPU", f"{key.gpu_name} (compute capability {key.compute_capability})"),
        ("L4T", key.l4t_release or "- (not a Jetson)"),
        ("precision", key.precision),
        ("workspace", f"{key.workspace_mib} MiB" if key.workspace_mib is not None else "TensorRT's default"),
        ("calibration set", key.calibration_set_sha256 or "-"),
        ("engine sha256", key.engine_sha256),
        ("rebuild with", key.rebuild_command),
    ]
    lines = [f"key      {source}"] + [f"  {name:<16} {value}" for name, value in rows]
    lines.append("  profiles")
    lines.append(format_profiles(key.profiles, indent="    "))
    return "\n".join(lines)


def format_check(check: KeyCheck) -> str:
    """The key against this machine: fits / does not fit, what could not be checked, notes."""
    if check.ok:
        head = "key check: fits this machine" + (" as far as checked" if check.unchecked else "")
    else:
        head = "key check: does NOT fit this machine (the tensorrt backend refuses this engine):"
    lines = [head] + [f"  - {d}" for d in check.differences]
    if check.unchecked:
        lines.append(f"  not checked here: {', '.join(check.unchecked)}")
        lines += [f"    ({reason})" for reason in check.reasons]
    lines += [f"  note: {n}" for n in check.notes]
    return "\n".join(lines)
