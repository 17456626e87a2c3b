"""ONNX Runtime's threads and spinning: "auto" leaves cores to the other workers and spins only where
cores are spare; explicit settings are taken as they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from linegate.engine.threads import intra_op_threads, may_be_heavy, spinning


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (4, 3), (6, 4), (16, 14)])
def test_auto_leaves_one_core_on_small_machines_and_two_above_four(cpus: int, threads: int) -> None:
    """auto: CPUs less one (up to 4 CPUs: the acquisition worker) or less two (also the PLC worker)."""
    assert intra_op_threads("auto", cpus) == threads


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 2), (4, 4), (6, 4), (16, 14)])
def test_a_heavy_model_gets_every_core_on_small_machines(cpus: int, threads: int) -> None:
    """auto, heavy model (one-thread run >= HEAVY_RUN_NS): all CPUs up to 4; above that as before."""
    assert intra_op_threads("auto", cpus, heavy=True) == threads


def test_the_model_is_timed_only_where_heaviness_could_change_the_choice() -> None:
    assert may_be_heavy("auto", 2) and may_be_heavy("auto", 4)
    assert not may_be_heavy("auto", 1) and not may_be_heavy("auto", 16) and not may_be_heavy(3, 2)


def test_an_explicit_thread_count_is_kept() -> None:
    """A number is used as given, whatever the machine."""
    assert intra_op_threads(6, 2) == 6


@pytest.mark.parametrize(
    ("setting", "threads", "cpus", "spins"),
    [("auto", 1, 2, False), ("auto", 3, 4, False), ("auto", 14, 16, False), ("auto", 8, 16, True),
     ("auto", 4, 16, True), ("auto", 9, 16, False), ("on", 1, 2, True), ("off", 4, 16, False)],
)  # fmt: skip
def test_spinning_auto_only_for_a_pool_of_at_most_half_the_cpus(
    setting: str, threads: int, cpus: int, spins: bool
) -> None:
    """auto spins only a pool of several threads on at most half the CPUs (so never with threads =
    "auto", which leaves just the workers' cores); on/off are kept."""
    assert spinning(setting, threads, cpus) is spins  # type: ignore[arg-type]


def test_the_backend_reports_what_it_chose(tmp_path: Path) -> None:
    """A session with threads = "auto" loads, runs, and ONNX Runtime gets the thread count and spinning
    that the engine reports (a tiny model: the light choice)."""
    pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test model")
    from linegate.config.schema import ModelSection
    from linegate.engine import create_engine
    from linegate.engine.threads import cpus_available
    from tests.engine.onnx_models import linear_classifier

    path = linear_classifier(tmp_path / "m.onnx")
    post = {"classes": ["pass", "reject"], "reject_thresholds": {"reject": 0.5}}
    section = ModelSection.model_validate({"id": "m", "path": str(path), "postprocess": post})
    with create_engine(section, (1, 1, 12, 16), np.dtype(np.float32)) as engine:
        engine.infer()
        cpus = cpus_available()
        threads = intra_op_threads("auto", cpus)
        assert engine.settings == {"threads": threads, "spinning": spinning("auto", threads, cpus)}
        options = engine._session.get_session_options()  # what ONNX Runtime itself was given
        assert options.intra_op_num_threads == threads
        spin = options.get_session_config_entry("session.intra_op.allow_spinning")
        assert spin == ("1" if engine.settings["spinning"] else "0")


def heavy_model(path: Path) -> Path:
    """A model of about 4 GFLOP per run (two 1024x1024 matrix products): 16 ms on one thread of the
    2-CPU machine, so at least 5x :data:`HEAVY_RUN_NS` on a CPU several times faster. (Two 512x512
    products ran 2.0 ms there, on the threshold: CI once timed them light.)"""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).random((1024, 1024), dtype=np.float32) / 1024, "w")
    nodes = [helper.make_node("MatMul", ["image", "w"], ["a"]), helper.make_node("MatMul", ["a", "w"], ["scores"])]
    graph = helper.make_graph(
        nodes, "heavy", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 1024, 1024])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 1024, 1024])], [w],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_heavy_model_is_given_every_core_where_that_changes_the_choice(tmp_path: Path) -> None:
    """On up to 4 CPUs, "auto" times the model once on one thread; a heavy one is reopened with all
    CPUs, and ONNX Runtime is given that count."""
    pytest.importorskip("onnx", reason="the onnx package (dev extra) builds the test model")
    from linegate.config.schema import ModelSection
    from linegate.engine import create_engine
    from linegate.engine.threads import cpus_available

    cpus = cpus_available()
    if not may_be_heavy("auto", cpus):
        pytest.skip(f"{cpus} CPUs: auto gives a heavy model the same thread count as a light one")
    post = {"classes": ["pass", "reject"], "reject_thresholds": {"reject": 0.5}}
    path = heavy_model(tmp_path / "h.onnx")
    section = ModelSection.model_validate({"id": "h", "path": str(path), "postprocess": post})
    with create_engine(section, (1, 1, 1024, 1024), np.dtype(np.float32)) as engine:
        assert engine.settings["threads"] == cpus
        assert engine._session.get_session_options().intra_op_num_threads == cpus
        assert engine.parallel == 2  # model.parallel = "auto": heavy, and the threads split in two


def test_parallel_sessions_auto_two_for_a_heavy_model_on_two_threads_or_more() -> None:
    """model.parallel = "auto": 2 sessions for a run of 2 ms or more that has 2 threads to split,
    else 1; a number is kept as set."""
    from linegate.engine.threads import HEAVY_RUN_NS, parallel_sessions

    assert parallel_sessions("auto", 2, HEAVY_RUN_NS) == 2
    assert parallel_sessions("auto", 14, 5 * HEAVY_RUN_NS) == 2
    assert parallel_sessions("auto", 2, HEAVY_RUN_NS - 1) == 1  # the demo model: a hand-off costs as much as a run
    assert parallel_sessions("auto", 1, 10 * HEAVY_RUN_NS) == 1  # one thread: nothing to split
    assert parallel_sessions("auto", 4, None) == 1
    assert parallel_sessions(3, 1, None) == 3
