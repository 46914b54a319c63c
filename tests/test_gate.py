from __future__ import annotations

import pytest

from rtmbench.cli import main
from rtmbench.records import Status
from tests.recorded_latency import baseline_latency, with_samples
from tests.records_factory import HW, records, write_run


@pytest.fixture
def baseline(tmp_path):
    return write_run(tmp_path / "base.jsonl", records("base"))


def gate(tmp_path, baseline, capsys, **changes) -> tuple[int, str]:
    run = write_run(tmp_path / "new.jsonl", records("new", **changes))
    code = main(["gate", str(run), "--baseline", str(baseline)])
    return code, capsys.readouterr().out


def test_identical_run_passes(tmp_path, baseline, capsys):
    code, out = gate(tmp_path, baseline, capsys)
    assert code == 0, out
    head = out.splitlines()[0]
    assert all(w in head for w in ("metric", "claim", "baseline", "measured", "delta",
                                   "verdict"))
    assert "not run: needs a CUDA GPU" in out


@pytest.mark.parametrize("changes, what", [
    ({"ap": 0.404}, "box AP"),                      # -0.5 AP, tolerance 0.1
    ({"flops": 8_100_000_000}, "FLOPs"),            # any change of the architecture
    ({"ratio": 2.6}, "latency torch/cpu/fp32"),     # +30% vs the reference, tolerance 25%
    ({"latency_status": "not run"}, "latency torch/cpu/fp32"),  # lost coverage
])
def test_injected_regression_fails(tmp_path, baseline, capsys, changes, what):
    code, out = gate(tmp_path, baseline, capsys, **changes)
    assert code == 1, out
    assert "REGRESSION" in out and what in out.split("regression(s):")[1]


@pytest.mark.parametrize("changes", [
    {"ap": 0.4085},            # -0.05 AP
    {"ap": 0.420},             # better
    {"ratio": 2.3},            # +15%
    {"ratio": 1.5},            # faster
    {"ratio": 9.0, "hardware": {**HW, "cpu": "Other CPU"}},  # other machine: not gated
])
def test_within_tolerance_or_other_hardware_passes(tmp_path, baseline, capsys, changes):
    code, out = gate(tmp_path, baseline, capsys, **changes)
    assert code == 0, out


def test_claims_alone_gate_a_missed_complexity_claim(tmp_path, capsys):
    recs = records("new", flops=8_200_000_000)  # published as 8.2, the claim says 8.1
    run = write_run(tmp_path / "new.jsonl", recs)
    assert main(["gate", str(run)]) == 1
    assert "MISS: 8.200 G" in capsys.readouterr().out


def test_the_gate_judges_again_and_ignores_a_stored_verdict(tmp_path, capsys):
    """Verdicts stored in records are informational: the gate judges metrics and claims."""
    recs = records("new", flops=8_200_000_000)
    recs[0].verdict["flops"] = {"ok": True, "text": "stored as fine"}
    run = write_run(tmp_path / "new.jsonl", recs)
    assert main(["gate", str(run)]) == 1


def test_failed_unit_fails_the_gate(tmp_path, baseline, capsys):
    recs = records("new")
    recs[2] = recs[2].model_copy(update={"status": Status.FAILED, "reason": "ValueError: boom",
                                         "metrics": {}})
    run = write_run(tmp_path / "new.jsonl", recs)
    assert main(["gate", str(run), "--baseline", str(baseline)]) == 1


def test_unusable_input_exits_2(tmp_path, baseline, capsys):
    assert main(["gate", str(tmp_path / "missing.jsonl")]) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"torn": \n')
    assert main(["gate", str(empty)]) == 2
    assert main(["gate", str(baseline), "--baseline", str(empty)]) == 2
    assert "unusable input" in capsys.readouterr().err


# ------------------------------------------------------------------ on real records
def _rewrite(src, dst, change):
    from rtmbench.records import read_run

    run = read_run(src)
    recs = [change(r) for r in run.records]
    return write_run(dst, recs)


def test_real_smoke_records_pass_against_themselves(smoke_run, capsys):
    assert main(["gate", str(smoke_run), "--baseline", str(smoke_run), "--suite", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "latency torch/cpu/fp32 320x320 (ratio to reference)" in out
    assert "box AP (well-conditioned weights, coco, 8 images)" in out
    assert "box AP agreement with golden detections" in out and "agreement AP 1.0000" in out


def _quiet(r, factor: float = 1.0):
    """The record as if timed on a quiet machine, ``factor`` times slower: its samples and
    reference are the committed smoke baseline's (tests/recorded_latency.py), so the verdict
    does not depend on how busy this machine was while the smoke run was timed."""
    if r.check != "latency":
        return r
    base = baseline_latency(r.backend)
    return with_samples(r, [s * factor for s in base.metrics["samples_ms"]],
                        reference_median_ms=base.metrics["reference_median_ms"])


def test_real_smoke_records_with_a_slower_model_fail(smoke_run, tmp_path, capsys):
    # certain: 3x every recorded sample exceeds every one of them (max/min 1.29 torch, 1.44
    # onnxruntime), so p is the smallest the counts allow, and +200% is beyond ±50%
    base = _rewrite(smoke_run, tmp_path / "base.jsonl", _quiet)
    run = _rewrite(smoke_run, tmp_path / "slow.jsonl", lambda r: _quiet(r, 3.0))
    assert main(["gate", str(run), "--baseline", str(base), "--suite", "smoke"]) == 1
    out = capsys.readouterr().out
    assert "slower relative to the reference beyond ±50% (+200.0%) and significant" in out
    assert "Mann-Whitney U, p=" in out


def test_contended_latency_is_unreliable_and_not_gated_and_says_so(smoke_run, tmp_path,
                                                                   capsys):
    base = _rewrite(smoke_run, tmp_path / "base.jsonl", _quiet)

    def contended(r):
        r = _quiet(r, 3.0)
        if r.check == "latency":
            r = r.model_copy(update={"metrics": {**r.metrics, "contention": True,
                                                 "other_processes_cores": 1.4}})
        return r

    run = _rewrite(smoke_run, tmp_path / "contended.jsonl", contended)
    assert main(["gate", str(run), "--baseline", str(base), "--suite", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "UNRELIABLE: contended: other processes took the CPU" in out
    assert "this run is unreliable" in out
    assert "row(s) UNRELIABLE, not gated" in out


def test_real_smoke_records_with_a_failed_unit_fail(smoke_run, tmp_path, capsys):
    def broken(r):
        if r.check != "box_ap":
            return r
        return r.model_copy(update={"status": Status.FAILED, "metrics": {},
                                    "reason": "CheckpointMismatchError: does not fit"})

    run = _rewrite(smoke_run, tmp_path / "failed.jsonl", broken)
    assert main(["gate", str(run), "--baseline", str(smoke_run), "--suite", "smoke"]) == 1
    assert "REGRESSION: failed: CheckpointMismatchError" in capsys.readouterr().out


# ------------------------------------------------------------------ review findings
def _write_lines(path, lines):
    import json

    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_a_record_no_judge_knows_fails_the_gate_instead_of_vanishing(tmp_path, capsys):
    rec = records("new")[0].model_dump(mode="json") | {"check": "complexty", "metrics": {}}
    run = _write_lines(tmp_path / "typo.jsonl", [rec])
    assert main(["gate", str(run)]) == 1
    assert "nothing in this rtmbench judges a 'complexty' record" in capsys.readouterr().out
    # the report's gate verdict is the gate's: the same red row, not "all rows pass"
    assert main(["report", str(run), "--only", "--out-dir", str(tmp_path / "r"),
                 "--no-readme"]) == 0
    text = (tmp_path / "r" / "results.md").read_text()
    assert "nothing in this rtmbench judges a 'complexty' record" in text
    assert "1 fail" in text


def test_a_number_given_as_a_string_or_a_boolean_is_corrupt_not_coerced(tmp_path, capsys):
    """The judge reads the raw values: lax validation let "26.0" pass and then read as 'no
    ratio' (a 13x slowdown shown as ok), and true pass as an AP of 100."""
    lat = records("new")[2].model_dump(mode="json")
    lat["metrics"]["ratio_to_reference"] = "26.0"
    box = records("new")[1].model_dump(mode="json")
    box["metrics"]["coco"]["AP"] = True
    for name, rec in (("ratio", lat), ("ap", box)):
        run = _write_lines(tmp_path / f"{name}.jsonl", [rec])
        assert main(["gate", str(run)]) == 2, name
        assert "unusable input" in capsys.readouterr().err


def test_contention_is_unreliable_even_where_the_claim_is_not_comparable(tmp_path, capsys):
    lat = records("new")[2]
    contended = lat.model_copy(update={
        "metrics": {**lat.metrics, "contention": True},
        "claim": {"latency": {"value": 0.98, "decimals": 2, "hardware": "NVIDIA RTX 3090",
                              "backend": "tensorrt", "precision": "fp16",
                              "input_size": [640, 640], "batch": 1}}})
    run = write_run(tmp_path / "c.jsonl", [contended])
    main(["gate", str(run)])
    out = capsys.readouterr().out
    assert "UNRELIABLE" in out and "ok: not comparable" not in out


def _with_samples(rec, ratio, n):
    ref = 20.0
    return rec.model_copy(update={"metrics": {
        **rec.metrics, "median_ms": ref * ratio, "ratio_to_reference": ratio,
        "reference_median_ms": ref,  # samples around the median, as a real record keeps
        "samples_ms": [ref * ratio * (1 + (i - (n - 1) / 2) / 1000) for i in range(n)]}})


def test_too_few_samples_for_the_rank_test_fall_back_to_the_medians(tmp_path, capsys):
    """With 4 samples a side the smallest possible p is 0.014 > alpha 0.01: a 10x slowdown
    must not pass as 'not significant'."""
    lat = records("x")[2]
    base = write_run(tmp_path / "b.jsonl", [_with_samples(lat, 2.0, 4)])
    new = write_run(tmp_path / "n.jsonl", [_with_samples(lat, 20.0, 4)])
    assert main(["gate", str(new), "--baseline", str(base)]) == 1
    out = capsys.readouterr().out
    assert "too few samples for a rank test" in out and "judged on the medians alone" in out
    many_base = write_run(tmp_path / "b30.jsonl", [_with_samples(lat, 2.0, 30)])
    many_new = write_run(tmp_path / "n30.jsonl", [_with_samples(lat, 20.0, 30)])
    assert main(["gate", str(many_new), "--baseline", str(many_base)]) == 1
    assert "significant (Mann-Whitney U, p=" in capsys.readouterr().out


@pytest.mark.parametrize("change, words", [
    ({"convention": "fvcore"}, "claim.flops.convention 'fvcore'"),   # was a KeyError traceback
    ({"value": "8.1"}, "claim.flops.value"),                          # was "ok" in the gate
    ({"decimals": -1}, "claim.flops.decimals"),
])
def test_a_claim_the_judge_cannot_read_is_unusable_input(tmp_path, capsys, change, words):
    rec = records("new")[0].model_dump(mode="json")
    rec["claim"]["flops"] |= change
    run = _write_lines(tmp_path / "claim.jsonl", [rec])
    assert main(["gate", str(run)]) == 2
    assert main(["report", str(run), "--only", "--out-dir", str(tmp_path / "r")]) == 2
    assert words in capsys.readouterr().err


def test_a_change_of_one_shows_its_absolute_size_not_a_zero_percent(tmp_path, baseline, capsys):
    """+1 FLOP of 8.089 G is +1.2e-08 %: '+0.000%' read as no change beside a regression."""
    code, out = gate(tmp_path, baseline, capsys, flops=8_089_000_001)
    row = next(line for line in out.splitlines() if "FLOPs" in line and "REGRESSION" in line)
    assert code == 1 and "+1 (+1.2e-08%)" in row and "0.000%" not in row, row
