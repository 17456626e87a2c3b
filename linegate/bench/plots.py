"""PNG plots (matplotlib, Agg): latency histograms per scenario, linegate's stage breakdown over time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from linegate.bench.runner import BATCH, STAGES, ScenarioResult, Side

Floats = npt.NDArray[np.floating[Any]]

COLOURS = {"linegate": "tab:blue", "naive": "tab:orange", "floor": "tab:gray", "linegate newest_first": "tab:green",
           f"linegate batch {BATCH}": "tab:purple", f"floor batch {BATCH}": "tab:brown"}


def colour(side: str) -> str:
    """linegate (in its configured backlog order) blue, the other order green, batching purple, naive
    orange, floor gray (at the batch size: brown)."""
    return COLOURS.get(side, COLOURS["linegate"])


def matplotlib_missing() -> str:
    """Why plots cannot be drawn here ("" when matplotlib is importable)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed (pip install 'linegate[bench]')"
    return ""


def write_plots(results: Sequence[ScenarioResult], out: Path) -> list[Path]:
    """Two PNGs per scenario; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"axes.formatter.min_exponent": 3})  # 0.01 ... 100 as plain numbers on log axes
    paths = []
    for r in results:
        name = f"{r.scenario.model}-{r.scenario.load}"
        paths.append(histograms(plt, r, out / f"latency-{name}.png"))
        linegate = next(s for s in r.sides if s.side.startswith("linegate"))
        paths.append(stage_breakdown(plt, r, linegate, out / f"stages-{name}.png"))
    return paths


def log_bins(sides: Sequence[Side], attr: str, count: int = 60) -> Floats:
    values = np.concatenate([np.asarray(getattr(s, attr), dtype=np.float64) for s in sides] or [np.zeros(0)])
    values = values[values > 0]
    if values.size == 0:
        return np.logspace(-2, 3, count)
    return np.logspace(np.log10(values.min() * 0.9), np.log10(values.max() * 1.1), count)


def histograms(plt: Any, r: ScenarioResult, path: Path) -> Path:
    """In hand -> verdict (with the engine floor) and in hand -> coil ON, linegate vs naive, log-scale ms."""
    s = r.scenario
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    at_plc = [x for x in r.sides if not x.side.startswith("floor")]
    panels = (("verdict_ms", "frame in hand -> verdict", r.sides),
              ("coil_ms", "frame in hand -> coil ON at the PLC", at_plc))
    for ax, (attr, title, sides) in zip(axes, panels, strict=True):
        bins = log_bins(sides, attr)
        for side in sides:
            values = getattr(side, attr)
            if values:
                p99 = float(np.percentile(values, 99))
                ax.hist(values, bins=bins, histtype="step", linewidth=1.5, color=colour(side.side),
                        label=f"{side.side} (n={len(values)}, p99 {p99:.2f} ms)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ms")
        ax.set_ylabel("frames" if attr == "verdict_ms" else "rejects")
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no rejects", transform=ax.transAxes, ha="center")
    fig.suptitle(f"{s.model}, {s.load}: {s.fps:g} fps set, {s.frames} frames per side")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def binned(t_s: Floats, values: Floats, edges: Floats, how: Any) -> Floats:
    idx = np.clip(np.digitize(t_s, edges) - 1, 0, len(edges) - 2)
    return np.array([how(values[idx == i]) if np.any(idx == i) else np.nan for i in range(len(edges) - 1)])


def stage_breakdown(plt: Any, r: ScenarioResult, side: Side, path: Path, bins: int = 80) -> Path:
    """linegate's mean time per stage in time bins (stacked), and each bin's worst end-to-end."""
    s = r.scenario
    fig, ax = plt.subplots(figsize=(12, 4.5))
    t = np.asarray(side.t_s, dtype=np.float64)
    if t.size:
        edges = np.linspace(0.0, float(t.max()) + 1e-9, min(bins, max(2, t.size // 5)) + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        means = [binned(t, np.asarray(side.stages[k], dtype=np.float64), edges, np.mean) for k in STAGES]
        ax.stackplot(centres, np.nan_to_num(np.vstack(means)), labels=[k[:-3] for k in STAGES], alpha=0.85)
        total = np.sum([np.asarray(side.stages[k], dtype=np.float64) for k in STAGES], axis=0)
        ax.plot(centres, binned(t, total, edges, np.max), color="black", linewidth=1, label="max (sum of stages)")
    ax.set_xlabel("s since the first frame")
    ax.set_ylabel("ms")
    ax.set_title(f"linegate stage breakdown over time (model-decided frames, mean per bin): {s.model}, {s.load}, "
                 f"{s.fps:g} fps set")
    ax.legend(fontsize=8, loc="upper right", ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
