"""The machine fingerprint: which provenance fields make another machine for latency."""

from __future__ import annotations

import json

import pytest

from rtmbench.cli import main
from rtmbench.records import read_run
from rtmbench.records.fingerprint import Fingerprint, fingerprint_fields, stored_form
from rtmbench.run.runner import run_suite
from rtmbench.spec.suite import load_suite
from tests.history_sim import BASELINE, baseline_records
from tests.records_factory import records, write_run


def _latency():
    return next(r for r in baseline_records() if r.check == "latency")


def _fp(provenance: dict) -> Fingerprint:
    return Fingerprint.of(fingerprint_fields(provenance))


def test_old_records_get_it_from_their_provenance():
    rec = _latency()
    assert "fingerprint" not in rec.provenance  # written before fingerprints were stored
    f = rec.fingerprint.as_dict()
    assert f["cpu"] == "Intel(R) Xeon(R) Processor" and f["cores"] == 2 and f["threads"] == 2
    assert f["package:torch"] == "2.14.1" and f["package:onnxruntime"] == "1.32.0"
    assert f["python"] == "3.11" and f["gpu"] is None and f["cuda"] is None
    # the run's fingerprint (its complexity record has no environment) is the latency one's
    assert read_run(BASELINE).fingerprint == rec.fingerprint


@pytest.mark.parametrize("change, same", [
    (lambda p: p["hardware"].update(cores=1), False),             # a cpuset: another machine
    (lambda p: p["environment"].update(torch_threads=1), False),  # OMP_NUM_THREADS=1
    (lambda p: p["packages"].update(torch="2.15.0"), False),
    (lambda p: p["packages"].update(onnxruntime="1.32.1"), False),
    (lambda p: p["hardware"].update(cpu="AMD EPYC 9654"), False),
    (lambda p: p["packages"].update(rtmbench="0.2.0"), True),     # the code under test
    (lambda p: p["packages"].update(numpy="2.4.7"), True),        # times nothing
    (lambda p: p["packages"].update(python="3.11.9"), True),      # patch version
    (lambda p: p["hardware"].update(os="Linux 6.19"), True),      # kernel
    (lambda p: p["environment"].update(gpu_driver="999.0"), True),  # no GPU: no driver
    (lambda p: p.update(git={"commit": "f" * 40}), True),
])
def test_which_fields_make_another_machine(change, same):
    prov = json.loads(json.dumps(_latency().provenance))
    before = _fp(prov)
    change(prov)
    assert (_fp(prov) == before) is same, before.differences(_fp(prov))


def test_on_a_gpu_the_driver_and_cuda_count():
    prov = json.loads(json.dumps(_latency().provenance))
    prov["hardware"]["gpu"] = "NVIDIA H200"
    prov["environment"] |= {"gpu": "NVIDIA H200", "gpu_driver": "580.1", "cuda": "13.0"}
    a = _fp(prov)
    prov["environment"]["gpu_driver"] = "590.2"
    b = _fp(prov)
    assert a != b and b.differences(a) == ["gpu_driver 590.2 → 580.1"]
    assert "NVIDIA H200 (driver 580.1, CUDA 13.0)" in a.label


def test_a_stored_fingerprint_is_checked_against_its_fields(tmp_path, capsys):
    rec = _latency()
    stored = stored_form(rec.provenance)
    assert stored["id"] == rec.fingerprint.id
    good = rec.model_copy(update={"provenance": {**rec.provenance, "fingerprint": stored}})
    assert good.fingerprint == rec.fingerprint
    bad = json.loads(good.to_json())
    bad["provenance"]["fingerprint"]["fields"]["cores"] = 64  # edited, id left as it was
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(bad) + "\n")
    assert main(["gate", str(path), "--suite", "smoke"]) == 2
    assert "provenance.fingerprint: id" in capsys.readouterr().err


def test_the_runner_stores_it_on_every_record(tmp_path):
    from tests.fake_checks import FakeCheck  # noqa: F401  (registers the fake check)

    suite = tmp_path / "f.yaml"
    suite.write_text(f"name: f\nmodels: [tiny]\nchecks:\n  fake: {{}}\n"
                     f"results_dir: {tmp_path / 'results'}\n")
    run = read_run(run_suite(load_suite(suite), run_id="fp", progress=False).path)
    stored = {json.dumps(r.provenance["fingerprint"], sort_keys=True) for r in run.records}
    assert len(stored) == 1 and run.fingerprint == run.records[0].fingerprint
    fields = run.fingerprint.as_dict()
    assert fields["cores"] >= 1 and fields["threads"] >= 1 and fields["package:torch"]


def test_a_baseline_of_another_machine_is_not_compared_and_says_why(tmp_path, capsys):
    base = records("base")
    base = [r.model_copy(update={"provenance": {**r.provenance, "packages": {
        **r.provenance["packages"], "torch": "2.0"}}}) for r in base]
    new = records("new", ratio=9.0)  # 4.5x slower, but timed with another torch
    b = write_run(tmp_path / "b.jsonl", base)
    n = write_run(tmp_path / "n.jsonl", new)
    assert main(["gate", str(n), "--baseline", str(b)]) == 0
    out = capsys.readouterr().out
    assert "baseline from another machine (torch 2.0 → 2.x); not gated" in out
