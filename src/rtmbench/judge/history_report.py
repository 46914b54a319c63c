"""``rtmbench report --history DIR``: each machine's runs over time, one plot per metric.

For every machine fingerprint in DIR (:mod:`rtmbench.records.fingerprint`) and every metric
(latency as the ratio to the same-run reference, box AP, agreement AP): each unit's value per
run, the runs in date order along x (labelled by short commit), the significant steps of each
series (:mod:`.steps`, as ``gate --history`` finds them) drawn as dashed lines at the run they
start at, contended or throttled runs drawn apart (a cross, not joined to the line: not
judged), failed and interrupted runs as red triangles on the bottom edge (no value). The
plots and ``history.md`` (machines, runs, steps) go to ``reports/local/`` or ``--out-dir``;
like the other plots they are a pure function of the records (fixed metadata).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import write_if_changed
from ..records import Record, Run, UnitKey
from ..records.fingerprint import Fingerprint
from .history import History, NamedStep, find_steps, point, read_history, series_metrics, short
from .judgement import contention_reason

TITLES = {"latency": "latency ÷ same-run reference convolution (lower is faster)",
          "box_ap": "box AP (%)", "agreement": "agreement AP (1.0 = the same detections)"}
NAMES = {"latency": "latency", "box_ap": "box AP", "agreement": "agreement AP"}


def _keys(runs: list[Run]) -> list[UnitKey]:
    seen: dict[UnitKey, None] = {}
    for run in runs:
        for key in run.latest_by_key():
            if series_metrics(key):
                seen[key] = None
    return list(seen)


def _state(record: Record | None, metric: str) -> tuple[str, float | None]:
    """(state, value): ok / unreliable (contended, throttled) / failed / none."""
    if record is None or record.status == "not run":
        return "none", None
    if record.status == "failed":
        return "failed", None
    found = point(record, metric)
    if found is None:
        return "none", None
    return ("unreliable" if contention_reason(record) else "ok"), found[0]


def _label(key: UnitKey, metric: str) -> str:
    text = f"{key.model.removeprefix('rtmdet-')} {key.where}".strip()
    if metric == "agreement":  # two kinds in one plot: say which
        text += " vs golden detections" if key.check == "box_ap" else " vs PyTorch FP32"
    return text


def plot_metric(fp: Fingerprint, runs: list[Run], metric: str,
                series: dict[UnitKey, list[tuple[str, float | None]]],
                found: list[NamedStep], out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .plots import _save

    fig, ax = plt.subplots(figsize=(max(7.0, min(16.0, 3 + 0.28 * len(runs))), 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles, any_unreliable, any_failed = [], False, False
    labelled: dict[float, int] = {}  # step labels already at this x: the next goes below
    for n, (key, points) in enumerate(series.items()):
        color = colors[n % len(colors)]
        ok = [(i, v) for i, (s, v) in enumerate(points) if s == "ok"]
        if ok:
            ax.plot([i for i, _ in ok], [v for _, v in ok], color=color, marker="o",
                    markersize=4, linewidth=1.2)
        bad = [(i, v) for i, (s, v) in enumerate(points) if s == "unreliable"]
        if bad:
            any_unreliable = True
            ax.scatter([i for i, _ in bad], [v for _, v in bad], color=color, marker="x", s=40,
                       zorder=3)
        failed = [i for i, (s, _) in enumerate(points) if s == "failed"]
        if failed:
            any_failed = True
            ax.scatter(failed, [0.03] * len(failed), color="red", marker="v", s=36, zorder=4,
                       transform=ax.get_xaxis_transform(), clip_on=False)
        for step in (s for s in found if s.key == key):
            x = runs.index(step.run) - 0.5
            ax.axvline(x, color=color, linestyle="--", linewidth=1, alpha=0.8)
            text = (f"{step.step.change * 100:+.1f}%" if metric == "latency"
                    else f"{step.step.after.level - step.step.before.level:+.3g}")
            row = labelled.get(x, 0)
            labelled[x] = row + 1
            ax.annotate(text, (x, 0.97 - 0.055 * row), xycoords=("data", "axes fraction"),
                        xytext=(3, 0), textcoords="offset points", fontsize=7.5, color=color,
                        va="top")
        handles.append(Line2D([], [], color=color, marker="o", markersize=4,
                              label=_label(key, metric)))
    if found:
        handles.append(Line2D([], [], color="gray", linestyle="--", label="significant step"))
    if any_unreliable:
        handles.append(Line2D([], [], color="gray", marker="x", linestyle="none",
                              label="contended/throttled: not judged"))
    if any_failed:
        handles.append(Line2D([], [], color="red", marker="v", linestyle="none",
                              label="failed or interrupted (no value)"))
    every = max(1, len(runs) // 40)
    ax.set_xticks(range(0, len(runs), every))
    ax.set_xticklabels([short(r) for r in runs][::every], rotation=60, ha="right",
                       fontsize=7, family="DejaVu Sans Mono")
    ax.set_xlim(-0.6, len(runs) - 0.4)
    ax.set_xlabel("runs in date order (short commit)")
    ax.set_ylabel(TITLES[metric], fontsize=8.5)
    ax.set_title("\n".join(textwrap.wrap(f"{NAMES[metric]} on {fp.label}", 100)), fontsize=9.5)
    ax.grid(True, alpha=0.3)
    ax.legend(handles=handles, fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0)
    try:
        return _save(fig, out_dir, f"history-{fp.id}-{metric}")
    finally:
        plt.close(fig)


def machine_section(fp: Fingerprint, runs: list[Run], alpha: float,
                    out_dir: Path) -> tuple[list[str], list[Path]]:
    """The markdown of one machine and the files of its plots."""
    keys = _keys(runs)
    lines = [f"## {fp.label}", "",
             f"Fingerprint `{fp.id}`; {len(runs)} run(s), {short(runs[0])} "
             f"({runs[0].start[:10]}) … {short(runs[-1])} ({runs[-1].start[:10]}).", ""]
    written: list[Path] = []
    all_steps: list[NamedStep] = []
    for metric in ("latency", "box_ap", "agreement"):
        series = {}
        for key in keys:
            if metric not in series_metrics(key):
                continue
            points = [_state(r.latest_by_key().get(key), metric) for r in runs]
            if any(v is not None for _, v in points):
                series[key] = points
        if not series:
            continue
        found = [s for key in series for s in find_steps(key, runs, None, alpha)
                 if s.metric == metric]
        all_steps += found
        files = plot_metric(fp, runs, metric, series, found, out_dir)
        written += files
        png = next(p for p in files if p.suffix == ".png")
        lines += [f"![{NAMES[metric]} on {fp.id}]({png.name})", ""]
    lines += ["Steps (significant, Mann-Whitney U of the runs before against the runs after):",
              ""]
    lines += [f"- {s.describe()}" for s in all_steps] or ["- none"]
    return lines + [""], written


def write_history_report(directory: str | Path, out_dir: str | Path,
                         alpha: float = 0.01) -> list[Path]:
    """``history.md`` and one plot (PNG, SVG) per machine and metric; the files written."""
    import matplotlib

    history: History = read_history(directory)
    if not history.runs:
        raise InputError(f"no run files with records in {directory}; give the folder that "
                         f"holds them (e.g. results/).")
    out_dir = Path(out_dir)
    matplotlib.use("Agg")
    lines = ["# History of runs", "",
             f"Generated by `rtmbench report --history` from the {len(history.runs)} run(s) in "
             f"`{history.directory}`, one section per machine (runs of different machines "
             f"are never compared); do not edit.", ""]
    written: list[Path] = []
    machines = history.machines()
    rc: dict[str, Any] = {"svg.hashsalt": "rtmbench", "svg.fonttype": "path",
                          "font.family": "DejaVu Sans", "path.simplify": True}
    with matplotlib.rc_context(rc):
        for fp in sorted(machines, key=lambda f: (f.label, f.id)):
            section, files = machine_section(fp, machines[fp], alpha, out_dir)
            lines += section
            written += files
    written.insert(0, write_if_changed(out_dir / "history.md", "\n".join(lines).encode()))
    return written
