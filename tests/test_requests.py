"""Requests: one typed value per measurement, built in one place for the command line and the
runner, checked against the suites' bounds, torch-free, and naming fields (the command line
names its flags)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rtmbench.cli import _latency_request, build_parser, main
from rtmbench.errors import InputError
from rtmbench.measure.requests import (
    NO_REMEASURE,
    BackendOptions,
    ExportRequest,
    LatencyRequest,
    Protocol,
    Remeasure,
)
from rtmbench.run.checks import LatencyCheck
from rtmbench.run.request_builder import (
    RequestError,
    backend_options,
    export_request,
    latency_request,
)
from rtmbench.spec.check_specs import LatencySpec
from rtmbench.spec.zoo import load_zoo


def test_requests_import_no_torch():
    code = ("import sys; import rtmbench.measure.requests, rtmbench.run.request_builder; "
            "heavy = [m for m in ('torch', 'numpy', 'onnxruntime') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("flags, target, spec_fields", [
    (["--backend", "torch-compile", "--compile-mode", "max-autotune"],
     {"backends": ["torch-compile"], "devices": ["cpu"], "precisions": ["fp32"]},
     {"compile_mode": "max-autotune"}),
    (["--backend", "onnxruntime", "--device", "cuda", "--precision", "fp16",
      "--ort-provider", "cuda"],
     {"backends": ["onnxruntime"], "devices": ["cuda"], "precisions": ["fp16"],
      "providers": ["cuda"]}, {}),
    (["--backend", "torch"],
     {"backends": ["torch"], "devices": ["cpu"], "precisions": ["fp32"]}, {}),
])
def test_the_command_line_and_the_runner_build_the_same_request(flags, target, spec_fields):
    """`rtmbench latency` with some flags and a suite's latency unit with the same settings
    make one and the same request: same protocol, options and re-measure policy."""
    args = build_parser().parse_args(
        ["latency", "tiny", "--input-size", "96", "64", "--batch", "2", "--iterations", "7",
         "--min-duration", "0.5", "--warmup", "0.25", *flags])
    spec = LatencySpec(targets=[target], input_size=(96, 64), batch=2, min_iterations=7,
                       min_duration_s=0.5, warmup_s=0.25, **spec_fields)
    (unit,) = LatencyCheck().units(load_zoo().get("tiny"), spec)
    from_suite = LatencyCheck.request(unit, spec)
    assert from_suite == _latency_request(args)
    assert from_suite.input_hw == (64, 96) and from_suite.batch == 2
    assert from_suite.protocol == Protocol(warmup_s=0.25, min_iterations=7, min_duration_s=0.5)
    assert from_suite.remeasure == Remeasure(attempts=2, budget_s=None)
    assert from_suite.reference and not from_suite.include_transfer


def test_the_runner_takes_the_suites_remeasure_policy():
    spec = LatencySpec(targets=[{"backends": ["torch"], "devices": ["cpu"],
                                 "precisions": ["fp32"]}],
                       remeasure_contended=0, remeasure_budget_s=30)
    (unit,) = LatencyCheck().units(load_zoo().get("tiny"), spec)
    request = LatencyCheck.request(unit, spec)
    assert request.remeasure == Remeasure(attempts=0, budget_s=30)
    assert request.input_hw == (640, 640)  # the zoo's: the unit's input size


def test_a_value_out_of_bounds_names_its_field_and_the_command_line_its_flag(capsys, tmp_path):
    with pytest.raises(RequestError) as err:
        latency_request("torch", "cpu", "fp32", protocol={"min_iterations": 0, "batch": 1000})
    assert isinstance(err.value, InputError)
    assert str(err.value) == ("min_iterations 0: Input should be greater than 0; batch 1000: "
                              "Input should be less than or equal to 256.")
    assert err.value.naming({"min_iterations": "--iterations"}).startswith("--iterations 0: ")
    import pickle

    again = pickle.loads(pickle.dumps(err.value))  # from a worker process: problems kept
    assert again.problems == err.value.problems and str(again) == str(err.value)
    with pytest.raises(RequestError, match="iterations 5: Extra inputs are not permitted"):
        latency_request("torch", "cpu", "fp32", protocol={"iterations": 5})
    assert main(["latency", "tiny", "--iterations", "0", "--input-size", "10", "64"]) == 2
    err_text = capsys.readouterr().err
    assert ("--iterations 0: Input should be greater than 0; --input-size 10: Input should be "
            "greater than or equal to 32." in err_text), err_text
    assert main(["export", "tiny", "-o", str(tmp_path / "m.onnx"), "--batch", "0"]) == 2
    err_text = capsys.readouterr().err
    assert "--batch 0: Input should be greater than 0." in err_text, err_text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend, expected", [
    ("torch", {"layout": "contiguous"}),
    ("torch-compile", {"layout": "contiguous", "mode": "max-autotune"}),
    ("onnxruntime", {"provider": "cuda", "typing": "strong"}),
    ("tensorrt", {"typing": "strong"}),
    ("openvino", {}),
])
def test_backend_options_keep_only_what_applies_to_the_backend(backend, expected):
    options = backend_options(backend, layout="contiguous", provider="cuda", typing="strong",
                              compile_mode="max-autotune")
    assert options.kwargs() == expected
    assert backend_options(backend).kwargs() == ({"mode": "auto"} if backend == "torch-compile"
                                                  else {})


def test_backend_options_from_and_to_a_constructors_keywords():
    options = BackendOptions.from_kwargs({"mode": "default", "layout": "contiguous",
                                          "fold_bn": False})
    assert options == BackendOptions(layout="contiguous", compile_mode="default",
                                     extra={"fold_bn": False})
    assert options.kwargs() == {"layout": "contiguous", "mode": "default", "fold_bn": False}
    assert BackendOptions.from_kwargs(None) == BackendOptions()


def test_a_request_names_an_unknown_field_value_and_no_flag():
    with pytest.raises(InputError, match=r"^unknown device 'gpu'; expected one of cpu, cuda\.$"):
        LatencyRequest("torch", "gpu")
    with pytest.raises(InputError, match=r"^unknown ONNX precision 'int8'; use one of"):
        ExportRequest(precision="int8")
    with pytest.raises(InputError, match=r"^unknown FP16 converter 'x'; use one of"):
        ExportRequest(fp16_converter="x")
    assert LatencyRequest("torch").remeasure == NO_REMEASURE  # measuring alone: no retries
    assert LatencyRequest("torch", input_hw=[64.0, 96]).input_hw == (64, 96)


def test_export_request_from_flags_keeps_width_height_apart():
    request = export_request((128, 96), 2, dynamic_batch=True, opset=18, fold_bn=False,
                             precision="fp16", fp16_converter="onnxconverter-common")
    assert request == ExportRequest(input_hw=(96, 128), batch=2, dynamic_batch=True, opset=18,
                                    fold_bn=False, precision="fp16",
                                    fp16_converter="onnxconverter-common")
    with pytest.raises(RequestError, match="input_size 5000: Input should be less than"):
        export_request((5000, 64))
