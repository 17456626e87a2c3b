"""Engine keys, the key check, optimisation-profile planning and platform facts (pure; one GPU test)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from linegate.engine.engine_key import (
    EngineKey,
    Machine,
    TensorProfile,
    compare,
    key_path,
    missing_key,
    parse_l4t_release,
    pick_profile,
    plan_profiles,
    refusal,
)
from linegate.errors import ModelError

SHA_A, SHA_B = "a" * 64, "b" * 64


def make_key(**changes: object) -> EngineKey:
    key = EngineKey(
        onnx_file="m.onnx", onnx_sha256="c" * 64, tensorrt_version="10.3.0.30", gpu_name="Orin",
        compute_capability="8.7", l4t_release="36.4.0", precision="fp16",
        profiles=((TensorProfile("image", (1, 3, 512, 512), (1, 3, 512, 512), (4, 3, 512, 512)),),),
        calibration_set_sha256=None, engine_sha256=SHA_A, built_at="2026-11-29T12:00:00+00:00",
        build_seconds=81.5, linegate_version="0.1.0",
        rebuild_command="linegate build-engine /opt/m.onnx --precision fp16 --sizes 512 --output /opt/m.engine",
    )  # fmt: skip
    return dataclasses.replace(key, **changes)  # type: ignore[arg-type]


HERE = Machine(tensorrt_version="10.3.0.30", gpu_name="Orin", compute_capability="8.7", l4t_release="36.4.0")


def test_key_path_is_beside_the_engine() -> None:
    """The sidecar of model.engine is model.engine.key.json in the same folder."""
    assert key_path(Path("/e/model.engine")) == Path("/e/model.engine.key.json")


def test_key_round_trips_through_json() -> None:
    """A key written as JSON reads back equal, shapes included."""
    key = make_key(calibration_set_sha256="d" * 64, workspace_mib=1024)
    assert EngineKey.from_json(key.to_json(), Path("k.json")) == key


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not a JSON engine key"),
        ("[1, 2]", r"not an engine key \(expected a JSON object\)"),
        ('{"format": 99}', "engine key format 99, this linegate reads format 1"),
        ('{"format": 1, "profiles": []}', "incomplete or malformed engine key"),
    ],
    ids=["not-json", "not-object", "other-format", "fields-missing"],
)
def test_unreadable_key_names_the_file(text: str, message: str) -> None:
    """A sidecar that is not a key of this format is refused, naming the file and what is wrong."""
    with pytest.raises(ModelError, match=rf"k\.json: {message}"):
        EngineKey.from_json(text, Path("k.json"))


def test_matching_machine_passes() -> None:
    """The machine that built the engine, with the same file, has no differences and nothing unchecked."""
    check = compare(make_key(), HERE, SHA_A)
    assert check.ok and check.differences == () and check.unchecked == () and check.notes == ()


@pytest.mark.parametrize(
    ("machine", "what", "recorded", "here"),
    [
        (dataclasses.replace(HERE, tensorrt_version="10.3.0.26"), "TensorRT version", "10.3.0.30", "10.3.0.26"),
        (dataclasses.replace(HERE, gpu_name="NVIDIA H200"), "GPU", "Orin", "NVIDIA H200"),
        (dataclasses.replace(HERE, compute_capability="9.0"), "compute capability", "8.7", "9.0"),
    ],
    ids=["tensorrt", "gpu", "compute-capability"],
)
def test_each_difference_is_named(machine: Machine, what: str, recorded: str, here: str) -> None:
    """A different TensorRT, GPU name or compute capability is one difference naming both values."""
    check = compare(make_key(), machine, SHA_A)
    assert not check.ok
    assert [(d.what, d.recorded, d.here) for d in check.differences] == [(what, recorded, here)]


def test_changed_engine_file_is_a_difference() -> None:
    """An engine file whose sha256 is not the key's is a difference (changed or replaced after the build)."""
    (diff,) = compare(make_key(), HERE, SHA_B).differences
    assert diff.what == "engine file sha256" and "changed or replaced" in str(diff)


def test_unknown_facts_are_unchecked_not_different() -> None:
    """What the machine cannot tell (no TensorRT, no GPU) is listed as unchecked, with the reasons."""
    machine = Machine(None, None, None, unknown=("TensorRT: not installed", "GPU: no driver"))
    check = compare(make_key(), machine, None)
    assert check.ok
    assert check.unchecked == ("TensorRT version", "GPU", "compute capability", "engine sha256")
    assert check.reasons == ("TensorRT: not installed", "GPU: no driver")


def test_other_l4t_release_is_only_a_note() -> None:
    """A different L4T release does not refuse the engine (TensorRT's version decides) but is noted."""
    check = compare(make_key(), dataclasses.replace(HERE, l4t_release="36.3.0"), SHA_A)
    assert check.ok and check.notes == (
        "L4T release: built on 36.4.0, here 36.3.0 (TensorRT's version decides whether it loads)",
    )


def test_refusal_lists_every_difference_and_the_rebuild_command() -> None:
    """The refusal names the engine, each difference on its own line, and the command that rebuilds it."""
    key = make_key()
    machine = dataclasses.replace(HERE, tensorrt_version="10.3.0.26", gpu_name="Orin (nvgpu)")
    text = refusal(Path("/e/m.engine"), key, compare(key, machine, SHA_B))
    lines = text.splitlines()
    assert lines[0].startswith("/e/m.engine: refusing this TensorRT engine")
    assert lines[1] == "  - TensorRT version: the engine was built for 10.3.0.30, this machine has 10.3.0.26"
    assert lines[2] == "  - GPU: the engine was built for Orin, this machine has Orin (nvgpu)"
    assert lines[3].startswith("  - engine file sha256: ")
    assert lines[-1] == f"  {key.rebuild_command}"


def test_missing_key_message_gives_the_build_command() -> None:
    """An engine without a key is refused with the build-engine command, and the config hint if given."""
    assert "linegate build-engine MODEL.onnx --output /e/m.engine" in missing_key(Path("/e/m.engine"))
    assert missing_key(Path("/e/m.engine"), "or set x").endswith("\n(or set x)")
    assert "(" not in missing_key(Path("/e/m.engine")).splitlines()[-1]


# --- profiles -----------------------------------------------------------------------------------


def tp(name: str, lo: tuple[int, ...], opt: tuple[int, ...], hi: tuple[int, ...]) -> TensorProfile:
    return TensorProfile(name, lo, opt, hi)


@pytest.mark.parametrize(
    ("inputs", "sizes", "batch", "expected"),
    [
        ({"image": (1, 3, 64, 64)}, (), None, []),
        ({"image": (-1, 3, 64, 64)}, (), None, [(tp("image", (1, 3, 64, 64), (1, 3, 64, 64), (1, 3, 64, 64)),)]),
        ({"image": (-1, 3, 64, 64)}, (), (1, 2, 8), [(tp("image", (1, 3, 64, 64), (2, 3, 64, 64), (8, 3, 64, 64)),)]),
        ({"image": (1, 3, -1, -1)}, (512, 768), None, [
            (tp("image", (1, 3, 512, 512), (1, 3, 512, 512), (1, 3, 512, 512)),),
            (tp("image", (1, 3, 768, 768), (1, 3, 768, 768), (1, 3, 768, 768)),),
        ]),
        ({"image": (-1, -1, -1, 3)}, (256,), (1, 1, 4), [
            (tp("image", (1, 256, 256, 3), (1, 256, 256, 3), (4, 256, 256, 3)),),
        ]),
        ({"image": (-1, 1, -1, -1), "roi": (1, 4)}, (32, 48), (1, 1, 2), [
            (tp("image", (1, 1, 32, 32), (1, 1, 32, 32), (2, 1, 32, 32)),),
            (tp("image", (1, 1, 48, 48), (1, 1, 48, 48), (2, 1, 48, 48)),),
        ]),
    ],
    ids=["static", "batch-default", "batch-range", "sizes-nchw", "sizes-nhwc-batch", "static-second-input"],
)  # fmt: skip
def test_plan_profiles(
    inputs: dict[str, tuple[int, ...]], sizes: tuple[int, ...], batch: tuple[int, int, int] | None,
    expected: list[tuple[TensorProfile, ...]],
) -> None:  # fmt: skip
    """One profile per size for dynamic height and width, the batch range on a dynamic batch, none if static."""
    assert plan_profiles(inputs, sizes, batch) == expected


@pytest.mark.parametrize(
    ("inputs", "sizes", "batch", "message"),
    [
        ({"image": (1, 3, -1, -1)}, (), None, r"input 'image' has a dynamic height and width .* --sizes 512"),
        ({"image": (1, 3, 64, 64)}, (64,), None, r"--sizes given, but no input has a dynamic height and width"),
        ({"image": (1, 3, 64, 64)}, (), (1, 1, 4), r"--batch given, but no input has a dynamic batch dimension"),
        ({"image": (1, -1, -1, -1)}, (64,), None, r"dynamic dimensions \[1, 2, 3\] besides the batch"),
        ({"image": (-1, 3, 64, 64)}, (), (2, 1, 4), r"--batch 2:1:4: expected MIN:OPT:MAX"),
        ({"image": (1, 3, -1, -1)}, (64, 64), None, r"--sizes 64,64: expected distinct"),
    ],
    ids=["sizes-missing", "sizes-for-fixed", "batch-for-fixed", "three-dynamic", "batch-order", "duplicate-size"],
)
def test_plan_profiles_refuses(
    inputs: dict[str, tuple[int, ...]], sizes: tuple[int, ...], batch: tuple[int, int, int] | None, message: str
) -> None:
    """Options the model's inputs cannot take are refused with what to do instead."""
    with pytest.raises(ModelError, match=message):
        plan_profiles(inputs, sizes, batch)


def test_pick_profile_prefers_the_exact_opt_shape() -> None:
    """The profile whose opt shape is the requested one wins over an earlier one that merely holds it."""
    wide = tp("x", (1, 1, 8, 8), (1, 1, 16, 16), (1, 1, 64, 64))
    exact = tp("x", (1, 1, 32, 32), (1, 1, 32, 32), (1, 1, 32, 32))
    assert pick_profile([wide, exact], (1, 1, 32, 32)) == 1
    assert pick_profile([wide, exact], (1, 1, 40, 40)) == 0
    assert pick_profile([wide, exact], (1, 1, 80, 80)) is None
    assert pick_profile([wide], (1, 32, 32)) is None


# --- platform facts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "release"),
    [
        ("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13\n", "36.4.0"),
        ("# R35 (release), REVISION: 5.0, GCID: 35550185, BOARD: t186ref, EABI: aarch64\n", "35.5.0"),
        ("# R36 (release), REVISION: 3, GCID: 1\n", "36.3"),
        ("", None),
        ("Ubuntu 22.04\n", None),
    ],
    ids=["jetpack-6.1", "jetpack-5", "short-revision", "empty", "not-tegra"],
)  # fmt: skip
def test_parse_l4t_release(text: str, release: str | None) -> None:
    """/etc/nv_tegra_release's first line gives the L4T release; anything else gives None."""
    assert parse_l4t_release(text) == release


def test_l4t_release_of_a_missing_file_is_none(tmp_path: Path) -> None:
    """No /etc/nv_tegra_release (not a Jetson): no L4T release, no error."""
    from linegate.engine.gpu_info import l4t_release

    assert l4t_release(tmp_path / "absent") is None
    (tmp_path / "nv").write_text("# R36 (release), REVISION: 4.3, GCID: 1\n")
    assert l4t_release(tmp_path / "nv") == "36.4.3"


@pytest.mark.gpu
def test_current_gpu_agrees_with_the_runtime_api() -> None:
    """The driver API's name and compute capability are the runtime API's device properties."""
    from cuda.bindings import runtime as cudart

    from linegate.engine.gpu_info import current_gpu

    facts = current_gpu()
    err, props = cudart.cudaGetDeviceProperties(0)
    assert int(err) == 0
    assert facts.name == props.name.decode().rstrip("\0").strip()
    assert facts.compute_capability == (props.major, props.minor)
    assert facts.capability == f"{props.major}.{props.minor}"
    print(json.dumps({"gpu": facts.name, "compute_capability": facts.capability}))
