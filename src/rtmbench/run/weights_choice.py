"""Which weights a command builds its model with, checked before anything slow (importing
torch, fetching), then built through the one entry point, :func:`rtmbench.run.build.build`.
Importing this module imports no torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..spec.check_specs import RANDOM_INIT, WELL_CONDITIONED


@dataclass(frozen=True)
class WeightsChoice:
    """A zoo weights id (``random-init`` and ``well-conditioned``: seeded, no download), or a
    checkpoint file of the user's (``--checkpoint``); neither: the zoo's first available
    weights. ``trust`` allows arbitrary pickled objects in the checkpoint."""

    weights: str | None = None
    checkpoint: str | None = None
    trust: bool = False

    def check(self, entry: Any) -> None:
        """--weights names a zoo weights id (or seeded weights), --checkpoint an existing file:
        said before anything slow (importing torch, fetching)."""
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise InputError(f"checkpoint {self.checkpoint} does not exist (or is not a file); "
                             f"fetch one with `rtmbench fetch SIZE` or give the path of a .pth "
                             f"or .safetensors file.")
        if self.weights not in (None, RANDOM_INIT, WELL_CONDITIONED):
            try:
                entry.weights_by_id(self.weights)
            except InputError as exc:
                raise InputError(f"--weights: {exc} Or use {RANDOM_INIT} or "
                                 f"{WELL_CONDITIONED} (seeded, no download).") from None

    def build(self, entry: Any, *, progress: bool = True) -> Any:
        """The model with these weights (:class:`rtmbench.run.build.Built`)."""
        from .build import build

        return build(entry, self.weights, checkpoint=self.checkpoint, trust=self.trust,
                     progress=progress)


def describe_weights(info: dict) -> str:
    """Which weights a model has, in words (from its provenance)."""
    if info.get("weights") == RANDOM_INIT:
        return ("random-init weights (seeded initialisation, not a trained detector: give "
                "--weights or --checkpoint for trained ones)")
    if info.get("weights") == WELL_CONDITIONED:
        return "well-conditioned weights (seeded, not a trained detector)"
    return (f"{info.get('weights')} weights from {info.get('path') or info.get('file')} "
            f"({info.get('layout')} layout, sha256 {str(info.get('sha256'))[:12]})")


def weights_notice(info: dict) -> str:
    """What a command says on stderr about the weights it built its model with."""
    if info.get("weights") == RANDOM_INIT:
        return "seeded random weights (random-init): timings are real, detections mean nothing."
    if info.get("weights") == WELL_CONDITIONED:
        return ("seeded well-conditioned weights: varied outputs for accuracy checks, no "
                "trained detector.")
    return describe_weights(info)
