"""``rtmbench export``'s work: export one model as an
:class:`~rtmbench.measure.requests.ExportRequest` says, check the file against PyTorch in ONNX
Runtime on generated images through the zoo's test pipeline before it is put in place, and say
what was written as text or as one JSON object. The command line checks its flags and the
output path, builds the model, calls :func:`export_command` and prints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..measure.export import ParityReport, export_and_check, onnx_metadata
from ..measure.requests import ExportRequest
from ..spec.zoo import ResolvedModel
from .build import Built, calibration_batch


@dataclass
class ExportReport:
    """What ``rtmbench export`` wrote and how the file compares with PyTorch."""

    path: Path
    model: str
    request: ExportRequest
    weights: dict[str, Any]  # the model's checkpoint provenance
    parity: ParityReport
    metadata: dict[str, str]  # the file's rtmbench.* metadata

    def to_json(self) -> str:
        r = self.request
        return json.dumps({"path": str(self.path), "model": self.model,
                           "input_hw": list(r.input_hw), "batch": r.batch, "opset": r.opset,
                           "precision": r.precision,
                           "fp16_converter": self.metadata.get("rtmbench.fp16_converter"),
                           "weights": self.weights, "parity": self.parity.to_dict()},
                          default=str)

    def text(self, weights: str) -> str:
        """Two lines; ``weights``: the model's weights in words."""
        r, report, meta = self.request, self.parity, self.metadata
        io = "FP16 weights and activations, FP32 input/outputs" if r.precision == "fp16" \
            else "FP32"
        tol = report.to_dict()["tolerance"]
        return (f"wrote {self.path} ({self.model} with {weights}, "
                f"{r.batch}x3x{r.input_hw[0]}x{r.input_hw[1]}, "
                f"opset {r.opset}, {io}, outputs {', '.join(report.max_abs_error)})"
                + (f"; converted by {meta['rtmbench.fp16_converter']}"
                   if "rtmbench.fp16_converter" in meta else "")
                + f"\nONNX Runtime (CPU) vs PyTorch FP32: max abs error {report.worst:.3g}, "
                f"{report.worst_relative:.2g} of the output range (bound {tol['atol']:g} + "
                f"{tol['rtol']:g} x max|output|; every output within it: {report.ok})")


def export_command(entry: ResolvedModel, path: Path, request: ExportRequest,
                   built: Built) -> ExportReport:
    """Export ``built.model`` (``entry``'s network with its weights) to ``path``, checked first
    (:func:`rtmbench.measure.export.export_and_check`). The parity probe: generated images
    through the zoo's test pipeline (what the model is for; conditioned weights can reach far
    larger activations on Gaussian noise)."""
    height, width = request.input_hw
    probe = calibration_batch(entry, num_images=request.batch, seed=7,
                              input_size=(width, height))
    report = export_and_check(built.model, path, request, probe)
    return ExportReport(Path(path), entry.name, request, built.provenance, report,
                        onnx_metadata(path))


__all__ = ["ExportReport", "export_command"]
