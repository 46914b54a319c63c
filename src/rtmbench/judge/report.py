"""Report: the seed's table, claimed vs measured, from records; plots; the README's block.

Output is a pure function of the records: no clock, no host name, fixed plot metadata (SVG
hash salt, no dates or software versions in PNG/SVG), so regenerating changes no byte.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError
from ..fileio import write_if_changed
from ..records import Record, Run, UnitKey, latest_run, load_usable_run
from ..spec.suite import SuiteBase, load_suite
from ..spec.zoo import Zoo, load_zoo
from .judgement import Judgement, Mark, flops_field, judge_claims, primary_ap

Records = dict[UnitKey, Record]

START, END = "<!-- results:start -->", "<!-- results:end -->"
MARK = {True: "✅", False: "❌", None: "⚪"}
LEGEND = ("✅ matches the published claim · ❌ misses it · ⚪ measured, no comparable claim "
          "(other hardware, a data subset, or none published) · *not run [n]*: see the reason "
          "below · ⛔ the check failed (for latency also: the timed artifact's detections disagree "
          "with the PyTorch model) · agr: agreement AP of the timed artifact with the PyTorch FP32 "
          "model (1.0 = the same detections) · ⚠️ measured under contention or GPU throttling: "
          "not judged, see the note")
PLOTS = ("ap_vs_latency", "complexity_vs_ap")


@dataclass
class Footnotes:
    reasons: list[str] = field(default_factory=list)

    def ref(self, reason: str | None) -> str:
        reason = " ".join((reason or "no reason recorded").split())
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"[{self.reasons.index(reason) + 1}]"

    def markdown(self) -> str:
        return "\n".join(f"{i}. {r}" for i, r in enumerate(self.reasons, 1))


def merge_runs(runs: list[Run]) -> Records:
    """Records by unit; a later run's record replaces an earlier one for the same unit, except
    that a "not run" never hides a measurement another run made (runs from a CPU machine and a
    GPU machine combine into one table)."""
    merged: Records = {}
    for run in runs:
        for key, record in run.latest_by_key().items():
            kept = merged.get(key)
            if record.status == "not run" and kept is not None and kept.status != "not run":
                continue
            merged[key] = record
    return merged


def _claim_text(claim: dict[str, Any] | None) -> str:
    return f"{claim['value']:.{claim.get('decimals', 2)}f}" if claim else "—"


def _cell(record: Record | None, claim: dict | None, measured: str | None,
          judgement: Judgement | None, notes: Footnotes) -> str:
    """'claimed → measured mark' for one metric of one model."""
    claimed = _claim_text(claim)
    if record is None:
        return f"{claimed} → *not in run*"
    if record.status == "not run":
        return f"{claimed} → *not run {notes.ref(record.reason)}*"
    if record.status == "failed":
        return f"{claimed} → ⛔ failed {notes.ref(record.reason)}"
    mark = judgement.mark if judgement else Mark.NOT_COMPARABLE
    if mark is Mark.UNRELIABLE:
        return f"{claimed} → {measured} ⚠️ {notes.ref(judgement.text)}"
    return f"{claimed} → {measured} {MARK[mark.ok]}"


def _latency_cell(record: Record | None, claim: dict | None, measured: str, suite: SuiteBase,
                  notes: Footnotes) -> str:
    """A latency cell; with the timed artifact's agreement AP when it was checked
    ("agr 0.998"), and ⛔ when it disagrees with the PyTorch model (a failed unit)."""
    agreement = _judged(record, "agreement", suite)
    if agreement is not None and agreement.red:
        return f"{_claim_text(claim)} → {measured} ⛔ {notes.ref(agreement.text)}"
    cell = _cell(record, claim, measured, _judged(record, "latency", suite), notes)
    if agreement is not None:
        cell += f" · agr {record.metrics['agreement_ap']:.3f}"
    return cell


def _zoo_claim(zoo: Zoo, model: str, metric: str, **match: str) -> dict[str, Any] | None:
    entry = zoo.get(model)
    for c in entry.claims_for(metric):
        if all(getattr(c, k) == v for k, v in match.items()):
            return entry.claim_record(c)
    return None


def box_ap_variants(records: Records) -> list[str | None]:
    """The weights ids evaluated for box AP, in a stable order (the seed's mmyolo first)."""
    found = {k.variant for k in records if k.check == "box_ap"}
    return sorted(found, key=lambda v: (v != "mmyolo", str(v))) or [None]


def latency_targets(records: Records) -> list[tuple[str, ...]]:
    """(backend, device, precision) of every latency column, plus the variant where a unit has
    one (ONNX Runtime's execution provider, e.g. ``tensorrt-ep``)."""
    order = {"torch": 0, "onnxruntime": 1, "tensorrt": 2}
    found = {_target(k) for k in records if k.check == "latency"}
    return sorted(found, key=lambda t: (t[1] != "cpu", order.get(t[0], 9), t))


def _target(key: UnitKey) -> tuple[str, ...]:
    return (key.backend, key.device, key.precision) + ((key.variant,) if key.variant else ())


def _judged(record: Record | None, metric: str, suite: SuiteBase) -> Judgement | None:
    if record is None:
        return None
    return next((j for j in judge_claims(record, suite) if j.metric == metric), None)


def _find(records: Records, **match: Any) -> Record | None:
    return next((r for k, r in records.items()
                 if all(getattr(k, f) == v for f, v in match.items())), None)


def table_frame(records: Records, zoo: Zoo, notes: Footnotes,
                suite: SuiteBase | None = None) -> pd.DataFrame:
    suite = suite or load_suite("reproduce", zoo)
    models = [m.name for m in zoo.models if any(k.model == m.name for k in records)]
    rows = []
    for name in models:
        row: dict[str, str] = {"model": name}
        cx = _find(records, model=name, check="complexity")
        for metric, scale, head in (("params", 1e6, "params (M)"), ("flops", 1e9, "FLOPs (G)")):
            claim = cx.claim.get(metric) if cx else _zoo_claim(zoo, name, metric)
            field_ = "params" if metric == "params" else flops_field(claim)
            value = cx.metrics.get(field_) if cx else None
            measured = f"{value / scale:.3f}" if value is not None else "—"
            row[head] = _cell(cx, claim, measured, _judged(cx, metric, suite), notes)
        for variant in box_ap_variants(records):
            ap = _find(records, model=name, check="box_ap", variant=variant)
            claim = (ap.claim.get("box_ap") if ap
                     else _zoo_claim(zoo, name, "box_ap", **({"weights": variant} if variant
                                                             else {})))
            found = primary_ap(ap.metrics) if ap else None
            measured = f"{found[1]:.2f}" if found else "—"
            if ap is not None and ap.status.has_measurement:
                measured += f" ({ap.metrics.get('num_images', '?')} img)"
            head = f"box AP ({variant} weights)" if variant else "box AP"
            row[head] = _cell(ap, claim, measured, _judged(ap, "box_ap", suite), notes)
        for target in latency_targets(records):
            rec = _find(records, model=name, check="latency", backend=target[0],
                        device=target[1], precision=target[2],
                        variant=target[3] if len(target) > 3 else None)
            claim = (rec.claim.get("latency") if rec else None)
            median = rec.metrics.get("median_ms") if rec else None
            row[f"latency {'/'.join(target)} (ms)"] = _latency_cell(
                rec, claim, f"{median:.2f}" if median is not None else "—", suite, notes)
        rows.append(row)
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub table from a frame (pandas' own needs the optional 'tabulate')."""
    frame = frame.reset_index() if frame.index.name else frame
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for values in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |")
    return "\n".join(lines)


def environment_frame(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        first = run.records[0].provenance if run.records else {}
        dates = sorted(r.provenance.get("date", "") for r in run.records)
        git = first.get("git") or {}
        hw = first.get("hardware") or {}
        pk = first.get("packages") or {}
        rows.append({
            "run": run.run_id, "suite": (first.get("suite") or {}).get("name", "—"),
            "date (UTC)": f"{dates[0]} … {dates[-1]}" if dates else "—",
            "commit": (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty")
                                                              else ""),
            "hardware": f"{hw.get('cpu', '?')} ({hw.get('cores', '?')} cores), GPU: "
                        f"{hw.get('gpu') or 'none'}",
            "software": ", ".join(f"{k} {pk[k]}" for k in ("python", "torch", "onnxruntime",
                                                           "tensorrt", "pycocotools") if k in pk),
            "records": str(len(run.records))})
    return pd.DataFrame(rows)


def verdicts_frame(records: Records, suite: SuiteBase) -> pd.DataFrame:
    rows = []
    for key in sorted(records, key=lambda k: tuple(str(p) for p in k.model_dump().values())):
        rec = records[key]
        where = key.where or "—"
        texts = [f"{j.metric}: {j.text}" for j in sorted(judge_claims(rec, suite),
                                                          key=lambda j: j.metric)]
        rows.append({"model": rec.model, "check": rec.check, "where": where,
                     "status": rec.status,
                     "verdict": "; ".join(texts) or (rec.reason or "—")})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ plots
def _points(records: Records, zoo: Zoo) -> list[dict[str, Any]]:
    """Per model: measured AP (or the claimed one, flagged), params, FLOPs and latencies."""
    out = []
    for m in zoo.models:
        if not any(k.model == m.name for k in records):
            continue
        ap_rec = _find(records, model=m.name, check="box_ap")
        found = (primary_ap(ap_rec.metrics) if ap_rec and ap_rec.status.has_measurement
                 else None)
        claim = (ap_rec.claim.get("box_ap") if ap_rec
                 else _zoo_claim(zoo, m.name, "box_ap"))
        cx = _find(records, model=m.name, check="complexity")
        flops_conv = ((cx.claim.get("flops") or {}).get("convention", "mmengine")
                      if cx else "mmengine")
        out.append({
            "size": m.size,
            "ap": found[1] if found else (claim["value"] if claim else None),
            "ap_measured": found is not None,
            "params": cx.metrics["params"] / 1e6 if cx and "params" in cx.metrics else None,
            "flops": (cx.metrics.get(f"flops_{flops_conv}", 0) / 1e9) if cx else None,
            "latency": {_target(k): r.metrics["median_ms"]
                        for k, r in records.items()
                        if k.model == m.name and k.check == "latency"
                        and r.status.has_measurement},
            "claimed_latency": _zoo_claim(zoo, m.name, "latency")})
    return out


def _save(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    paths = []
    for ext, meta in (("png", {"Software": None}),
                      ("svg", {"Date": None, "Creator": None, "Format": None, "Type": None})):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, metadata=meta, dpi=120, bbox_inches="tight")
        paths.append(write_if_changed(out_dir / f"{stem}.{ext}", buf.getvalue()))
    return paths


def _scatter(ax: Any, xs: list, ys: list, labels: list, measured: list, label: str,
             marker: str, color: str) -> None:
    ax.plot(xs, ys, color=color, linewidth=1, alpha=0.6)
    for x, y, text, filled in zip(xs, ys, labels, measured, strict=True):
        ax.scatter([x], [y], marker=marker, s=40, color=color if filled else "white",
                   edgecolors=color, zorder=3)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.plot([], [], marker=marker, color=color, label=label)


def plot_ap_vs_latency(points: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    targets = sorted({t for p in points for t in p["latency"]})
    for i, target in enumerate(targets):
        sel = [p for p in points if target in p["latency"] and p["ap"] is not None]
        _scatter(ax, [p["latency"][target] for p in sel], [p["ap"] for p in sel],
                 [p["size"] for p in sel], [p["ap_measured"] for p in sel],
                 f"measured {'/'.join(target)}", "o", colors[i % len(colors)])
    pub = [p for p in points if p["claimed_latency"] and p["ap"] is not None]
    if pub:
        c = pub[0]["claimed_latency"]
        _scatter(ax, [p["claimed_latency"]["value"] for p in pub],
                 [p["ap"] for p in pub], [p["size"] for p in pub], [True] * len(pub),
                 f"published AP and latency: {c.get('backend')} {c.get('precision')} on "
                 f"{c.get('hardware')}",
                 "s", "black")
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("latency, median ms per image (log scale)")
    ax.set_ylabel("COCO box AP")
    ax.set_title("RTMDet: box AP vs latency\n(hollow markers: claimed AP, not measured here)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    try:
        return _save(fig, out_dir, "ap_vs_latency")
    finally:
        plt.close(fig)


def plot_complexity_vs_ap(points: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, key, label in ((axes[0], "params", "parameters (M)"),
                           (axes[1], "flops", "FLOPs at 640×640 (G)")):
        sel = [p for p in points if p[key] is not None and p["ap"] is not None]
        _scatter(ax, [p[key] for p in sel], [p["ap"] for p in sel], [p["size"] for p in sel],
                 [p["ap_measured"] for p in sel], "filled: measured AP · hollow: claimed AP",
                 "o", "tab:blue")
        ax.set_xlabel(f"{label}, measured")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("COCO box AP")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("RTMDet: size and compute vs box AP", fontsize=10)
    try:
        return _save(fig, out_dir, "complexity_vs_ap")
    finally:
        plt.close(fig)


def render_plots(records: Records, zoo: Zoo, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context({"svg.hashsalt": "rtmbench", "svg.fonttype": "path",
                                "font.family": "DejaVu Sans", "path.simplify": True}):
        points = _points(records, zoo)
        return plot_ap_vs_latency(points, out_dir) + plot_complexity_vs_ap(points, out_dir)


# ------------------------------------------------------------------------------ files
def measured_on(records: Records) -> str:
    """Which machine each latency column was measured on (runs from several machines mix)."""
    machines: dict[tuple, set[str]] = {}
    for key, rec in records.items():
        if key.check != "latency" or not rec.status.has_measurement:
            continue
        hw = rec.provenance.get("hardware") or {}
        name = (hw.get("gpu") if key.device == "cuda" else
                f"{hw.get('cpu', '?')} ({hw.get('cores', '?')} cores)")
        machines.setdefault((key.backend, key.device, key.precision), set()).add(str(name))
    return "; ".join(f"{'/'.join(t)} on {', '.join(sorted(m))}"
                     for t, m in sorted(machines.items(), key=lambda i: (i[0][1], i[0])))


def results_block(runs: list[Run], records: Records, zoo: Zoo, image_dir: str,
                  suite: SuiteBase | None = None) -> str:
    """The table, legend, reasons and plots: the part shared by results.md and the README."""
    notes = Footnotes()
    table = to_markdown(table_frame(records, zoo, notes, suite))
    prefix = "" if image_dir in ("", ".") else image_dir.rstrip("/") + "/"
    parts = [f"From run{'s' if len(runs) > 1 else ''} "
             f"{', '.join(f'`{r.run_id}`' for r in runs)}. Each cell: claimed → measured.",
             "", table, "", LEGEND, ""]
    if where := measured_on(records):
        parts += [f"Latency measured: {where}.", ""]
    if notes.reasons:
        parts += ["Not run or failed, and why:", "", notes.markdown(), ""]
    parts += [f"![box AP vs latency]({prefix}ap_vs_latency.svg)",
              f"![params and FLOPs vs box AP]({prefix}complexity_vs_ap.svg)"]
    return "\n".join(parts)


def results_markdown(runs: list[Run], records: Records, zoo: Zoo, suite: SuiteBase) -> str:
    parts = ["# RTMDet reproduction results", "",
             "Generated by `rtmbench report` from the records under `results/`; do not edit.",
             "", results_block(runs, records, zoo, ".", suite), "", "## Environment", "",
             to_markdown(environment_frame(runs)), "", "## Every verdict", "",
             to_markdown(verdicts_frame(records, suite)), ""]
    return "\n".join(parts)


def replace_block(text: str, block: str, where: str) -> str:
    """Swap what lies between the README markers; text outside them is kept byte for byte."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise InputError(f"{where} has no '{START}' ... '{END}' block; add both markers (on "
                         f"their own lines, start before end) where the results should go.")
    return text[:start + len(START)] + "\n" + block.rstrip("\n") + "\n" + text[end:]


def load_runs(refs: list[str], results_dir: str | Path) -> list[Run]:
    """Every run given (default: the latest), each readable and free of corrupt lines."""
    return [load_usable_run(r, results_dir) for r in (refs or [latest_run(results_dir)])]


def write_report(refs: list[str], *, results_dir: str | Path = "results",
                 out_dir: str | Path = "reports", readme: str | Path | None = "README.md",
                 zoo: Zoo | None = None, suite: str | Path = "reproduce") -> list[Path]:
    zoo = zoo or load_zoo()
    tolerances = load_suite(suite, zoo)
    out_dir = Path(out_dir)
    runs = load_runs(refs, results_dir)
    records = merge_runs(runs)
    written = render_plots(records, zoo, out_dir)
    md = results_markdown(runs, records, zoo, tolerances)
    written.insert(0, write_if_changed(out_dir / "results.md", md.encode("utf-8")))
    if readme is not None:
        readme = Path(readme)
        try:
            text = readme.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"README {readme} cannot be read ({exc.strerror}); pass --readme "
                             f"PATH or --no-readme.") from None
        image_dir = os.path.relpath(out_dir.resolve(), readme.resolve().parent)
        block = results_block(runs, records, zoo, image_dir.replace(os.sep, "/"), tolerances)
        new = replace_block(text, block, str(readme))
        written.append(write_if_changed(readme, new.encode("utf-8")))
    return written
