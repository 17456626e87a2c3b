"""ONNX Runtime's threads and spinning: "auto" leaves cores to the other workers and spins only where
cores are spare; explicit settings are taken as they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from linegate.engine.threads import intra_op_threads, spinning


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (4, 3), (6, 4), (16, 14)])
def test_auto_leaves_one_core_on_small_machines_and_two_above_four(cpus: int, threads: int) -> None:
    """auto: CPUs less one (up to 4 CPUs: the acquisition worker) or less two (also the PLC worker)."""
    assert intra_op_threads("auto", cpus) == threads


def test_an_explicit_thread_count_is_kept() -> None:
    """A number is used as given, whatever the machine."""
    assert intra_op_threads(6, 2) == 6


@pytest.mark.parametrize(
    ("setting", "threads", "cpus", "spins"),
    [("auto", 1, 2, False), ("auto", 3, 4, False), ("auto", 14, 16, True), ("auto", 15, 16, False),
     ("on", 1, 2, True), ("off", 14, 16, False)],
)  # fmt: skip
def test_spinning_auto_only_with_a_pool_and_spare_cores(setting: str, threads: int, cpus: int, spins: bool) -> None:
    """auto spins only when the pool has threads and the other workers keep their cores; on/off are kept."""
    assert spinning(setting, threads, cpus) is spins  # type: ignore[arg-type]


def test_the_backend_reports_what_it_chose(tmp_path: Path) -> None:
    """A session with threads = "auto" loads, runs, and ONNX Runtime gets the thread count and spinning
    that the engine reports."""
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
