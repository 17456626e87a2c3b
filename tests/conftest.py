"""Shared fixtures: the repository's demo configuration, made safe to run in parallel tests."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from linegate.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "config" / "demo.toml"
REFERENCE_CONFIG = REPO / "config" / "linegate.toml"


def unique_instance() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def demo_config() -> Config:
    """config/demo.toml with an instance name of its own (its shared memory cannot collide)."""
    cfg = load_config(DEMO_CONFIG)
    return cfg.model_copy(update={"instance": cfg.instance.model_copy(update={"name": unique_instance()})})


@pytest.fixture
def plc_sim():  # type: ignore[no-untyped-def]
    """A real `linegate plc-sim` process on a free loopback port, collecting coil edges."""
    from linegate.demo.runner import PlcSimProcess, free_port

    sim = PlcSimProcess(free_port(), part_id_register=0)
    yield sim
    sim.stop()


@pytest.fixture(autouse=True)
def _no_leftover_linegate():  # type: ignore[no-untyped-def]
    """Kill any linegate process a test started and left running (e.g. after a failed assertion)."""
    yield
    from tests.pipeline.harness import kill_leftovers

    kill_leftovers()
