"""``[[cameras]]``: each camera's configuration (its lane) is ``[camera]`` and ``[plc]`` with its own
keys merged in, and cameras that would share a device, a name, an output or a PLC block are
refused with an error naming both cameras and the key."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path
from typing import Any

import pytest

from linegate.config.lanes import lanes_of
from linegate.config.loader import parse_config, tomllib
from linegate.config.schema import Config
from linegate.errors import ConfigError
from linegate.service.reload import plan_reload

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo.toml"
BASE: dict[str, Any] = tomllib.loads(DEMO.read_text())


def config(cameras: list[dict[str, Any]], **tables: Any) -> dict[str, Any]:
    """The demo configuration with *cameras* as ``[[cameras]]`` ([camera] without its device)."""
    data = copy.deepcopy(BASE)
    del data["camera"]["device"]
    data["cameras"] = cameras
    for key, value in tables.items():
        section, _, name = key.partition("__")
        if name:
            data[section][name] = value
        else:
            data[section] = value
    return data


def load(data: dict[str, Any]) -> Config:
    return parse_config(data, source=DEMO)


def cam(name: str, serial: str, coil: int, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "device": {"serial_number": serial},
        "plc": {"modbus": {"reject_coil": coil, "part_id_register": 10 + 2 * coil}},
        **more,
    }


def test_without_cameras_the_one_lane_is_the_configuration_itself() -> None:
    cfg = parse_config(copy.deepcopy(BASE), source=DEMO)
    (lane,) = lanes_of(cfg)
    assert (lane.index, lane.name, lane.cfg) == (0, cfg.instance.name, cfg)


def test_a_lanes_camera_names_the_entrys_own_keys_even_after_pickling() -> None:
    """Errors about a camera's device, exposure or gain name its [[cameras]] entry's key (the
    acquisition worker gets its configuration pickled, at spawn); shared settings stay camera.X."""
    cfg = load(config([cam("left", "0", 0), cam("right", "1", 5, exposure_us=500.0)]))
    left, right = (pickle.loads(pickle.dumps(lane.cfg.camera)) for lane in lanes_of(cfg))
    assert (left.key("device"), right.key("device")) == ("cameras.0.device", "cameras.1.device")
    assert (left.key("exposure_us"), right.key("exposure_us")) == ("camera.exposure_us", "cameras.1.exposure_us")
    assert right.key("width") == "camera.width" and cfg.camera.key("device") == "camera.device"


def test_each_lane_is_the_shared_configuration_with_its_cameras_keys() -> None:
    right = cam("right", "1", 5, exposure_us=500.0)
    right["plc"]["fire_delay_ms"] = 30.0
    right["plc"]["modbus"]["fault_coil"] = 9
    cfg = load(config([cam("left", "0", 0), right]))
    left_lane, right_lane = lanes_of(cfg)
    assert (left_lane.index, left_lane.name, right_lane.index, right_lane.name) == (0, "left", 1, "right")
    assert left_lane.cfg.camera.device.serial_number == "0" and right_lane.cfg.camera.device.serial_number == "1"
    assert left_lane.cfg.camera.exposure_us == cfg.camera.exposure_us and right_lane.cfg.camera.exposure_us == 500.0
    assert left_lane.cfg.camera.width == right_lane.cfg.camera.width == cfg.camera.width  # shared
    assert cfg.plc.modbus is not None
    lm, rm = left_lane.cfg.plc.modbus, right_lane.cfg.plc.modbus
    assert lm is not None and rm is not None
    assert (lm.reject_coil, lm.part_id_register, lm.fault_coil) == (0, 10, cfg.plc.modbus.fault_coil)
    assert (rm.reject_coil, rm.part_id_register, rm.fault_coil) == (5, 20, 9)
    assert (rm.host, rm.port) == (cfg.plc.modbus.host, cfg.plc.modbus.port)  # one PLC, one link per camera
    assert left_lane.cfg.plc.fire_delay_ms == cfg.plc.fire_delay_ms and right_lane.cfg.plc.fire_delay_ms == 30.0
    assert left_lane.cfg.cameras == [] and left_lane.cfg.model == cfg.model


@pytest.mark.parametrize(
    ("cameras", "tables", "message"),
    [
        ([cam("a", "0", 0), cam("a", "1", 1)], {}, "cameras.0 and cameras.1 share name (a)"),
        ([cam("a", "0", 0), cam("b", "0", 1)], {}, 'cameras.0 and cameras.1 share device ({"serial_number":"0"})'),
        ([cam("a", "0", 3), cam("b", "1", 3)], {}, "cameras.0 and cameras.1 share plc.modbus.reject_coil (3)"),
        (
            [cam("a", "0", 0), {**cam("b", "1", 1), "plc": {"modbus": {"reject_coil": 1, "part_id_register": 11}}}],
            {},
            "cameras.0 and cameras.1 share plc.modbus.part_id_register (2 registers) (10, 11)",
        ),
        (
            [
                {"name": "a", "device": {"index": 0}, "plc": {"modbus": {"register_base": 100}}},
                {"name": "b", "device": {"index": 1}, "plc": {"modbus": {"register_base": 120}}},
            ],
            {"plc__mode": "handshake"},
            "cameras.0 and cameras.1 share plc.modbus.register_base (a 32-register block) (100, 120)",
        ),
        ([cam("a", "0", 0), cam("b", "1", 1)], {"camera__device": {"index": 0}}, "camera.device: with [[cameras]]"),
        (
            [{"name": "a", "device": {"index": 0}, "plc": {"modbus": {"reject_coil": 70000}}}],
            {},
            "cameras.0.plc.modbus.reject_coil",
        ),
        ([{"name": "a", "device": {"index": 0}, "plc": {"modbus": {"reject": 1}}}], {}, "cameras.0.plc.modbus.reject"),
        ([{"name": "A b", "device": {"index": 0}}], {}, "cameras.0.name"),
    ],
)
def test_cameras_that_would_share_something_are_refused_by_name(
    cameras: list[dict[str, Any]], tables: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(config(cameras, **tables))
    assert message in str(err.value)


def test_s7_cameras_each_need_their_own_reject_byte() -> None:
    data = config([{"name": "a", "device": {"index": 0}}, {"name": "b", "device": {"index": 1}}])
    data["plc"]["protocol"] = "s7"
    data["plc"]["s7"] = {"host": "127.0.0.1", "reject_byte": 0}
    with pytest.raises(ConfigError, match=r"cameras.0 and cameras.1 share plc.s7.db/reject_byte \(100/0\)"):
        load(data)
    data["cameras"][1]["plc"] = {"s7": {"reject_byte": 1}}
    a, b = lanes_of(load(data))
    assert a.cfg.plc.s7 is not None and b.cfg.plc.s7 is not None
    assert (a.cfg.plc.s7.reject_byte, b.cfg.plc.s7.reject_byte) == (0, 1)


def test_a_reload_that_changes_plc_with_cameras_needs_a_restart() -> None:
    """Each camera has its own PLC worker; a reload replaces only the inference worker for now."""
    old = load(config([cam("a", "0", 0), cam("b", "1", 1)]))
    changed_plc = config([cam("a", "0", 0), cam("b", "1", 1)])
    changed_plc["plc"]["pulse_ms"] = 5.0
    plan = plan_reload(old, load(changed_plc))
    assert "plc.pulse_ms" in plan.needs_restart
    changed_cameras = config([cam("a", "0", 0), cam("b", "1", 2)])
    assert any(k.startswith("cameras") for k in plan_reload(old, load(changed_cameras)).needs_restart)
    changed_deadline = config([cam("a", "0", 0), cam("b", "1", 1)])
    changed_deadline["deadline"]["budget_ms"] = 40.0
    plan = plan_reload(old, load(changed_deadline))
    assert plan.needs_restart == () and [str(r) for r in plan.replace] == ["infer"]


def test_cameras_on_different_plcs_may_use_the_same_addresses() -> None:
    """A camera whose ejector is on another PLC names its host and port; addresses clash only on one PLC."""
    other = cam("b", "1", 0)
    other["plc"]["modbus"].update({"port": 5021, "part_id_register": 10})
    a, b = lanes_of(load(config([cam("a", "0", 0), other])))
    assert a.cfg.plc.modbus is not None and b.cfg.plc.modbus is not None
    assert (a.cfg.plc.modbus.port, b.cfg.plc.modbus.port) == (5020, 5021)
    assert a.cfg.plc.modbus.reject_coil == b.cfg.plc.modbus.reject_coil == 0
    handshake = [
        {"name": "a", "device": {"index": 0}},
        {"name": "b", "device": {"index": 1}, "plc": {"modbus": {"host": "10.0.0.7"}}},
    ]
    assert len(lanes_of(load(config(handshake, plc__mode="handshake")))) == 2  # same block, other PLC
    with pytest.raises(ConfigError, match=r"share plc.modbus.register_base \(a 32-register block\) \(100\)"):
        load(config([{"name": "a", "device": {"index": 0}}, {"name": "b", "device": {"index": 1}}],
                     plc__mode="handshake"))  # fmt: skip


def test_parallel_sessions_with_several_cameras_are_accepted_and_bounded_by_each_cameras_ring() -> None:
    """model.parallel with [[cameras]]: the sessions take every camera's frames, so a number loads and
    "auto" stays auto (2 sessions for a heavy model); the frames running at once may all be one
    camera's, so each camera's ring must hold twice as many (refused naming ring.slots otherwise)."""
    from linegate.config.schema import runnable_model

    cameras = [cam("left", "0", 0), cam("right", "1", 5)]
    cfg = load(config(cameras, model={**BASE["model"], "parallel": 2}))
    assert cfg.model.parallel == 2 and len(lanes_of(cfg)) == 2
    auto = load(config(cameras))
    assert auto.model.parallel == "auto" and runnable_model(auto, auto.model).parallel == "auto"
    too_many = BASE["ring"]["slots"] // 2 + 1
    with pytest.raises(ConfigError, match=rf"model.parallel = {too_many}: .* ring.slots = {BASE['ring']['slots']}"):
        load(config(cameras, model={**BASE["model"], "parallel": too_many}))
