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
from rtmbench.run.model import network
from tests.conftest import well_conditioned_state_dict

pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
HW = (96, 128)  # small, and not square: catches a swapped H/W


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
    report = export_and_check(tiny, path, HW)
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
    path = export_onnx(tiny, tmp_path / "dyn.onnx", HW, dynamic_batch=True)
    report = check_parity(tiny, path, HW, batch=3)
    assert report.ok
    session = ort_cpu_session(path)
    out = session.run(["box_8"], {"input": np.zeros((2, 3, *HW), np.float32)})[0]
    assert out.shape[0] == 2


def test_disagreement_fails(tiny, tmp_path, monkeypatch):
    other = network("tiny")
    other.load_state_dict(well_conditioned_state_dict(other, seed=1))
    path = export_onnx(other, tmp_path / "other.onnx", HW)
    report = check_parity(tiny, path, HW)
    assert not report.ok and report.worst > 1e-2
    import rtmbench.measure.export as export

    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: path)  # writes the wrong model
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        export.export_and_check(tiny, tmp_path / "x.onnx", HW)


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "tiny", "-o", str(out), "--input-size", "128", "96", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["input_hw"] == [96, 128] and record["parity"]["ok"] and out.exists()
    # nothing a user ran is overwritten
    assert main(["export", "tiny", "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
