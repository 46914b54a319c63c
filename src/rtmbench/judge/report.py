"""Report: the seed's table, one latency table per machine and one table of the timed
artifacts' box AP per machine (AP, its difference from PyTorch FP32, latency), from records;
plots; the README's block.

What it reads: every committed run under ``results/`` plus the runs it is given (later ones
take precedence for the same unit and machine; :mod:`.merge`), so a user's local run adds to
what is known instead of replacing it. Where it writes: ``reports/local/`` by default, leaving
tracked files alone; ``--publish`` writes ``reports/`` and the README's block (what maintainers
commit).

Output is a pure function of the records: no clock, no host name, fixed plot metadata, so
regenerating changes no byte.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import write_if_changed
from ..records import LOCAL, Record, Run, latest_run, list_runs, load_usable_run, resolve_run
from ..spec.suite import SuiteBase, load_suite
from ..spec.zoo import Zoo, load_zoo
from ..tables import markdown_table
from .judgement import Judgement, Mark, flops_field, judge_claims, judge_unit, primary_ap
from .merge import Machine, MergeKey, merge_runs

START, END = "<!-- results:start -->", "<!-- results:end -->"
MARK = {True: "✅", False: "❌", None: "⚪"}
LEGEND = ("✅ matches the published claim · ❌ misses it · ⚪ measured, no comparable claim "
          "(other hardware, a data subset, or none published) · ⚠️ [n] measured under "
          "contention or GPU throttling: not judged · ⛔ [n] failed (for latency also: the "
          "timed artifact's detections disagree with the PyTorch model) · *not run [n]*: a "
          "missing prerequisite · agr: agreement AP of the timed artifact with the PyTorch "
          "FP32 model (1.0 = the same detections)")
ARTIFACT_LEGEND = (" · ΔAP: a timed artifact's box AP minus the PyTorch FP32 model's on the "
                   "same images (✅ within the suite's box_ap_delta tolerance, ⛔ a larger drop)")
LOCAL_OUT = Path("reports") / "local"
Merged = dict[MergeKey, Record]


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


# ------------------------------------------------------------------------------ cells
def _claim_text(claim: dict[str, Any] | None) -> str:
    return f"{claim['value']:.{claim.get('decimals', 2)}f}" if claim else "—"


def _judged(record: Record | None, metric: str, suite: SuiteBase) -> Judgement | None:
    if record is None:
        return None
    return next((j for j in judge_claims(record, suite) if j.metric == metric), None)


def _status_cell(record: Record, notes: Footnotes) -> str | None:
    if record.status == "not run":
        return f"*not run {notes.ref(record.reason)}*"
    if record.status == "failed":
        return f"⛔ failed {notes.ref(record.reason)}"
    return None


def _marked(measured: str, judgement: Judgement | None, notes: Footnotes) -> str:
    mark = judgement.mark if judgement else Mark.NOT_COMPARABLE
    if mark is Mark.UNRELIABLE:
        return f"{measured} ⚠️ {notes.ref(judgement.text)}"
    return f"{measured} {MARK[mark.ok]}"


def _cell(record: Record | None, claim: dict | None, measured: str,
          judgement: Judgement | None, notes: Footnotes) -> str:
    """'claimed → measured mark' for one metric of one model."""
    claimed = _claim_text(claim)
    if record is None:
        return f"{claimed} → *not in the runs*"
    status = _status_cell(record, notes)
    return f"{claimed} → {status or _marked(measured, judgement, notes)}"


def latency_cell(record: Record | None, suite: SuiteBase, notes: Footnotes) -> str:
    """Median ms and its mark; ``agr`` when the timed artifact's accuracy was checked, ⛔ when
    it disagrees with the PyTorch model (a failed unit)."""
    if record is None:
        return "—"
    if status := _status_cell(record, notes):
        return status
    median = f"{record.metrics['median_ms']:.2f}"
    agreement = _judged(record, "agreement", suite)
    if agreement is not None and agreement.red:
        return f"{median} ⛔ {notes.ref(agreement.text)}"
    cell = _marked(median, _judged(record, "latency", suite), notes)
    if agreement is not None and isinstance(record.metrics.get("agreement_ap"), (int, float)):
        cell += f" · agr {record.metrics['agreement_ap']:.3f}"
    return cell


def _zoo_claim(zoo: Zoo, model: str, metric: str, **match: str) -> dict[str, Any] | None:
    entry = zoo.get(model)
    for c in entry.claims_for(metric):
        if all(getattr(c, k) == v for k, v in match.items()):
            return entry.claim_record(c)
    return None


def _find(merged: Merged, **match: Any) -> Record | None:
    """The record that stands for the match: a measurement before a failure before a "not
    run" (box AP units differ by device: a GPU machine's cuda measurement and a CPU machine's
    cpu "not run" both match one cell), the first merged among equals."""
    found = [r for (k, _), r in merged.items()
             if all(getattr(k, f) == v for f, v in match.items())]
    rank = {"verified": 0, "measured": 0, "failed": 1, "not run": 2}
    return min(found, key=lambda r: rank.get(str(r.status), 3), default=None)


# ------------------------------------------------------------------------------ the seed table
def box_ap_variants(merged: Merged, zoo: Zoo) -> list[str | None]:
    """The weights ids of the box AP columns: those with a published AP, then any other
    evaluated (generated-data smoke runs), the seed's mmyolo first."""
    found = {k.variant for k, _ in merged if k.check == "box_ap"}
    found |= {c.weights for m in zoo.models for c in m.claims if c.metric == "box_ap"}
    return sorted(found, key=lambda v: (v != "mmyolo", v != "mmdet", str(v))) or [None]


def _seed_latency(merged: Merged, name: str, claim: dict | None, suite: SuiteBase,
                  notes: Footnotes) -> str:
    """The seed's latency column: the claim against a measurement on its own GPU, backend and
    precision if there is one; else the same backend measured elsewhere, shown not judged."""
    if claim is None:
        return "—"
    same = [(m, r) for (k, m), r in merged.items()
            if k.model == name and k.check == "latency" and k.backend == claim.get("backend")
            and k.device == "cuda" and k.precision == claim.get("precision")
            and k.variant is None]
    if not same:
        return f"{_claim_text(claim)} → *not in the runs*"
    measured = [(m, r) for m, r in same if r.status.has_measurement]
    on_claim_gpu = [(m, r) for m, r in measured if _judged(r, "latency", suite) is not None
                    and _judged(r, "latency", suite).mark is not Mark.NOT_COMPARABLE]
    machine, record = (on_claim_gpu or measured or same)[0]
    if record.status.has_measurement and not on_claim_gpu:
        where = machine.label if machine else "?"
        return (f"{_claim_text(claim)} → {record.metrics['median_ms']:.2f} on {where} ⚪")
    return f"{_claim_text(claim)} → {latency_cell(record, suite, notes)}"


def seed_table(merged: Merged, zoo: Zoo, suite: SuiteBase, notes: Footnotes) -> str:
    """One row per size: params, FLOPs, box AP per weights, the seed's latency claim."""
    models = [m.name for m in zoo.models if any(k.model == m.name for k, _ in merged)]
    variants = box_ap_variants(merged, zoo)
    seed_claim = {m: next(iter(zoo.get(m).claims_for("latency")), None) for m in models}
    claim0 = next((c for c in seed_claim.values() if c), None)
    head = ["model", "params (M)", "FLOPs (G)"] + [
        f"box AP ({v} weights)" if v else "box AP" for v in variants]
    if claim0:
        head.append(f"latency, ms ({claim0.backend} {claim0.precision.upper()}, "
                    f"{claim0.hardware.removeprefix('NVIDIA ')})")
    rows = []
    for name in models:
        entry = zoo.get(name)
        row = [name]
        cx = _find(merged, model=name, check="complexity")
        for metric, scale in (("params", 1e6), ("flops", 1e9)):
            claim = cx.claim.get(metric) if cx else _zoo_claim(zoo, name, metric)
            value = cx.metrics.get("params" if metric == "params" else flops_field(claim)) \
                if cx else None
            measured = f"{value / scale:.3f}" if value is not None else "—"
            row.append(_cell(cx, claim, measured, _judged(cx, metric, suite), notes))
        for variant in variants:
            # the model's own unit (a timed artifact's has an input size in its key)
            ap = _find(merged, model=name, check="box_ap", variant=variant, input_size=None)
            claim = (ap.claim.get("box_ap") if ap
                     else _zoo_claim(zoo, name, "box_ap", weights=variant) if variant else None)
            found = primary_ap(ap.metrics) if ap else None
            measured = f"{found[1]:.2f}" if found else "—"
            if ap is not None and ap.status.has_measurement:
                measured += f" ({ap.metrics.get('num_images', '?')} img)"
            cell = _cell(ap, claim, measured, _judged(ap, "box_ap", suite), notes)
            agreement = _judged(ap, "agreement", suite)
            if agreement is not None and ap is not None and ap.status.has_measurement:
                cell += (f" · golden agr {ap.metrics['agreement_ap']:.3f}"
                         if isinstance(ap.metrics.get("agreement_ap"), (int, float)) else "")
                if agreement.red:
                    cell += f" ⛔ {notes.ref(agreement.text)}"
            row.append(cell)
        if claim0:
            claim = seed_claim[name]
            row.append(_seed_latency(merged, name, entry.claim_record(claim) if claim else None,
                                     suite, notes))
        rows.append(row)
    return markdown_table(head, rows)


# ------------------------------------------------------------------------------ latency
def _target(record: Record) -> tuple[str, ...]:
    return tuple(p for p in (record.backend, record.device, record.precision, record.variant)
                 if p)


ORDER = {"torch": 0, "torch-compile": 1, "onnxruntime": 2, "openvino": 3, "tensorrt": 4}


def latency_tables(merged: Merged, zoo: Zoo, suite: SuiteBase, notes: Footnotes) -> list[str]:
    """One table per machine, input size and batch: sizes x (backend/device/precision), median
    ms with marks. Measurements at different input sizes or batches never share a cell (a run
    at 96x64 must not hide behind, or be hidden by, one at 640x640). Every heading names all
    three, so a table's heading does not depend on which other runs are in the report."""
    groups: dict[tuple[Machine, tuple[int, ...] | None, int], list[Record]] = {}
    for (key, machine), record in merged.items():
        if key.check == "latency" and machine is not None:
            size = tuple(record.input_size) if record.input_size else None
            groups.setdefault((machine, size, record.batch or 1), []).append(record)
    sections = []
    for machine, size, batch in sorted(groups, key=lambda g: (
            g[0].kind != "gpu", g[0].name, g[1] != (640, 640), g[1] or (), g[2])):
        records = groups[(machine, size, batch)]
        shown = [r for r in records if r.device == "cpu" or machine.kind == "gpu"]
        hidden = sorted({"/".join(_target(r)) for r in records if r not in shown})
        if not shown:
            continue
        targets = sorted({_target(r) for r in shown},
                         key=lambda t: (t[1] != "cpu", ORDER.get(t[0], 9), t))
        models = [m.name for m in zoo.models if any(r.model == m.name for r in shown)]
        rows = []
        for name in models:
            row = [name]
            for target in targets:
                record = next((r for r in shown if r.model == name and _target(r) == target),
                              None)
                row.append(latency_cell(record, suite, notes))
            rows.append(row)
        size_text = "{}×{}".format(*size) if size else "?"
        runs = sorted({r.run for r in shown})
        env = next((r.provenance.get("packages") for r in shown
                    if r.provenance.get("packages")), {}) or {}
        software = ", ".join(f"{k} {env[k]}" for k in ("torch", "onnxruntime", "openvino",
                                                        "tensorrt")
                             if k in env)
        parts = [f"### Latency on {machine.label}, input {size_text}, batch {batch}", "",
                 f"Median ms per image, batch {batch}, input {size_text}, no NMS; "
                 f"{software or 'software: see the environment in reports'}; "
                 f"run{'s' if len(runs) > 1 else ''} "
                 f"{', '.join(f'`{r}`' for r in runs)}.", "",
                 markdown_table(["model"] + ["/".join(t) for t in targets], rows)]
        if hidden:
            reasons = sorted({notes.ref(r.reason) for r in records if r not in shown
                              and r.reason})
            parts += ["", f"Not measured on this machine (no GPU): {', '.join(hidden)} "
                      f"{' '.join(reasons)}."]
        sections.append("\n".join(parts))
    return sections


# ------------------------------------------------------------------------------ artifacts
def _artifact_ap_cells(record: Record, suite: SuiteBase, notes: Footnotes) -> list[str]:
    """Images, box AP and ΔAP against PyTorch FP32 (⛔ beyond the suite's tolerance)."""
    if status := _status_cell(record, notes):
        return ["—", status, "—"]
    found = primary_ap(record.metrics)
    ap = f"{found[1]:.2f}" if found else "—"
    judged = _judged(record, "box_ap_delta", suite)
    delta, ref = record.metrics.get("box_ap_delta"), record.metrics.get("reference_box_ap")
    if not isinstance(delta, (int, float)):
        return [str(record.metrics.get("num_images", "?")), ap, "—"]
    text = f"{delta * 100:+.2f}" + (f" (ref {ref * 100:.2f})"
                                    if isinstance(ref, (int, float)) else "")
    if judged is not None and judged.red:
        text += f" ⛔ {notes.ref(judged.text)}"
    elif judged is not None:
        text += f" {MARK[judged.mark.ok]}"
    return [str(record.metrics.get("num_images", "?")), ap, text]


def artifact_tables(merged: Merged, zoo: Zoo, suite: SuiteBase, notes: Footnotes) -> list[str]:
    """One table per machine: each model x timed artifact (``box_ap.backends`` units) with its
    box AP, its difference from the PyTorch FP32 model on the same images, and the median
    latency of that artifact on that machine (same backend, device, precision, input size and
    batch), side by side: what a deployer of that engine keeps and pays."""
    groups: dict[Machine, list[Record]] = {}
    for (key, machine), record in merged.items():
        if key.check == "box_ap" and key.input_size and machine is not None:
            groups.setdefault(machine, []).append(record)
    order = {m.name: i for i, m in enumerate(zoo.models)}
    tol = suite.tolerance("box_ap_delta").describe()
    sections = []
    for machine in sorted(groups, key=lambda m: (m.kind != "gpu", m.name)):
        records = sorted(groups[machine], key=lambda r: (
            order.get(r.model, 99), r.device != "cpu", ORDER.get(r.backend, 9), r.backend,
            str(r.precision), str(r.variant)))
        rows = []
        for r in records:
            latency = next((lr for (k, m), lr in merged.items()
                            if m == machine and k.check == "latency" and k.model == r.model
                            and k.backend == r.backend and k.device == r.device
                            and k.precision == r.precision and k.variant is None
                            and k.input_size == r.input_size and (k.batch or 1) == r.batch),
                           None)
            rows.append([r.model, "/".join(p for p in (r.backend, r.device, r.precision) if p),
                         str(r.variant or "—"), *_artifact_ap_cells(r, suite, notes),
                         latency_cell(latency, suite, notes)])
        first = records[0]
        size = "{}×{}".format(*first.input_size)
        runs = sorted({r.run for r in records})
        sections.append("\n".join([
            f"### Box AP of each timed artifact on {machine.label}", "",
            f"The export, engine or compiled graph the latency check times (input {size}, "
            f"batch {first.batch}), evaluated like the model: its box AP (coco), its difference "
            f"from the PyTorch FP32 model on the same images (a drop beyond {tol} AP fails the "
            f"unit ⛔) and the median latency of that artifact on this machine (ms, no NMS; "
            f"timed by the latency check, built the same way from its weights); run"
            f"{'s' if len(runs) > 1 else ''} {', '.join(f'`{r}`' for r in runs)}.", "",
            markdown_table(["model", "artifact", "weights", "images", "box AP",
                            "ΔAP vs PyTorch FP32", "latency, ms"], rows)]))
    return sections


# ------------------------------------------------------------------------------ gate view
def gate_rows(merged: Merged, suite: SuiteBase) -> list[Any]:
    """The gate's rows for every record against its claims (no baseline)."""
    from .gate import rows_for_unit

    rows = []
    for (key, machine), record in merged.items():
        for row in rows_for_unit(key, record, judge_unit(record, None, suite)):
            if machine is not None:
                row.metric += f" on {machine.label}"
            rows.append(row)
    return rows


def missing_rows(runs: list[Run], merged: Merged, zoo: Zoo) -> tuple[list[Any], list[str]]:
    """Red rows for units a run's suite planned that no run in the report has a record of
    (the run was cut short), and notes on runs whose plan is unknown or has changed since."""
    from .completeness import plan_for
    from .gate import missing_row

    covered = {key for key, _ in merged}
    rows, notes = [], []
    for run in runs:
        try:
            plan = plan_for(run, zoo)
        except InputError as exc:
            notes.append(f"run `{run.run_id}`: the units it planned are unknown ({exc})")
            continue
        missing = [k for k in plan.missing(run) if k not in covered]
        if missing and not plan.looks_cut(run):
            why = ("it recorded another plan" if plan.changed_since(run)
                   else "it holds units the suite no longer plans")
            notes.append(f"run `{run.run_id}` was made with another version of suite "
                         f"{plan.suite.name} ({why}): the "
                         f"{len(missing)} unit(s) the suite plans now and the run lacks are not "
                         f"counted as missing")
            continue
        rows += [missing_row(k, plan.missing_text(run)) for k in missing]
    return rows, notes


def gate_summary(merged: Merged, suite: SuiteBase, missing: list[Any] | None = None,
                 notes: list[str] | None = None) -> str:
    rows = gate_rows(merged, suite) + list(missing or [])
    bad = [r for r in rows if r.regression]
    unreliable = [r for r in rows if r.unreliable and not r.regression]
    head = (f"The gate against the published claims (suite `{suite.name}`'s tolerances): "
            f"{len(rows) - len(bad)}/{len(rows)} rows pass"
            + (f", {len(bad)} fail" if bad else "")
            + (f", {len(unreliable)} unreliable (not gated)" if unreliable else "") + ".")
    head += "".join(f"\n\nNote: {n}." for n in notes or [])
    listed = bad + unreliable
    if not listed:
        return head
    return head + "\n\n" + markdown_table(
        ["model", "metric", "verdict"], [[r.model, r.metric, r.verdict] for r in listed])


# ------------------------------------------------------------------------------ pages
def environment_rows(runs: list[Run]) -> list[list[str]]:
    rows = []
    for run in runs:
        first = run.records[0].provenance if run.records else {}
        dates = sorted(str(r.provenance.get("date", "")) for r in run.records)
        git = first.get("git") or {}
        hw = first.get("hardware") or {}
        pk = first.get("packages") or {}
        rows.append([
            run.run_id, (first.get("suite") or {}).get("name", "—"),
            f"{dates[0]} … {dates[-1]}" if dates else "—",
            (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else ""),
            f"{hw.get('cpu', '?')} ({hw.get('cores', '?')} cores), GPU: {hw.get('gpu') or 'none'}"
            f"; machine `{run.fingerprint.id}`",
            ", ".join(f"{k} {pk[k]}" for k in ("python", "torch", "onnxruntime", "openvino",
                                              "tensorrt", "pycocotools") if k in pk),
            str(len(run.records))])
    return rows


def verdict_rows(merged: Merged, suite: SuiteBase) -> list[list[str]]:
    rows = []
    for (key, machine), rec in sorted(merged.items(),
                                      key=lambda i: (i[0][0].label, str(i[0][1]))):
        texts = [f"{j.metric}: {j.text}" for j in sorted(judge_claims(rec, suite),
                                                          key=lambda j: j.metric)]
        where = key.where or "—"
        if machine is not None:
            where += f" on {machine.label}"
        rows.append([rec.model, rec.check, where, str(rec.status),
                     "; ".join(texts) or (rec.reason or "—")])
    return rows


def results_block(runs: list[Run], merged: Merged, zoo: Zoo, image_dir: str,
                  suite: SuiteBase, artifacts_in: str | None = None) -> str:
    """The tables, legend, reasons and plots: the part shared by results.md and the README.
    ``artifacts_in``: where the per-artifact box AP tables are instead (the README's block
    names results.md rather than hold them: a table of every size x artifact x weights)."""
    notes = Footnotes()
    prefix = "" if image_dir in ("", ".") else image_dir.rstrip("/") + "/"
    parts = [f"From run{'s' if len(runs) > 1 else ''} "
             f"{', '.join(f'`{r.run_id}`' for r in runs)}. Each cell: claimed → measured.",
             "", seed_table(merged, zoo, suite, notes), ""]
    for section in latency_tables(merged, zoo, suite, notes):
        parts += [section, ""]
    # rendered once; where they live elsewhere, their footnotes stay out of this block too
    artifacts = artifact_tables(merged, zoo, suite, notes if artifacts_in is None else Footnotes())
    if artifacts and artifacts_in is not None:
        parts += [f"The box AP of each timed artifact, per machine: [{artifacts_in}]"
                  f"({artifacts_in}).", ""]
        artifacts = []
    for section in artifacts:
        parts += [section, ""]
    parts += [LEGEND + (ARTIFACT_LEGEND if artifacts else ""), ""]
    if notes.reasons:
        parts += ["Not run, failed or unreliable, and why:", "", notes.markdown(), ""]
    parts += [f"![box AP vs latency]({prefix}ap_vs_latency.svg)",
              f"![params and FLOPs vs box AP]({prefix}complexity_vs_ap.svg)"]
    return "\n".join(parts)


def own_run_verdicts(own: list[Run], zoo: Zoo, suite: SuiteBase) -> list[str]:
    """For each run the user added: what ``rtmbench gate RUN --suite S`` says of it alone, S
    being the suite the run was made with (its plan and tolerances, the same judge), so that
    the report and the gate agree, or the difference is explained."""
    from .completeness import plan_for
    from .gate import compare

    lines = []
    for run in own:
        try:
            plan = plan_for(run, zoo)
        except InputError as exc:
            lines.append(f"- `{run.run_id}`: the gate cannot judge it ({exc}).")
            continue
        rows = compare(run, None, plan.suite, plan)
        bad = [r for r in rows if r.regression]
        ref = plan.suite.name if plan.suite.path is None or Path(plan.suite.path).parent.name \
            == "suites" else plan.suite.path
        lines.append(f"- Your run `{run.run_id}`: `rtmbench gate {run.run_id} --suite {ref}` "
                     f"judges it alone against the published claims with its own suite's plan "
                     f"and tolerances: {len(rows) - len(bad)}/{len(rows)} rows pass"
                     + (f", {len(bad)} fail" if bad else "") + f" (exit {1 if bad else 0}).")
    if lines:
        lines.append(f"- The count above covers every run in this report (the committed runs "
                     f"too) with suite `{suite.name}`'s tolerances, so it can differ from the "
                     f"gate's on one run.")
    return lines


def results_markdown(runs: list[Run], merged: Merged, zoo: Zoo, suite: SuiteBase,
                     own: list[Run] | None = None) -> str:
    env_head = ["run", "suite", "date (UTC)", "commit", "hardware", "software", "records"]
    verdict_head = ["model", "check", "where", "status", "verdict"]
    verdicts = own_run_verdicts(own or [], zoo, suite)
    return "\n".join([
        "# RTMDet reproduction results", "",
        "Generated by `rtmbench report` from the records under `results/`; do not edit.", "",
        results_block(runs, merged, zoo, ".", suite), "", "## Gate verdict", "",
        gate_summary(merged, suite, *missing_rows(runs, merged, zoo)), "",
        *([*verdicts, ""] if verdicts else []), "## Environment", "",
        markdown_table(env_head, environment_rows(runs)), "", "## Every verdict", "",
        markdown_table(verdict_head, verdict_rows(merged, suite)), ""])


def replace_block(text: str, block: str, where: str) -> str:
    """Swap what lies between the README markers; text outside them is kept byte for byte."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise InputError(f"{where} has no '{START}' ... '{END}' block; add both markers (on "
                         f"their own lines, start before end) where the results should go.")
    return text[:start + len(START)] + "\n" + block.rstrip("\n") + "\n" + text[end:]


# ------------------------------------------------------------------------------ inputs
def committed_runs(results_dir: str | Path) -> list[Path]:
    """The run files under ``results_dir`` that git tracks (the published ones); all of them
    when this is not a git checkout."""
    results_dir = Path(results_dir)
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", "*.jsonl"], cwd=results_dir,
                             capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return list_runs(results_dir)
    names = [n for n in out.stdout.decode().split("\0") if n and "/" not in n]
    return sorted(results_dir / n for n in names)


def latest_local_run(results_dir: str | Path) -> Path | None:
    """The user's most recent run: the latest under ``results_dir/local`` (where runs go until
    they are published), or None when there is none."""
    local = Path(results_dir) / LOCAL.name
    return latest_run(local) if list_runs(local) else None


def load_runs(refs: list[str], results_dir: str | Path, *, committed: bool = True,
              latest: bool = True) -> list[Run]:
    """The committed runs (unless ``committed`` is off), then the runs given (default, with
    ``latest``: the user's latest run, :func:`latest_local_run`), each readable and free of
    corrupt lines; a run is read once, at its last place."""
    paths: list[Path] = committed_runs(results_dir) if committed else []
    latest = latest_local_run(results_dir) if latest and not refs else None
    given = list(refs) or ([str(latest)] if latest else [])
    if not paths and not given:
        given = [str(latest_run(results_dir))]  # says where runs are made when there is none
    order: dict[Path, None] = {}  # each file once, at its last place (a given run comes last)
    for path in [*paths, *(resolve_run(r, results_dir) for r in given)]:
        order.pop(path.resolve(), None)
        order[path.resolve()] = None
    if not order:
        raise InputError(f"no runs to report in {results_dir}/; make one with `rtmbench run "
                         f"SUITE`.")
    return [load_usable_run(p, results_dir) for p in order]


def write_report(refs: list[str], *, results_dir: str | Path = "results",
                 out_dir: str | Path = LOCAL_OUT, readme: str | Path | None = None,
                 zoo: Zoo | None = None, suite: str | Path = "reproduce",
                 committed: bool = True, runs: list[Run] | None = None) -> list[Path]:
    """Write ``results.md`` and the plots to ``out_dir`` and, when ``readme`` is given, its
    results block; return the files written. ``runs``: already loaded (``load_runs``) instead
    of ``refs``. Everything is rendered, the README's markers included, before any file is
    written: a README that cannot take the block leaves reports/ untouched too."""
    from .plots import render_plots

    zoo = zoo or load_zoo()
    tolerances = load_suite(suite, zoo)
    out_dir = Path(out_dir)
    runs = runs if runs is not None else load_runs(refs, results_dir, committed=committed)
    merged = merge_runs(runs)
    published = {Path(p).resolve() for p in committed_runs(results_dir)}
    own = [r for r in runs if Path(r.path).resolve() not in published]
    md = results_markdown(runs, merged, zoo, tolerances, own)
    new_readme = None
    if readme is not None:
        readme = Path(readme)
        try:
            text = readme.read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"README {readme} cannot be read ({exc.strerror}); pass --readme "
                             f"PATH or --no-readme.") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"README {readme} is not UTF-8 text (byte "
                             f"{exc.object[exc.start]:#04x} at offset {exc.start}); save it as "
                             f"UTF-8, or pass --no-readme.") from None
        image_dir = os.path.relpath(out_dir.resolve(), readme.resolve().parent)
        report_md = os.path.relpath((out_dir / "results.md").resolve(),
                                    readme.resolve().parent).replace(os.sep, "/")
        block = results_block(runs, merged, zoo, image_dir.replace(os.sep, "/"), tolerances,
                              artifacts_in=report_md)
        new_readme = replace_block(text, block, str(readme))
    written = render_plots(merged, zoo, tolerances, out_dir)
    written.insert(0, write_if_changed(out_dir / "results.md", md.encode("utf-8")))
    if new_readme is not None:
        written.append(write_if_changed(readme, new_readme.encode("utf-8")))
    return written


__all__ = ["END", "START", "LOCAL_OUT", "Footnotes", "committed_runs", "load_runs",
           "merge_runs", "results_block", "write_report"]
