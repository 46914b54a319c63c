"""The report's two figures, read like the RTMDet paper's: box AP against latency, one series
per backend and machine, and box AP against params and FLOPs.

Conventions, the same in both figures and in their legends:
- a filled marker: box AP measured here (COCO val2017, all 5,000 images); a hollow marker: the
  published box AP (not measured here), drawn at our measured latency / params / FLOPs;
- black squares: the published figures themselves (the seed's latency and AP; params and
  FLOPs as published);
- a cross over a point: a latency measured under contention or GPU throttling (not judged).
Each size is labelled once, beside its rightmost point, so labels of close series never overlap.
Files are byte-stable: fixed SVG hash salt, no dates or versions in the metadata.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ..fileio import write_if_changed
from ..records import Record
from ..spec.suite import SuiteBase
from ..spec.zoo import Zoo
from .judgement import FULL_VAL2017, Mark, contention_reason, flops_field, judge_claims, primary_ap
from .merge import Machine, MergeKey

Merged = dict[MergeKey, Record]
SEED_WEIGHTS = ("mmyolo", "mmdet")  # whose AP the figures show: the seed's first


def _published_ap(zoo: Zoo, name: str) -> float | None:
    for weights in SEED_WEIGHTS:
        claim = zoo.get(name).box_ap_claim(weights)
        if claim is not None:
            return float(claim.value)
    return None


def _box_ap(merged: Merged, zoo: Zoo, name: str) -> tuple[float | None, bool]:
    """(AP in percent, measured?) of a size: a full-val2017 measurement of the seed's weights
    if there is one, else the published AP of those weights."""
    for weights in SEED_WEIGHTS:
        for (key, _), record in merged.items():
            if (key.model == name and key.check == "box_ap" and key.variant == weights
                    and key.input_size is None  # the model's own unit, not an artifact's
                    and record.status.has_measurement
                    and record.metrics.get("num_images", 0) >= FULL_VAL2017):
                if found := primary_ap(record.metrics):
                    return found[1], True
    return _published_ap(zoo, name), False


def points(merged: Merged, zoo: Zoo, suite: SuiteBase) -> dict[str, Any]:
    """Everything the figures draw, by size."""
    sizes = [zoo.get(m.name) for m in zoo.models if any(k.model == m.name for k, _ in merged)]
    series: dict[tuple[Machine, str], list[dict]] = {}
    for (key, machine), record in merged.items():
        if key.check != "latency" or machine is None or not record.status.has_measurement:
            continue
        entry = zoo.get(key.model)
        if (record.batch or 1) != 1 or (record.input_size and tuple(record.input_size)
                                        != tuple(entry.input_size)):
            continue  # the curve is per image at the zoo's input size, as the table's claims
        agreement = next((j for j in judge_claims(record, suite) if j.metric == "agreement"),
                         None)
        if agreement is not None and agreement.mark is Mark.FAILED:
            continue  # a wrong artifact's latency is no point on a speed/accuracy curve
        target = "/".join(p for p in (key.backend, key.precision, key.variant) if p)
        series.setdefault((machine, target), []).append(
            {"size": zoo.get(key.model).size, "latency": record.metrics["median_ms"],
             "unreliable": contention_reason(record) is not None})
    per_size = {}
    for m in sizes:
        ap, measured = _box_ap(merged, zoo, m.name)
        cx = next((r for (k, _), r in merged.items()
                   if k.model == m.name and k.check == "complexity"
                   and r.status.has_measurement), None)
        claims = {c.metric: float(c.value) for c in m.claims if c.metric in ("params", "flops")}
        seed = next(iter(m.claims_for("latency")), None)
        per_size[m.size] = {
            "ap": ap, "ap_measured": measured, "ap_claim": _published_ap(zoo, m.name),
            "params": cx.metrics["params"] / 1e6 if cx else None,
            "flops": cx.metrics[flops_field(cx.claim.get("flops"))] / 1e9 if cx else None,
            "params_claim": claims.get("params"), "flops_claim": claims.get("flops"),
            "seed_latency": float(seed.value) if seed else None,
            "seed_what": (f"{seed.backend} {seed.precision.upper()} on "
                          f"{seed.hardware.removeprefix('NVIDIA ')}") if seed else None}
    return {"series": series, "sizes": per_size, "order": [m.size for m in sizes]}


def _save(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for ext, meta in (("png", {"Software": None}),
                      ("svg", {"Date": None, "Creator": None, "Format": None, "Type": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, metadata=meta, dpi=120, bbox_inches="tight")
        paths.append(write_if_changed(out_dir / f"{stem}.{ext}", buf.getvalue()))
    return paths


def _legend_handles(colors_labels: list[tuple[str, str]], any_hollow: bool, any_filled: bool,
                    any_unreliable: bool, published: str | None) -> list[Any]:
    from matplotlib.lines import Line2D

    # a series is its colour (a line); what its markers mean comes in the entries below
    handles = [Line2D([], [], color=c, linewidth=2, label=label) for c, label in colors_labels]
    if published:
        handles.append(Line2D([], [], color="black", marker="s", markerfacecolor="white",
                              linestyle="--", label=published))
    if any_filled:
        handles.append(Line2D([], [], color="gray", marker="o", markerfacecolor="gray",
                              linestyle="none", label="filled: box AP measured here"))
    if any_hollow:
        handles.append(Line2D([], [], color="gray", marker="o", markerfacecolor="white",
                              linestyle="none", label="hollow: box AP as published"))
    if any_unreliable:
        handles.append(Line2D([], [], color="red", marker="x", linestyle="none",
                              label="contended/throttled: not judged"))
    return handles


def _label_sizes(ax: Any, placed: dict[str, tuple[float, float]], left: bool = False) -> None:
    """Each size once, right of its rightmost point (``left``: left of its leftmost)."""
    for size, (x, y) in placed.items():
        ax.annotate(size, (x, y), textcoords="offset points", xytext=(-7 if left else 6, -3),
                    ha="right" if left else "left", fontsize=8)


def plot_ap_vs_latency(data: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    sizes, order = data["sizes"], data["order"]
    rightmost: dict[str, tuple[float, float]] = {}
    leftmost: dict[str, tuple[float, float]] = {}
    legend: list[tuple[str, str]] = []
    hollow = filled = unreliable = False
    ordered = sorted(data["series"].items(), key=lambda i: (i[0][0], i[0][1]))
    for n, ((machine, target), pts) in enumerate(ordered):
        color = colors[n % len(colors)]
        pts = sorted((p for p in pts if sizes[p["size"]]["ap"] is not None),
                     key=lambda p: order.index(p["size"]))
        if not pts:
            continue
        xs = [p["latency"] for p in pts]
        ys = [sizes[p["size"]]["ap"] for p in pts]
        ax.plot(xs, ys, color=color, linewidth=1.2, alpha=0.7)
        for p, x, y in zip(pts, xs, ys, strict=True):
            measured = sizes[p["size"]]["ap_measured"]
            filled, hollow = filled or measured, hollow or not measured
            ax.scatter([x], [y], s=42, marker="o", color=color if measured else "white",
                       edgecolors=color, linewidths=1.4, zorder=3)
            if p["unreliable"]:
                unreliable = True
                ax.scatter([x], [y], s=70, marker="x", color="red", zorder=4)
            if x >= rightmost.get(p["size"], (0, 0))[0]:
                rightmost[p["size"]] = (x, y)
            if x <= leftmost.get(p["size"], (float("inf"), 0))[0]:
                leftmost[p["size"]] = (x, y)
        legend.append((color, f"{target} on {machine.label.removeprefix('NVIDIA ')}"))
    published = [(s, v) for s, v in sizes.items()
                 if v["seed_latency"] and v["ap_claim"] is not None]
    what = None
    if published:
        what = f"published: {published[0][1]['seed_what']}"
        xs = [v["seed_latency"] for _, v in published]
        ys = [v["ap_claim"] for _, v in published]
        ax.plot(xs, ys, color="black", linestyle="--", linewidth=1, alpha=0.7)
        ax.scatter(xs, ys, s=42, marker="s", color="white", edgecolors="black", linewidths=1.4,
                   zorder=3)
        for s, v in published:
            if v["seed_latency"] >= rightmost.get(s, (0, 0))[0]:
                rightmost[s] = (v["seed_latency"], v["ap_claim"])
            if v["seed_latency"] <= leftmost.get(s, (float("inf"), 0))[0]:
                leftmost[s] = (v["seed_latency"], v["ap_claim"])
        hollow = True
    _label_sizes(ax, rightmost)
    if leftmost and max(x for x, _ in rightmost.values()) > 8 * min(x for x, _ in
                                                                    leftmost.values()):
        _label_sizes(ax, leftmost, left=True)  # a second cluster far to the left
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("latency: median ms per image, batch 1, no NMS (log scale)")
    ax.set_ylabel("COCO val2017 box AP")
    ax.set_title("RTMDet: box AP vs latency", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles=_legend_handles(legend, hollow, filled, unreliable, what), fontsize=7.5,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    try:
        return _save(fig, out_dir, "ap_vs_latency")
    finally:
        plt.close(fig)


def plot_complexity_vs_ap(data: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4), sharey=True)
    sizes, order = data["sizes"], data["order"]
    hollow = filled = False
    for ax, key, label in ((axes[0], "params", "parameters (M)"),
                           (axes[1], "flops", "FLOPs at 640×640 (G)")):
        sel = [s for s in order if sizes[s][key] is not None and sizes[s]["ap"] is not None]
        xs = [sizes[s][key] for s in sel]
        ys = [sizes[s]["ap"] for s in sel]
        ax.plot(xs, ys, color="tab:blue", linewidth=1.2, alpha=0.7)
        for s, x, y in zip(sel, xs, ys, strict=True):
            measured = sizes[s]["ap_measured"]
            filled, hollow = filled or measured, hollow or not measured
            ax.scatter([x], [y], s=42, marker="o", color="tab:blue" if measured else "white",
                       edgecolors="tab:blue", linewidths=1.4, zorder=3)
        claimed = [(sizes[s][f"{key}_claim"], sizes[s]["ap_claim"]) for s in sel
                   if sizes[s][f"{key}_claim"] is not None]
        if claimed:
            ax.scatter([c[0] for c in claimed], [c[1] for c in claimed], s=14, marker="s",
                       color="black", zorder=4)
        _label_sizes(ax, {s: (x, y) for s, x, y in zip(sel, xs, ys, strict=True)})
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("COCO val2017 box AP")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="black", marker="s", linestyle="none", markersize=4,
                      label="params / FLOPs as published")]
    if filled:
        handles.append(Line2D([], [], color="tab:blue", marker="o", markerfacecolor="tab:blue",
                              label="measured here; box AP measured here"))
    if hollow:
        handles.append(Line2D([], [], color="tab:blue", marker="o", markerfacecolor="white",
                              label="measured here; box AP as published"))
    axes[1].legend(handles=handles, fontsize=7.5, loc="lower right")
    fig.suptitle("RTMDet: size and compute vs box AP", fontsize=11)
    try:
        return _save(fig, out_dir, "complexity_vs_ap")
    finally:
        plt.close(fig)


def render_plots(merged: Merged, zoo: Zoo, suite: SuiteBase, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context({"svg.hashsalt": "rtmbench", "svg.fonttype": "path",
                                "font.family": "DejaVu Sans", "path.simplify": True}):
        data = points(merged, zoo, suite)
        return plot_ap_vs_latency(data, out_dir) + plot_complexity_vs_ap(data, out_dir)
