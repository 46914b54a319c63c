"""ONNX export of the tensor-mode network and its parity with PyTorch in ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rtmbench.cli import main
from rtmbench.measure.export import (
    ExportError,
    check_parity,
    export_and_check,
    export_onnx,
    fold_batchnorm,
    ort_cpu_session,
)
from rtmbench.measure.requests import ExportRequest
from rtmbench.run.build import network
from tests.conftest import well_conditioned_state_dict

pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
HW = (96, 128)  # small, and not square: catches a swapped H/W
AT_HW = ExportRequest(input_hw=HW)


@pytest.fixture(scope="module")
def tiny():
    model = network("tiny")
    model.load_state_dict(well_conditioned_state_dict(model))
    return model


def test_fold_batchnorm_keeps_outputs_and_removes_bn(tiny):
    folded = fold_batchnorm(tiny)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in tiny.modules())  # original kept
    x = torch.randn(1, 3, *HW)
    with torch.no_grad():
        (c0, b0), (c1, b1) = tiny(x), folded(x)
    for a, b in zip((*c0, *b0), (*c1, *b1), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_export_parity_with_onnxruntime(tiny, tmp_path):
    path = tmp_path / "tiny.onnx"
    report = export_and_check(tiny, path, AT_HW)
    assert path.exists() and report.ok
    assert list(report.max_abs_error) == ["cls_8", "cls_16", "cls_32", "box_8", "box_16",
                                          "box_32"]
    assert report.worst < 1e-4
    session = ort_cpu_session(path)
    shapes = {o.name: o.shape for o in session.get_outputs()}
    assert shapes["cls_8"] == [1, 80, HW[0] // 8, HW[1] // 8] and shapes["box_32"][1] == 4
    import onnx

    graph = onnx.load(path).graph
    assert not any(n.op_type in ("BatchNormalization", "NonMaxSuppression") for n in graph.node)
    assert onnx.load(path).opset_import[0].version == 17


def test_dynamic_batch(tiny, tmp_path):
    path = export_onnx(tiny, tmp_path / "dyn.onnx", ExportRequest(input_hw=HW, dynamic_batch=True))
    report = check_parity(tiny, path, HW, batch=3)
    assert report.ok
    session = ort_cpu_session(path)
    out = session.run(["box_8"], {"input": np.zeros((2, 3, *HW), np.float32)})[0]
    assert out.shape[0] == 2


def test_disagreement_fails(tiny, tmp_path, monkeypatch):
    other = network("tiny")
    other.load_state_dict(well_conditioned_state_dict(other, seed=1))
    path = export_onnx(other, tmp_path / "other.onnx", AT_HW)
    report = check_parity(tiny, path, HW)
    assert not report.ok and report.worst > 1e-2
    import rtmbench.measure.export as export

    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: path)  # writes the wrong model
    with pytest.raises(ExportError, match="disagrees with PyTorch") as err:
        export.export_and_check(tiny, tmp_path / "x.onnx", AT_HW)
    # the fix names the request's fields; the command line adds its flags for them
    assert err.value.fields == ("opset", "fold_bn") and "--" not in str(err.value)
    assert "Try another opset, or export without BN folding" in str(err.value)
    import pickle

    again = pickle.loads(pickle.dumps(err.value))  # from a worker process: fields kept
    assert str(again) == str(err.value) and again.fields == ("opset", "fold_bn")


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "tiny", "-o", str(out), "--input-size", "128", "96", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["input_hw"] == [96, 128] and record["parity"]["ok"] and out.exists()
    # nothing a user ran is overwritten
    assert main(["export", "tiny", "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


# ------------------------------------------------------------------ FP16 ONNX
def _value_types(model) -> dict[str, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in (
        *inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    types.update({i.name: i.data_type for i in inferred.graph.initializer})
    return types


def test_fp16_export_is_fp16_inside_fp32_at_the_edges(tiny, tmp_path):
    import onnx
    from onnx import TensorProto

    path = tmp_path / "tiny16.onnx"
    report = export_and_check(tiny, path, ExportRequest(input_hw=HW, precision="fp16",
                                                        fp16_converter="onnxconverter-common"))
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
    assert {o.type.tensor_type.elem_type for o in model.graph.output} == {TensorProto.FLOAT}
    types = _value_types(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(types[n.input[1]] == TensorProto.FLOAT16 for n in convs)  # weights
    assert all(types[n.output[0]] == TensorProto.FLOAT16 for n in convs)  # activations
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)  # folded
    first = next(n for n in model.graph.node if "input" in n.input)
    assert first.op_type == "Cast"  # FP32 -> FP16 at the input edge
    producers = {o: n for n in model.graph.node for o in n.output}
    assert all(producers[o.name].op_type == "Cast" for o in model.graph.output)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["rtmbench.precision"] == "fp16"
    assert meta["rtmbench.fp16_converter"].startswith("onnxconverter-common")
    # Within the stated FP16 tolerance of the FP32 PyTorch model, and really FP16-rounded:
    assert report.ok and report.precision == "fp16"
    assert report.to_dict()["tolerance"] == {"atol": 1e-3, "rtol": 5e-3}
    assert 1e-6 < report.worst_relative < 5e-3


def test_fp16_tolerance_covers_fp16_arithmetic(tiny):
    """The bound is not tuned to ONNX Runtime CPU's FP32 kernels: the BN-folded network computed
    in torch.float16 (FP16 activations, as on a GPU) stays inside it too."""
    from rtmbench.measure.export import FP16_PARITY_ATOL, FP16_PARITY_RTOL, FlatOutputs

    x = torch.randn(1, 3, *HW, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = FlatOutputs(tiny)(x)
        half = FlatOutputs(fold_batchnorm(tiny).half())(x.half())
    for expected, got in zip(ref, half, strict=True):
        err = float((got.float() - expected).abs().max())
        scale = float(expected.abs().max())
        assert err <= FP16_PARITY_ATOL + FP16_PARITY_RTOL * scale
        assert err / scale < 2e-3  # measured: <= 8.7e-4 for every size (export.py docstring)


def test_fp16_export_of_a_wrong_model_fails_its_check(tiny, tmp_path, monkeypatch):
    other = network("tiny")
    other.load_state_dict(well_conditioned_state_dict(other, seed=1))
    path = export_onnx(other, tmp_path / "other16.onnx",
                       ExportRequest(input_hw=HW, precision="fp16",
                                     fp16_converter="onnxconverter-common"))
    assert not check_parity(tiny, path, HW).ok  # precision read from the file's metadata
    import rtmbench.measure.export as export

    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: path)
    with pytest.raises(ExportError, match="of fp16 files"):
        export.export_and_check(tiny, tmp_path / "x.onnx",
                                ExportRequest(input_hw=HW, precision="fp16"))


def test_fp16_converter_choice(tiny, tmp_path, monkeypatch):
    """auto: ModelOpt AutoCast when installed (here a stand-in module), else
    onnxconverter-common; asking for modelopt without it is a missing package."""
    import types

    import onnx

    import rtmbench.measure.export as export
    from rtmbench.errors import PackageMissing

    monkeypatch.setattr(export, "_modelopt_autocast", lambda: None)
    with pytest.raises(PackageMissing, match="nvidia-modelopt"):
        export_onnx(tiny, tmp_path / "a.onnx",
                    ExportRequest(input_hw=HW, precision="fp16", fp16_converter="modelopt"))
    calls = []

    def convert_to_mixed_precision(onnx_path, low_precision_type, keep_io_types):
        calls.append((low_precision_type, keep_io_types))
        import warnings

        from onnxconverter_common.float16 import convert_float_to_float16

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return convert_float_to_float16(onnx.load(onnx_path), keep_io_types=keep_io_types)

    fake = types.SimpleNamespace(convert_to_mixed_precision=convert_to_mixed_precision)
    monkeypatch.setattr(export, "_modelopt_autocast", lambda: fake)
    path = export_onnx(tiny, tmp_path / "b.onnx", ExportRequest(input_hw=HW, precision="fp16"))
    assert calls == [("fp16", True)]
    assert export.onnx_metadata(path)["rtmbench.fp16_converter"].startswith("modelopt-autocast")


def test_cli_export_fp16(tmp_path, capsys):
    out = tmp_path / "m16.onnx"
    assert main(["export", "tiny", "-o", str(out), "--input-size", "96", "64", "--precision",
                 "fp16", "--weights", "well-conditioned", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["precision"] == "fp16" and record["parity"]["ok"]
    assert record["parity"]["tolerance"]["rtol"] == 5e-3 and record["fp16_converter"]


# ------------------------------------------------------------------ the file at -o
def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize(("failure", "code"), [(KeyboardInterrupt, 130), ("disagree", 2),
                                               (RuntimeError("ORT crashed"), 2)])
def test_export_writes_to_o_only_once_the_file_is_checked(tmp_path, capsys, monkeypatch,
                                                          failure, code):
    """An interrupted or failed check (ONNX Runtime disagreeing or unable to run the file)
    leaves nothing at -o (nor a temporary file), and an existing file given with --force is
    left as it was."""
    import rtmbench.measure.export as export

    real_check, real_session = export.check_parity, export.ort_cpu_session

    def check(model, path, *args, **kwargs):
        assert path.exists() and path.name != "m.onnx"  # the check reads the unchecked file
        if failure == "disagree":
            report = real_check(model, path, *args, **kwargs)
            report.max_abs_error = {k: 1.0 for k in report.max_abs_error}
            return report
        if isinstance(failure, RuntimeError):
            return real_check(model, path, *args, **kwargs)
        raise failure

    def session(*args, **kwargs):
        raise failure

    monkeypatch.setattr(export, "check_parity", check)
    if isinstance(failure, RuntimeError):
        monkeypatch.setattr(export, "ort_cpu_session", session)
    out = tmp_path / "m.onnx"
    argv = ["export", "tiny", "-o", str(out), "--input-size", "64", "64"]
    for extra in ([], ["--force"]):
        assert main(argv + extra) == code
        err = capsys.readouterr().err
        assert "Traceback" not in err and (code == 130 or str(out) in err), err
        if failure == "disagree":  # the fix, named by the command's flags
            assert "(flags: --opset, --no-fold-bn)" in err, err
        if not extra:
            assert _leftovers(tmp_path) == []
            out.write_bytes(b"the user's previous file")
    assert _leftovers(tmp_path) == ["m.onnx"] and out.read_bytes() == b"the user's previous file"
    monkeypatch.setattr(export, "check_parity", real_check)
    monkeypatch.setattr(export, "ort_cpu_session", real_session)
    assert main(argv + ["--force"]) == 0
    assert out.read_bytes() != b"the user's previous file" and _leftovers(tmp_path) == ["m.onnx"]


def test_export_says_which_weights_it_wrote(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "tiny", "-o", str(out), "--input-size", "64", "64"]) == 0
    printed = capsys.readouterr().out
    assert "random-init weights" in printed.splitlines()[0], printed
    assert "not a trained detector" in printed.splitlines()[0], printed
    assert main(["export", "tiny", "-o", str(out), "--input-size", "64", "64", "--force",
                 "--weights", "well-conditioned", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["weights"] == {"weights": "well-conditioned", "seed": 0}, record
