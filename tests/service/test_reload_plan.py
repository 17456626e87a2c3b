"""Reload planning: which workers a config change replaces, which keys need a restart."""

from __future__ import annotations

from pathlib import Path

from linegate.config import Config, load_config
from linegate.service.reload import plan_reload
from tests.conftest import DEMO_CONFIG


def demo() -> Config:
    return load_config(DEMO_CONFIG)


def changed(cfg: Config, section: str, **update: object) -> Config:
    return cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=update)})


def test_same_config_replaces_nothing() -> None:
    """Reloading an unchanged file is a no-op."""
    plan = plan_reload(demo(), demo())
    assert plan.replace == () and plan.needs_restart == ()


def test_model_and_deadline_replace_inference_plc_replaces_plc() -> None:
    """model/deadline changes swap the inference worker; plc changes swap the PLC worker."""
    cfg = demo()
    assert plan_reload(cfg, changed(cfg, "model", id="v2")).replace == ("infer",)
    assert plan_reload(cfg, changed(cfg, "deadline", budget_ms=20.0)).replace == ("infer",)
    assert plan_reload(cfg, changed(cfg, "plc", pulse_ms=5.0)).replace == ("plc",)


def test_camera_ring_and_sizing_keys_need_a_restart_by_name() -> None:
    """Keys that size shared memory or the camera are listed by full name, nothing is replaced."""
    cfg = demo()
    new = changed(changed(cfg, "camera", width=320), "plc", queue_size=8)
    plan = plan_reload(cfg, new)
    assert plan.needs_restart == ("camera.width", "plc.queue_size")


def test_nested_keys_are_named_in_full(tmp_path: Path) -> None:
    """A change deep in a table is reported with its dotted path."""
    cfg = demo()
    modbus = cfg.plc.modbus.model_copy(update={"host": "10.0.0.2"})
    plan = plan_reload(cfg, changed(cfg, "plc", modbus=modbus))
    assert plan.replace == ("plc",) and plan.needs_restart == ()
    plan = plan_reload(cfg, changed(cfg, "scheduling", infer_rt_priority=20))
    assert plan.needs_restart == ("scheduling.infer_rt_priority",)


def test_plc_mode_results_and_part_numbering_need_a_restart() -> None:
    """plc.mode, plc.handshake.results and plc.part_ids change what the inference worker hands over and
    what the shared pending rows mean: a reload names them as needing a restart."""
    cfg = demo()
    handshake = cfg.plc.handshake.model_copy(update={"results": "all"})
    new = changed(cfg, "plc", mode="handshake", handshake=handshake, part_ids="plc")
    plan = plan_reload(cfg, new)
    assert plan.needs_restart == ("plc.handshake.results", "plc.mode", "plc.part_ids")
