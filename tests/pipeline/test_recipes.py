"""Recipe changes from the PLC, end to end: `linegate run` in handshake mode against a simulated PLC
whose recipe word changes mid-run (`plc-sim --recipe-at`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.pipeline.harness import (
    MODEL,
    WIDE_BUDGET,
    LinegateRun,
    assert_every_frame_and_reject_accounted,
    handshake_sim,
)

HANDSHAKE = {'mode = "pulse"': 'mode = "handshake"'}


def recipes(*numbers: int) -> str:
    out = ""
    for n in numbers:
        out += f"""
[recipes.{n}.model]
id = "demo-ball-zone-recipe{n}"
path = "{MODEL}"
[recipes.{n}.model.preprocess]
resize = [160, 120]
[recipes.{n}.model.postprocess]
classes = ["pass", "reject"]
reject_thresholds = {{ reject = 0.5 }}
"""
    return out


def test_plc_recipe_change_switches_the_model_between_two_frames(tmp_path: Path) -> None:
    """Recipe 1 from the start, recipe 2 later: each switch is a warm hand-over; every frame has a
    model verdict from one model or the next, in order, and every result reaches the PLC once
    (a wide budget: WIDE_BUDGET says why)."""
    sim = handshake_sim("--recipe", "1", "--timeline-from", "ready", "--recipe-at", "4000:2")
    try:
        run = LinegateRun(tmp_path, sim.port, HANDSHAKE | WIDE_BUDGET, append=recipes(1, 2))
        run.wait_event("recipe_selected", 2, timeout_s=60)
        run.wait_event("reload_applied", 2, timeout_s=60)
        run.wait_frames(100)
        stderr = run.stop()
    finally:
        sim.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, [int(e["part_id"]) for e in sim.results])
    assert [r["recipe"] for r in recs if r["event"] == "recipe_selected"] == [1, 2]
    frames = sorted((r for r in recs if r["event"] == "frame"), key=lambda r: r["seq"])
    assert all(r["basis"] == "model" for r in frames), [r["basis"] for r in frames if r["basis"] != "model"]
    models = [r["model"] for r in frames]
    order = list(dict.fromkeys(models))
    assert order == ["demo-ball-zone-v1", "demo-ball-zone-recipe1", "demo-ball-zone-recipe2"], order
    assert models == sorted(models, key=order.index)  # each model's frames form one run, in order
    shown = [(st["recipe"], st["recipe_switching"]) for st in sim.statuses]
    assert (0xFFFF, True) in shown and (1, False) in shown and (1, True) in shown, shown  # switching, then done
    assert shown.index((1, False)) < shown.index((1, True)) and shown[-1][0] == 2, shown


def test_recipe_without_a_model_is_a_fault_until_the_plc_names_a_known_one(tmp_path: Path) -> None:
    """A recipe the configuration does not know: FAULT in the log (inspection suspended, named), the
    vision block's fault bit set at the PLC; a known recipe ends the fault."""
    # Linegate is never ready on an unknown recipe: the script counts from its first vision block.
    sim = handshake_sim("--recipe", "7", "--timeline-from", "connect", "--recipe-at", "5000:1")
    try:
        run = LinegateRun(tmp_path, sim.port, HANDSHAKE, append=recipes(1))
        unknown = run.wait_event("recipe_unknown", timeout_s=60)
        run.wait_event("recipe_selected", timeout_s=60)
        run.wait_event("reload_applied", timeout_s=60)
        run.wait_event("inspection_resumed", timeout_s=30)
        run.wait_frames(50)
        stderr = run.stop()
    finally:
        sim.stop()
    assert run.proc.returncode == 0, stderr
    assert unknown["recipe"] == 7 and unknown["known"] == [1]
    suspended = [r for r in run.records() if r["event"] == "inspection_suspended"]
    assert any("PLC recipe 7 has no model" in " ".join(r["faults"]) for r in suspended), suspended
    assert any(e["fault"] for e in sim.statuses) and not sim.statuses[-1]["ready"]  # stopped at the end
    failed = [st for st in sim.statuses if st["recipe_failed"]]
    assert failed and failed[0]["recipe"] == 0xFFFF and any(st["fault_code"] == 7 for st in failed), failed
    assert sim.statuses[-1]["recipe"] == 1 and not sim.statuses[-1]["recipe_failed"]


def test_recipe_whose_model_fails_to_start_is_a_fault_and_the_previous_model_keeps_inspecting(tmp_path: Path) -> None:
    """Recipe 2's model file is not a model: its worker fails, the switch is refused, the running model
    stays, and the fault is named (journal, PLC: recipe_failed bit and fault code 7) until the PLC
    goes back to recipe 1."""
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    # The PLC's script counts from linegate's first ready vision block, so recipe 1 is applied first
    # however long start-up takes (a slow start had missed it).
    sim = handshake_sim("--recipe", "1", "--timeline-from", "ready", "--recipe-at", "5000:2", "--recipe-at", "12000:1")
    try:
        tables = recipes(1) + recipes(2).replace(str(MODEL), str(broken))
        # WIDE_BUDGET: the failing worker starts beside the loop; this test is not about time
        run = LinegateRun(tmp_path, sim.port, {**HANDSHAKE, **WIDE_BUDGET}, append=tables)
        run.wait_event("reload_failed", timeout_s=60)

        def recipe_fault() -> list[dict[str, Any]]:
            return [r for r in run.events("inspection_suspended") if any("PLC recipe 2" in f for f in r["faults"])]

        run.wait_for(lambda: bool(recipe_fault()), 30, "the recipe fault")
        (suspended, *_) = recipe_fault()
        run.wait_event("recipe_selected", 3, timeout_s=60)
        run.wait_event("inspection_resumed", 2, timeout_s=30)
        run.wait_frames(30)
        stderr = run.stop()
    finally:
        sim.stop()
    assert run.proc.returncode == 0, stderr
    assert [r["recipe"] for r in run.events("recipe_selected")] == [1, 2, 1]
    assert "PLC recipe 2 could not be applied" in " ".join(suspended["faults"]), suspended
    failed = [st for st in sim.statuses if st["recipe_failed"]]
    assert failed and all(st["recipe"] == 1 for st in failed) and any(st["fault_code"] == 7 for st in failed)
    assert sim.statuses[-1]["recipe"] == 1 and not sim.statuses[-1]["recipe_failed"]
    frames = [r for r in run.records() if r["event"] == "frame"]
    assert all(r["basis"] == "model" for r in frames) and "demo-ball-zone-recipe2" not in {r["model"] for r in frames}
