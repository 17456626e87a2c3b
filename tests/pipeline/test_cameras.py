"""Several cameras in one linegate (``[[cameras]]``), whole runs against real peers: the simulated
producer's three devices streaming at once into one `linegate run`, one Modbus server with a
reject coil and part id registers per camera.

Each camera has its own acquisition worker, ring and PLC worker; one inference worker decides
every camera's frames. What must hold: each camera's frames are numbered and reconciled on
their own, each reject reaches its own camera's coil exactly once, records and faults name the
camera, a dead worker of one camera is restarted without touching the others, and a camera that
is not there is a fault named for it while the other cameras go on inspecting.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from linegate.demo.runner import PlcSimProcess, free_port
from tests.pipeline.harness import LinegateRun, demo_config_file, handshake_sim, records, run_linegate

FRAMES = 150
"""Per camera, in the bounded runs."""
NO_DEVICE = {'device = { serial_number = "0" }\n': ""}
"""[camera] names no device: each [[cameras]] entry does."""


def cameras(serials: list[str], fault_coils: bool = False) -> str:
    """``[[cameras]]`` entries cam<serial>: reject coil i, part id registers 10 + 2i (and fault coil 20 + i)."""
    out = ""
    for i, serial in enumerate(serials):
        fault = f"\nfault_coil = {20 + i}" if fault_coils else ""
        out += (
            f'\n[[cameras]]\nname = "cam{serial}"\ndevice = {{ serial_number = "{serial}" }}\n'
            f"[cameras.plc.modbus]\nreject_coil = {i}\npart_id_register = {10 + 2 * i}{fault}\n"
        )
    return out


def sim() -> PlcSimProcess:
    """A Modbus server reporting coil i's edges with the part id at registers 10 + 2i."""
    return PlcSimProcess(free_port(), args=["--part-id-register", "10", "--part-id-stride", "2"])


def by_camera(recs: list[dict[str, Any]], event: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        if r["event"] == event:
            out.setdefault(r["camera"], []).append(r)
    return out


def check_each_camera(recs: list[dict[str, Any]], plc: PlcSimProcess, names: list[str]) -> None:
    """Per camera: one verdict and one record per frame, part ids 1.. on their own, and each of its
    rejects delivered on its own coil exactly once (or reported undelivered with its part id)."""
    (summary,) = [r for r in recs if r["event"] == "run_summary"]
    assert summary["problems"] == [], summary["problems"]
    frames = by_camera(recs, "frame")
    delivered = by_camera(recs, "reject_delivered")
    undelivered = by_camera(recs, "reject_undelivered")
    assert sorted(frames) == sorted(names)
    for coil, name in enumerate(names):
        ids = sorted([r["part_id"] for r in frames[name]] + reported_lost(recs, name))
        assert ids == list(range(1, len(ids) + 1)), name  # each frame once, numbered per camera
        rejected = sorted(r["part_id"] for r in frames[name] if r["verdict"] == "reject")
        sent = [r["part_id"] for r in delivered.get(name, [])]
        reported = [r["part_id"] for r in undelivered.get(name, [])]
        assert sorted(sent + reported) == rejected, name  # each reject once: delivered or reported
        rising = plc.rising_part_ids(coil)
        assert len(rising) == len(set(rising)), name  # on its own coil, never twice
        # every delivered pulse is there; a pulse whose ON went out as a worker died may be there too,
        # reported delivery_unknown (no reply could tell whether it was applied)
        unknown = {r["part_id"] for r in undelivered.get(name, []) if r["reason"] == "delivery_unknown"}
        assert set(sent) <= set(rising) and set(rising) - set(sent) <= unknown, name


def bounded_run(tmp_path: Path, config: Path, *sims: PlcSimProcess) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`linegate run` of *config* for FRAMES frames per camera, then *sims* stopped (after they
    have printed the last edges): the run's result and its log file."""
    log = tmp_path / "frames.jsonl"
    try:
        done = run_linegate("run", "--config", str(config), "--log-file", str(log), "--max-frames", str(FRAMES),
                            timeout=180)  # fmt: skip
        time.sleep(0.3)
    finally:
        for sim in sims:
            sim.stop()
    return done, log


def check_results_taken_once(
    recs: list[dict[str, Any]], done: subprocess.CompletedProcess[str], taken: dict[str, list[dict[str, Any]]]
) -> None:
    """handshake mode, results = "all": each camera's PLC block (*taken*: the results it took) took
    exactly that camera's verdicts, each part id once, all but those reported undelivered; at least
    half of them (a run whose results all went undelivered proves nothing)."""
    (summary,) = [r for r in recs if r["event"] == "run_summary"]
    assert done.returncode == 0 or (done.returncode == 1 and summary["plc_undelivered"] > 0), done.stderr
    assert summary["problems"] == [], summary["problems"]
    frames = by_camera(recs, "frame")
    for name, results in taken.items():
        verdicts = {r["part_id"]: r["verdict"] for r in frames[name]}
        assert sorted(verdicts) == list(range(1, FRAMES + 1)), name
        at_plc = {int(e["part_id"]): ("pass", "reject")[e["verdict"] - 1] for e in results}
        assert len(at_plc) == len(results), f"{name}: a part id taken twice by its PLC block"
        unsent = {r["part_id"] for r in recs if r["event"] in ("reject_undelivered", "result_undelivered")
                  and r.get("camera") == name}  # fmt: skip
        assert at_plc == {p: v for p, v in verdicts.items() if p not in unsent}, name
        assert len(at_plc) >= FRAMES // 2, f"{name}: only {len(at_plc)} of {FRAMES} results reached its PLC block"


def reported_lost(recs: list[dict[str, Any]], name: str) -> list[int]:
    """Part ids of *name*'s frames that got no frame record but were reported by part id instead."""
    out = [r["part_id"] for r in recs if r["event"] == "frame_dropped" and r.get("camera") == name]
    out += [p for r in recs if r["event"] == "frames_lost_in_flight" and r.get("camera") == name for p in r["part_ids"]]
    return out


def kill_one(run: LinegateRun, role: str, camera: str | None) -> dict[str, Any]:
    """SIGKILL the *role* worker (of *camera*, or the inference worker) and wait until it is
    restarted and 150 more frames are decided; its ``worker_recovered`` record."""
    (started,) = [r for r in run.records() if r["event"] == "worker_started" and r["role"] == role
                  and r.get("camera") == camera]  # fmt: skip
    os.kill(int(started["pid"]), signal.SIGKILL)
    recovered = run.wait_event("worker_recovered", timeout_s=60)
    run.wait_frames(150)
    return recovered


def test_three_cameras_in_one_linegate_each_reconciled_on_its_own_coil(tmp_path: Path) -> None:
    """Three devices at 100 fps each into one linegate: every camera's frames get one verdict and one
    record naming the camera, each reject one pulse on that camera's coil, the run reconciles per
    camera, and one inference worker served them all."""
    names = ["cam0", "cam1", "cam2"]
    plc = sim()
    config, _ = demo_config_file(tmp_path, plc.port, NO_DEVICE, append=cameras(["0", "1", "2"]))
    done, log = bounded_run(tmp_path, config, plc)
    recs = records(log)
    (summary,) = [r for r in recs if r["event"] == "run_summary"]
    # a bounded run exits 1 only if a reject did not reach the PLC (reported by part id, checked below)
    assert done.returncode == 0 or (done.returncode == 1 and summary["plc_undelivered"] > 0), done.stderr
    check_each_camera(recs, plc, names)
    frames = by_camera(recs, "frame")
    assert {name: len(f) for name, f in frames.items()} == dict.fromkeys(names, FRAMES)
    started = Counter((r["role"], r.get("camera")) for r in recs if r["event"] == "worker_started")
    assert started == Counter({("infer", None): 1, **{(role, n): 1 for role in ("acquire", "plc") for n in names}})
    assert {r["camera"] for r in recs if r["event"] == "camera_opened"} == set(names)
    assert all(r.get("camera") in names for r in recs if r["event"] == "reject_delivered")
    # the summary gives each camera's figures: in the record and in what the operator reads
    assert sorted(summary["cameras"]) == names
    for name in names:
        counts = summary["cameras"][name]
        assert counts["acquired"] == counts["decided"] == FRAMES
        assert counts["rejected"] == sum(r["verdict"] == "reject" for r in frames[name])
        assert f"camera {name}: acquired {FRAMES}, decided {FRAMES}, reject {counts['rejected']}" in done.stderr


@pytest.mark.parametrize(("victim", "parallel"), [("acquire", 1), ("infer", 1), ("plc", 1), ("infer", 2)])
def test_a_dead_worker_with_cameras_is_restarted_and_loses_nothing(tmp_path: Path, victim: str, parallel: int) -> None:
    """SIGKILL of camera cam1's acquisition or PLC worker, or of the one inference worker: only it is
    restarted; the frames or rejects it held are finished on the right camera or reported by part
    id (each camera's part ids go on where they stopped, each reject on its own coil once); the run
    reconciles per camera. While cam1's acquisition is down the other cameras' frames are decided by
    the model; with cameras, a SIGHUP reload of the deadline replaces the inference worker the same way.
    With ``model.parallel = 2`` the inference worker, its successor and the reloaded one each run two
    sessions over all three cameras' frames."""
    names = ["cam0", "cam1", "cam2"]
    plc = sim()
    sessions = {"warmup_runs = 50": f"warmup_runs = 50\nparallel = {parallel}"}
    run = LinegateRun(tmp_path, plc.port, {**NO_DEVICE, **sessions}, append=cameras(["0", "1", "2"]))
    try:
        run.wait_frames(150)
        recovered = kill_one(run, victim, None if victim == "infer" else "cam1")
        if victim == "infer":
            run.config.write_text(run.config.read_text().replace("budget_ms = 50.0", "budget_ms = 45.0"))
            run.proc.send_signal(signal.SIGHUP)
            run.wait_event("reload_applied", timeout_s=60)
            run.wait_frames(150)
        stderr = run.stop()
        time.sleep(0.3)
    finally:
        plc.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    (died,) = [r for r in recs if r["event"] == "worker_died"]
    job = "infer#" if victim == "infer" else f"{victim}-cam1#"
    assert died["worker"].startswith(job) and recovered["worker"].startswith(job) and "SIGKILL" in died["error"]
    assert died.get("camera") == (None if victim == "infer" else "cam1")
    check_each_camera(recs, plc, names)
    (summary,) = [r for r in recs if r["event"] == "run_summary"]
    assert summary["worker_restarts"] == 1 and summary["reloads"] == (1 if victim == "infer" else 0)
    ready = [r.get("parallel", 1) for r in recs if r["event"] == "engine_ready"]
    assert len(ready) == (3 if victim == "infer" else 1) and set(ready) == {parallel}, ready
    if victim == "acquire":  # while cam1 was down, the others went on: model verdicts inside the outage
        frames = by_camera(recs, "frame")
        down = [r for r in frames["cam0"] + frames["cam2"]
                if died["t_ns"] < r["t_acquired_ns"] < recovered["t_ns"] and r["basis"] == "model"]  # fmt: skip
        assert down, "no frame of the other cameras was decided while cam1's worker was down"


def test_a_camera_that_is_not_there_is_its_own_fault_and_the_others_inspect(tmp_path: Path) -> None:
    """Three cameras configured, the third (serial 9) not on the network: the fault names it, its
    fault coil stays ON, the other two cameras' fault coils go OFF and their frames are inspected,
    and the run's end does not say all is well."""
    names = ["cam0", "cam1", "cam9"]
    plc = sim()
    run = LinegateRun(tmp_path, plc.port, NO_DEVICE, append=cameras(["0", "1", "9"], fault_coils=True))
    try:
        run.wait_event("inspection_suspended", timeout_s=60)
        run.wait_frames(200)
        status = run_linegate("status", "--config", str(run.config))
        stderr = run.stop()
        time.sleep(0.3)
    finally:
        plc.stop()
    recs = run.records()
    faults = [f for r in recs if r["event"] == "inspection_suspended" for f in r["faults"]]
    assert faults and all(f.startswith("camera cam9: ") for f in faults), faults
    assert any("camera down" in f for f in faults), faults
    opened = [r for r in recs if r["event"] == "camera_open_failed"]
    assert opened and all(r["camera"] == "cam9" for r in opened), opened
    assert "cameras.2.device.serial_number='9'" in opened[0]["error"], opened[0]  # its entry's key
    frames = by_camera(recs, "frame")
    assert sorted(frames) == ["cam0", "cam1"] and min(len(f) for f in frames.values()) >= 50
    edges: dict[int, list[int]] = {}
    for e in plc.edges:
        edges.setdefault(e["coil"], []).append(e["value"])
    assert 0 in edges.get(20, []) and 0 in edges.get(21, []), edges  # cam0, cam1: released, inspecting
    assert edges.get(22) == [1], edges  # cam9: ON from the start, never released
    (summary,) = [r for r in recs if r["event"] == "run_summary"]
    assert any(item.startswith("camera cam9: ") for item in summary["lasting"]), summary["lasting"]
    assert "NOT WELL camera cam9: camera down" in stderr, stderr  # a fault that lasts is never "all is well"
    # what maintenance reads meanwhile: the station is in fault, and which camera is and which is not
    assert status.returncode == 1 and "FAULT - camera cam9: camera down" in status.stdout, status.stdout
    assert re.search(r"camera cam0: inspecting, frames \d+", status.stdout), status.stdout
    assert "camera cam9: NOT INSPECTING, CAMERA DOWN, frames 0" in status.stdout, status.stdout
    for name in names[:2]:
        ids = sorted(r["part_id"] for r in frames[name])
        assert ids == list(range(1, len(ids) + 1)), name


def test_handshake_mode_each_camera_on_its_own_plc_gets_each_result_once(tmp_path: Path) -> None:
    """handshake mode, results = "all", two cameras whose ejectors are on two PLCs (two simulated
    PLCs): each PLC takes exactly its camera's verdicts, one result per frame, pass or reject, and
    acknowledges them; nothing of one camera reaches the other's PLC."""
    first, second = handshake_sim(), handshake_sim()
    names = ["cam0", "cam1"]
    entries = (
        '\n[[cameras]]\nname = "cam0"\ndevice = { serial_number = "0" }\n'
        '\n[[cameras]]\nname = "cam1"\ndevice = { serial_number = "1" }\n'
        f"plc = {{ modbus = {{ port = {second.port} }} }}\n"
    )
    mode = {'mode = "pulse"': 'mode = "handshake"\nhandshake = { results = "all" }'}
    config, _ = demo_config_file(tmp_path, first.port, {**NO_DEVICE, **mode}, append=entries)
    done, log = bounded_run(tmp_path, config, first, second)
    taken = {name: plc.results for name, plc in zip(names, (first, second), strict=True)}
    check_results_taken_once(records(log), done, taken)


@pytest.mark.parametrize("protocol", ["modbus", "s7"])
def test_handshake_two_cameras_on_one_plc_each_block_takes_its_camera_once(tmp_path: Path, protocol: str) -> None:
    """handshake mode, results = "all", two cameras whose ejectors are on one PLC (one simulated
    PLC serving two interface blocks, each with its own program, as a station PLC would): each
    block takes exactly its camera's verdicts, one result per frame, and nothing of one camera
    reaches the other's block. Over Modbus the blocks are at registers 100 and 132, over S7 at
    bytes 0 and 64 of DB 100."""
    port = free_port()
    mode = {'mode = "pulse"': 'mode = "handshake"\nhandshake = { results = "all" }'}
    if protocol == "modbus":
        sim_args = ["--mode", "handshake", "--register-base", "100", "--blocks", "2"]
        second, link = "[cameras.plc.modbus]\nregister_base = 132\n", ""
    else:
        sim_args = ["--protocol", "s7", "--mode", "handshake", "--byte-base", "0", "--blocks", "2"]
        second = "[cameras.plc.s7]\nbyte_base = 64\n"
        link = f'\n[plc.s7]\nhost = "127.0.0.1"\nport = {port}\ntimeout_ms = 50.0\ndb = 100\nbyte_base = 0\n'
        mode['protocol = "modbus"'] = 'protocol = "s7"'
    entries = (
        f'{link}\n[[cameras]]\nname = "cam0"\ndevice = {{ serial_number = "0" }}\n'
        f'\n[[cameras]]\nname = "cam1"\ndevice = {{ serial_number = "1" }}\n{second}'
    )
    config, _ = demo_config_file(tmp_path, port, {**NO_DEVICE, **mode}, append=entries)
    plc = PlcSimProcess(port, args=sim_args)
    done, log = bounded_run(tmp_path, config, plc)
    by_block = {name: [e for e in plc.results if e["block"] == block] for block, name in enumerate(["cam0", "cam1"])}
    check_results_taken_once(records(log), done, by_block)


def test_encoder_tracking_with_two_cameras_fires_each_reject_on_its_own_coil(tmp_path: Path) -> None:
    """pulse mode, plc.tracking.by = "encoder", two cameras on one PLC whose program serves the belt's
    count in each camera's PLC block (registers 100 and 132): each camera's rejects are fired on its
    own coil, once each, when the belt has carried the part ejector_counts from its frame's
    acquisition (within tolerance), or reported undelivered, never both."""
    from tests.pipeline.test_encoder_pipeline import CPS, EJECTOR, SLACK, TOLERANCE, TRACKING, position

    port = free_port()
    entries = TRACKING
    for i in range(2):
        entries += (
            f'\n[[cameras]]\nname = "cam{i}"\ndevice = {{ serial_number = "{i}" }}\n'
            f"[cameras.plc.modbus]\nreject_coil = {i}\npart_id_register = {10 + 2 * i}\n"
            f"register_base = {100 + 32 * i}\n"
        )
    replace = {**NO_DEVICE, "timeout_ms = 20.0": "timeout_ms = 50.0"}
    config, _ = demo_config_file(tmp_path, port, replace, append=entries)
    sim = PlcSimProcess(port, args=["--part-id-register", "10", "--part-id-stride", "2", "--register-base", "100",
                                    "--blocks", "2", "--encoder-cps", str(CPS)])  # fmt: skip
    done, log = bounded_run(tmp_path, config, sim)
    assert sim.listening is not None and sim.listening["blocks"] == 2
    recs = records(log)
    (summary,) = [r for r in recs if r["event"] == "run_summary"]
    assert summary["problems"] == [], summary["problems"]
    for coil, name in enumerate(["cam0", "cam1"]):
        frames = {r["part_id"]: r for r in by_camera(recs, "frame")[name]}
        assert sorted(frames) == list(range(1, FRAMES + 1)), name
        rejected = {p for p, r in frames.items() if r["verdict"] == "reject"}
        delivered = {r["part_id"]: r for r in by_camera(recs, "reject_delivered").get(name, [])}
        undelivered = {r["part_id"]: r for r in by_camera(recs, "reject_undelivered").get(name, [])}
        assert rejected and set(delivered) | set(undelivered) == rejected and not set(delivered) & set(undelivered)
        assert {r["reason"] for r in undelivered.values()} <= {"too_late", "position_unknown"}, name
        assert len(undelivered) <= 0.5 * len(rejected), (name, list(undelivered.values())[:3])  # load, not tracking
        rising = [e for e in sim.edges if e["coil"] == coil and e["value"] == 1]
        assert sorted(e["part_id"] for e in rising) == sorted(delivered), name  # each one pulse, on its coil
        for e in rising:
            record = delivered[e["part_id"]]
            offset = position(sim.listening, e["t_ns"]) - position(sim.listening, frames[e["part_id"]]["t_acquired_ns"])
            in_flight = CPS * (e["t_ns"] - (record["t_pulse_ns"] - record["reading_age_ms"] * 1e6)) / 1e9
            assert EJECTOR - SLACK <= offset <= EJECTOR + TOLERANCE + in_flight + 2 * SLACK, (name, offset, record)
    assert done.returncode == (1 if summary["plc_undelivered"] else 0), done.stderr
