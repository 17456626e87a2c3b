"""handshake mode end to end: `linegate run` against a simulated PLC (`plc-sim --mode handshake`):
part ids from the PLC and a result for every frame."""

from __future__ import annotations

from pathlib import Path

from tests.pipeline.harness import LinegateRun, assert_every_frame_and_reject_accounted, handshake_sim


def test_part_ids_continue_the_plc_numbering(tmp_path: Path) -> None:
    """plc.part_ids = "plc": the camera waits for the PLC's plc_part_id, then every frame's part id
    continues from it, one per frame, and each reject reaches the PLC once under that id."""
    sim = handshake_sim("--plc-part-id", "500000")
    try:
        run = LinegateRun(tmp_path, sim.port, {'mode = "pulse"': 'mode = "handshake"\npart_ids = "plc"'})
        run.wait_event("inspection_resumed", timeout_s=60)
        run.wait_frames(100)
        stderr = run.stop()
    finally:
        sim.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    assert_every_frame_and_reject_accounted(recs, [int(e["part_id"]) for e in sim.results])
    ids = sorted(int(r["part_id"]) for r in recs if r["event"] == "frame")
    assert ids == list(range(500_000, 500_000 + len(ids))), ids[:5]
    assert [r["first_part_id"] for r in recs if r["event"] == "part_ids_follow_plc"] == [500_000]



def test_results_all_gives_the_plc_every_verdict_once(tmp_path: Path) -> None:
    """handshake.results = "all": the PLC gets one result per frame, with the frame's verdict, pass or
    reject, each once; the summary reconciles pass results as well as rejects."""
    sim = handshake_sim()
    try:
        run = LinegateRun(tmp_path, sim.port, {'mode = "pulse"': 'mode = "handshake"\nhandshake = { results = "all" }'})
        run.wait_event("inspection_resumed", timeout_s=60)
        run.wait_frames(200)
        stderr = run.stop()
    finally:
        sim.stop()
    assert run.proc.returncode == 0, stderr
    recs = run.records()
    rejects = [int(e["part_id"]) for e in sim.results if e["verdict"] == 2]
    assert_every_frame_and_reject_accounted(recs, rejects)
    frames = {int(r["part_id"]): r["verdict"] for r in recs if r["event"] == "frame"}
    at_plc = {int(e["part_id"]): ("pass", "reject")[e["verdict"] - 1] for e in sim.results}
    assert len(at_plc) == len(sim.results), "a part id taken twice by the PLC"
    assert at_plc == frames, sorted(set(at_plc.items()) ^ set(frames.items()))[:10]
    (summary,) = [r for r in recs if r["event"] == "run_summary"]
    assert summary["plc_pass_delivered"] == sum(v == "pass" for v in frames.values())
