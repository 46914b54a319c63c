"""The record schema: versions, validation, corrupt lines, locking."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from rtmbench.cli import main
from rtmbench.errors import InputError
from rtmbench.records import (
    SCHEMA_VERSION,
    Record,
    RunWriter,
    SchemaError,
    Status,
    load_usable_run,
    parse_record,
    read_run,
)
from tests.records_factory import records, write_run

V1_LATENCY = {  # a line of results/2026-11-24-reproduce-cpu.jsonl, as schema 1 wrote it
    "run": "old", "model": "rtmdet-tiny", "check": "latency", "backend": "torch",
    "device": "cpu", "precision": "fp32", "status": "measured", "reason": None,
    "metrics": {"median_ms": 69.2, "ratio_to_reference": 1.2}, "variant": None,
    "claim": {"latency": {"value": 0.98, "decimals": 2, "hardware": "NVIDIA RTX 3090",
                          "backend": "tensorrt", "precision": "fp16"}},
    "verdict": {"latency": {"ok": None, "text": "different hardware"}},
    "provenance": {"input_hw": [640, 640], "batch": 1, "hardware": {"cpu": "x"}}}


def test_version_1_records_are_migrated_with_their_unit_key():
    record = parse_record(V1_LATENCY)
    assert record.schema_version == SCHEMA_VERSION == 2
    assert record.input_size == (640, 640) and record.batch == 1
    assert record.key.where == "torch/cpu/fp32 640x640"
    assert record.claim["latency"]["input_size"] == [640, 640]  # the claim's conditions


def test_committed_runs_all_read_without_problems():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in [*sorted((root / "results").glob("*.jsonl")),
                 *sorted((root / "suites" / "baselines").glob("*.jsonl"))]:
        run = read_run(path)
        assert run.records and not run.problems, (path, run.problems)


def test_a_newer_schema_is_refused_with_a_clear_message():
    with pytest.raises(SchemaError, match="newer rtmbench"):
        parse_record({**V1_LATENCY, "schema_version": SCHEMA_VERSION + 1})


@pytest.mark.parametrize("change, words", [
    ({"metrics": {"median_ms": float("nan")}}, "finite"),
    ({"metrics": {"median_ms": float("inf")}}, "finite"),
    ({"metrics": {"mean_ms": 3.0}}, "median_ms"),                 # missing metric
    ({"metrics": {"median_ms": "fast"}}, "median_ms"),            # a string for a number
    ({"metrics": [1, 2]}, "metrics"),                             # a list for a mapping
    ({"status": "fine"}, "status"),
    ({"status": "failed"}, "reason"),                              # failed without a reason
    ({"surprise": 1}, "surprise"),                                 # unknown field
])
def test_unusable_records_are_refused(change, words):
    data = {**V1_LATENCY, "schema_version": 2, **change}
    with pytest.raises(ValidationError, match=words):
        parse_record(data)


def test_complexity_record_without_params_is_refused():
    cx = records("r")[0].model_dump(mode="json")
    del cx["metrics"]["params"]
    with pytest.raises(ValidationError, match="params"):
        parse_record(cx)


def test_corrupt_lines_are_reported_with_their_numbers(tmp_path):
    path = write_run(tmp_path / "r.jsonl", records("r"))
    good = path.read_text().splitlines()
    bad_nan = good[2].replace('"median_ms": 80.0', '"median_ms": NaN')
    assert bad_nan != good[2]
    path.write_text("\n".join([good[0], "not json", good[1], bad_nan, good[3]]) + "\n"
                    + '{"torn": ')
    run = read_run(path)
    assert [(p.line, p.kind) for p in run.problems] == [(2, "corrupt"), (4, "corrupt"),
                                                        (6, "torn")]
    assert len(run.records) == 3
    with pytest.raises(InputError, match=r"r\.jsonl:2: corrupt.*r\.jsonl:4: corrupt"):
        load_usable_run(path, tmp_path)


def test_gate_on_a_corrupt_run_or_baseline_is_unusable_input(tmp_path, capsys):
    base = write_run(tmp_path / "base.jsonl", records("base"))
    run = write_run(tmp_path / "new.jsonl", records("new"))
    broken = tmp_path / "broken.jsonl"
    lines = base.read_text().splitlines()
    lines[1] = lines[1].replace('"num_images": 500', '"num_images": "five hundred"')
    broken.write_text("\n".join(lines) + "\n")
    assert main(["gate", str(run), "--baseline", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.jsonl:2" in err and "num_images" in err
    assert main(["gate", str(broken), "--baseline", str(base)]) == 2


def test_a_nan_never_passes_the_gate(tmp_path, capsys):
    base = write_run(tmp_path / "base.jsonl", records("base"))
    run = tmp_path / "nan.jsonl"
    text = write_run(tmp_path / "new.jsonl", records("new")).read_text()
    run.write_text(text.replace('"ratio_to_reference": 2.0', '"ratio_to_reference": NaN'))
    assert main(["gate", str(run), "--baseline", str(base)]) == 2
    assert "not a finite number" in capsys.readouterr().err


def test_records_are_written_without_nan(tmp_path):
    rec = records("r")[2]
    with pytest.raises(ValidationError):
        Record(**{**rec.model_dump(), "metrics": {"median_ms": math.nan}})
    line = json.loads(rec.to_json())
    assert line["schema_version"] == 2 and line["status"] == "measured"


def test_a_run_is_written_by_one_process_at_a_time(tmp_path):
    path = tmp_path / "r.jsonl"
    first = RunWriter(path, resume=False)
    with pytest.raises(InputError, match="being written by another rtmbench process"):
        RunWriter(path, resume=True)
    first.close()
    with RunWriter(path, resume=True) as again:
        again.append(Record(run="r", model="m", check="fake", status=Status.MEASURED))
    assert len(read_run(path).records) == 1


def test_an_artifacts_box_ap_fields_are_typed_and_optional():
    base = dict(run="r", model="rtmdet-tiny", check="box_ap", backend="openvino", device="cpu",
                precision="fp32", variant="mmdet", input_size=(640, 640), batch=1,
                status="measured")
    metrics = {"num_images": 100, "coco": {"AP": 0.41}}
    assert Record(**base, metrics=metrics).metrics == metrics  # old records: still valid
    rec = Record(**base, metrics={**metrics, "reference_box_ap": 0.412, "box_ap_delta": -0.002})
    assert rec.typed_metrics().box_ap_delta == pytest.approx(-0.002)
    for bad in ({"box_ap_delta": "0.1"}, {"box_ap_delta": math.nan},
                {"reference_box_ap": 1.5}):
        with pytest.raises(ValidationError):
            Record(**base, metrics={**metrics, **bad})
