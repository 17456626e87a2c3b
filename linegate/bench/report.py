"""The results as a Markdown table (stdout and results.md) and as JSON (results.json)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from linegate.bench.runner import ScenarioResult, Side
from linegate.bench.stats import fmt_share

HEADER = (
    "| model | load | fps set | side | frames | achieved fps | by model | share by model | throughput fps "
    "| deadline misses | lost | in hand -> verdict p50 | p99 | p99.9 | max "
    "| in hand -> coil ON p50 | p99 | p99.9 | max | rejects at PLC |"
)
ALIGN = "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
COLUMNS = 20


def side_row(r: ScenarioResult, side: Side) -> str:
    """One table row: a side of a scenario."""
    s = r.scenario
    floor = side.side.startswith("floor")
    cells = [
        s.model, s.load, f"{s.fps:g}", side.side, str(side.frames), "-" if floor else f"{side.achieved_fps:.1f}",
        str(side.by_model),
        "-" if floor else fmt_share(side.by_model, side.camera_frames), f"{side.throughput_fps:.1f}",
        "-" if floor else str(side.deadline_misses), "-" if floor else str(side.lost),
        *side.verdict.cells(), *side.coil.cells(),
        "-" if floor else f"{side.at_plc}/{side.rejects}",
    ]
    return "| " + " | ".join(cells) + " |"


def skipped_row(model: str, why: str) -> str:
    return "| " + " | ".join([model, "-", "-", why, *["-"] * (COLUMNS - 4)]) + " |"


def table(results: Sequence[ScenarioResult], skipped: dict[str, str]) -> str:
    """The Markdown table: three rows per scenario (linegate, naive, floor), one per skipped model."""
    lines = [HEADER, ALIGN]
    for r in results:
        lines += [side_row(r, side) for side in r.sides]
    lines += [skipped_row(model, why) for model, why in skipped.items()]
    return "\n".join(lines)


DRIFT = 1.15
"""The engine alone ran this much faster or slower after a side than before it: the machine's
speed drifted, and that side's share says little."""


def batch_size_of(side: str) -> str:
    """How a side runs a backlog, as its name says: "batch 4", "parallel 2", or "" (one frame at a
    time, "parallel 1" included)."""
    words = side.split()
    for i, word in enumerate(words[:-1]):
        if word in ("batch", "sessions", "parallel") and words[i + 1] != "1":
            return f"{word} {words[i + 1]}"
    return ""


def floor_shares(sides: Sequence[Side], fps: float) -> list[str]:
    """Frames decided by the model per second against the bare engine's frames per second at the
    same batch size (issue 10's overload goal: at least 0.9), where the engine at that batch size
    is slower than the camera's *fps* (else the camera, not the engine, bounds the side). The
    engine's figure is the mean of the runs right before and after the side where it has them,
    else the scenario's floor row."""
    floors = {side.side: side.throughput_fps for side in sides if side.side.startswith("floor")}
    out = []
    for side in sides:
        if not side.side.startswith("linegate"):
            continue
        size = batch_size_of(side.side)
        if side.floor_beside is not None:
            before, after = side.floor_beside
            floor = (before + after) / 2
            what = f"the engine alone at {size or 'batch 1'} beside it ({before:.1f} fps before, {after:.1f} after)"
            if max(before, after) > DRIFT * min(before, after):
                what += "; the machine's speed drifted across this side: an unreliable share"
        else:
            floor_name = f"floor {size}" if size else "floor"
            floor = floors.get(floor_name, 0.0)
            what = f"the {floor_name}'s {floor:.1f} fps"
        if floor and floor < fps:
            out.append(f"{side.side}: decided by the model {side.throughput_fps:.1f} fps = "
                       f"{side.throughput_fps / floor:.2f} x {what}")
    return out


def notes(results: Sequence[ScenarioResult]) -> list[str]:
    """One line per scenario (its rate choice) and per problem found."""
    out = []
    for r in results:
        s = r.scenario
        why = f"; {s.note}" if s.note else ""
        out.append(f"- {s.model} {s.load}: {s.fps:g} fps set, {s.frames} frames per side, deadline {r.budget_ms:g} ms"
                   f"{why} (engine floor p50 {r.floor_plan_p50_ms:.3f} ms before the scenarios)")
        for side in r.sides:
            extra = []
            if side.side.startswith("linegate"):
                other = side.fail_safe - side.dropped - side.deadline_misses
                extra.append(f"fail-safe {side.fail_safe} (dropped {side.dropped}, not started in time "
                             f"{side.deadline_misses - side.answered_late}, answered late {side.answered_late}, "
                             f"other {other}), PLC undelivered {side.undelivered}")
            if side.plc_duplicates:
                extra.append(f"{side.plc_duplicates} parts pulsed more than once")
            extra += side.problems
            if extra and not side.side.startswith("floor"):
                out.append(f"  - {side.side}: " + "; ".join(extra))
        out += [f"  - {note}" for note in r.notes]
        if s.load == "overload":
            out += [f"  - {line}" for line in floor_shares(r.sides, s.fps)]
    return out


def markdown(results: Sequence[ScenarioResult], skipped: dict[str, str], facts: dict[str, str], command: str,
             plots: Sequence[Path]) -> str:
    """results.md: command, machine, table, notes, plots."""
    machine = "\n".join(f"- {k.replace('_', ' ')}: {v}" for k, v in facts.items())
    plot_lines = "\n".join(f"- [{p.name}]({p.name})" for p in plots) or "- none (--no-plots, or matplotlib missing)"
    return (
        "# linegate bench\n\n"
        f"Made by:\n\n```sh\n{command}\n```\n\n"
        f"Machine:\n\n{machine}\n\n"
        "Times in ms, from the frame in hand (host clock right after the camera fetch returns) to the verdict "
        "and to the reject coil's rising edge at the recording PLC simulator. Columns: benchmarks/README.md.\n\n"
        f"{table(results, skipped)}\n\n"
        "Scenarios:\n\n" + "\n".join(notes(results)) + "\n\n"
        f"Plots:\n\n{plot_lines}\n"
    )


def as_json(results: Sequence[ScenarioResult], skipped: dict[str, str], facts: dict[str, str],
            command: str) -> dict[str, Any]:
    return {"command": command, "machine": facts, "skipped": skipped,
            "scenarios": [r.as_dict() for r in results]}


def write(out: Path, results: Sequence[ScenarioResult], skipped: dict[str, str], facts: dict[str, str],
          command: str, plots: Sequence[Path]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(markdown(results, skipped, facts, command, plots))
    (out / "results.json").write_text(json.dumps(as_json(results, skipped, facts, command), indent=1) + "\n")
