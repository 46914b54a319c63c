from __future__ import annotations

from rtmbench.judge.judgement import Mark, judge_latency_claim, same_gpu
from rtmbench.records import Record
from rtmbench.run.checks import Unit, latency_claim
from rtmbench.spec.suite import Tolerance
from rtmbench.spec.zoo import load_zoo


def test_published_gpu_names_match_torch_device_names():
    assert same_gpu("NVIDIA RTX 3090", "NVIDIA GeForce RTX 3090")
    assert same_gpu("NVIDIA T4", "Tesla T4")
    assert not same_gpu("NVIDIA RTX 3090", "NVIDIA H100 80GB HBM3")
    assert not same_gpu("NVIDIA T4", None)


def _latency(median: float, gpu: str | None, **key) -> Record:
    fields = dict(backend="tensorrt", device="cuda", precision="fp16", input_size=(640, 640),
                  batch=1) | key
    return Record(run="r", model="rtmdet-tiny", check="latency", status="measured",
                  metrics={"median_ms": median}, provenance={"hardware": {"gpu": gpu}},
                  **fields)


def test_latency_is_judged_only_on_the_claims_own_gpu_within_the_suite_tolerance():
    tiny = load_zoo().get("tiny")
    unit = Unit.of(tiny, "latency", "tensorrt", "cuda", "fp16")
    ten = Tolerance(relative=0.1)
    claim = latency_claim(tiny, unit, "NVIDIA GeForce RTX 3090")
    assert float(claim.value) == 0.98 and claim.hardware == "NVIDIA RTX 3090"
    data = tiny.claim_record(claim)
    assert data["input_size"] == [640, 640] and data["batch"] == 1
    rtx = "NVIDIA GeForce RTX 3090"
    assert judge_latency_claim(_latency(1.05, rtx), data, ten).mark is Mark.OK
    assert judge_latency_claim(_latency(1.20, rtx), data, ten).mark is Mark.MISS
    other = judge_latency_claim(_latency(9.0, "NVIDIA H100 80GB HBM3"), data, ten)
    assert other.mark is Mark.NOT_COMPARABLE and "hardware" in other.text
    t4 = latency_claim(tiny, unit, "Tesla T4")
    assert float(t4.value) == 2.34  # the claim of the GPU in hand, when the zoo has one


def test_latency_claims_need_every_condition_equal():
    tiny = load_zoo().get("tiny")
    claim = tiny.claim_record(tiny.claims_for("latency")[0])
    ten = Tolerance(relative=0.1)
    rtx = "NVIDIA GeForce RTX 3090"
    for key, words in (({"precision": "fp32"}, "precision"), ({"backend": "torch"}, "backend"),
                       ({"batch": 8}, "batch"), ({"input_size": (320, 320)}, "input size")):
        j = judge_latency_claim(_latency(0.5, rtx, **key), claim, ten)
        assert j.mark is Mark.NOT_COMPARABLE and words in j.text, (key, j.text)
    contended = _latency(0.5, rtx)
    contended.metrics["contention"] = True
    assert judge_latency_claim(contended, claim, ten).mark is Mark.UNRELIABLE


# ------------------------------------------------------------- lazy imports
def _module_of_ours(monkeypatch, tmp_path, name: str, body: str) -> str:
    """A module rtmbench.<name> that exists for this test only."""
    import rtmbench

    folder = tmp_path / "ours"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(body)
    monkeypatch.setattr(rtmbench, "__path__", [*rtmbench.__path__, str(folder)])
    return f"rtmbench.{name}"


def test_lazy_import_tells_missing_broken_and_our_own_bugs_apart(monkeypatch, tmp_path,
                                                                 shadow_package):
    import pytest

    from rtmbench.errors import PackageBroken, PackageMissing
    from rtmbench.run.checks import lazy_import

    missing = _module_of_ours(monkeypatch, tmp_path, "uses_missing",
                              "import a_package_that_is_not_installed\n")
    with pytest.raises(PackageMissing, match="a_package_that_is_not_installed"):
        lazy_import(missing, "latency")
    shadow_package("onnxruntime", "raise ImportError('libcudart.so.12: cannot open shared "
                   "object file')\n")
    broken = _module_of_ours(monkeypatch, tmp_path, "uses_broken", "import onnxruntime\n")
    with pytest.raises(PackageBroken, match="'onnxruntime' is installed.*libcudart.so.12"):
        lazy_import(broken, "latency")
    for body in ("from rtmbench.errors import NoSuchName\n",
                 "import rtmbench.no_such_module\n",
                 "raise ImportError('a bug of ours')\n"):
        ours = _module_of_ours(monkeypatch, tmp_path, f"bug{abs(hash(body))}", body)
        with pytest.raises(ImportError) as info:
            lazy_import(ours, "latency")
        assert not isinstance(info.value, (PackageMissing, PackageBroken)), body


def test_an_import_error_of_ours_is_a_failed_unit_with_its_traceback(monkeypatch, tmp_path):
    from rtmbench.run.checks import (
        Check,
        CheckContext,
        Unit,
        lazy_import,
        register_check,
        unregister_check,
    )
    from rtmbench.run.runner import run_unit
    from rtmbench.spec.check_specs import ComplexitySpec

    ours = _module_of_ours(monkeypatch, tmp_path, "buggy", "from rtmbench.errors import Nope\n")

    class Buggy(Check):
        name = "buggy-import"
        Spec = ComplexitySpec

        def run(self, unit, spec, ctx):
            lazy_import(ours, "a buggy check")

    register_check(Buggy)
    try:
        result = run_unit(Unit.of(load_zoo().get("tiny"), "buggy-import"), ComplexitySpec(),
                          CheckContext(None, tmp_path, {}))
    finally:
        unregister_check("buggy-import")
    assert result.status == "failed" and "ImportError" in result.reason, result
    assert "Nope" in result.provenance["traceback"]
