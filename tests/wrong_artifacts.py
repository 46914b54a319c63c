"""A timed artifact that is wrong on purpose, for the tests that a wrong artifact is red."""

from __future__ import annotations

from types import ModuleType

import pytest


def negate_onnx_classifier(monkeypatch: pytest.MonkeyPatch, backend: ModuleType) -> None:
    """``backend`` (an ONNX-reading backend's module) builds from an export whose classifier
    weights are negated: the same shapes and speed, very different detections. Other backends
    keep the right export."""
    import onnx
    from onnx import numpy_helper

    real = backend.backend_onnx

    def negated(*args, **kwargs):
        path = real(*args, **kwargs)
        model = onnx.load(path)
        for init in model.graph.initializer:
            if "rtm_cls" in init.name and init.name.endswith("weight"):
                init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
        onnx.save(model, path)
        return path

    monkeypatch.setattr(backend, "backend_onnx", negated)
