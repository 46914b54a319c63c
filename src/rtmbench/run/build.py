"""The one way to get an RTMDet with weights: checks, the command line and tests all call
:func:`build`.

Weights are one of
- ``"random-init"``: PyTorch's default initialisation from a generator seeded with 0
  (:func:`rtmbench.models.build_rtmdet`), the same in every process;
- ``"well-conditioned"``: seeded weights calibrated so that the model detects something
  (:mod:`rtmbench.models.init`): what the smoke gate's golden detections are made with, and
  what timed artifacts are checked with when no checkpoint is at hand;
- a zoo weights id (``"mmyolo"``, ``"mmdet"``), or ``None`` for the zoo's default: fetched into
  the cache, verified by sha256 (:mod:`rtmbench.sources`), loaded strictly in the layout the
  zoo declares;
- ``checkpoint=PATH``: a file of the user's, loaded strictly (layout detected).

Errors keep their class, so a unit records what really happened: weights no source can deliver
are "not run", a hash mismatch, an unsafe pickle or a checkpoint of another size "failed".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..models import build_rtmdet
from ..models.init import well_conditioned_
from ..spec.check_specs import RANDOM_INIT, WELL_CONDITIONED
from ..spec.zoo import ResolvedModel, load_zoo


@dataclass
class Built:
    model: nn.Module
    provenance: dict[str, Any] = field(default_factory=dict)  # what the record's checkpoint says


def resolve(model: ResolvedModel | str, zoo_path: str | Path | None = None) -> ResolvedModel:
    return model if isinstance(model, ResolvedModel) else load_zoo(zoo_path).get(model)


def calibration_batch(entry: ResolvedModel, num_images: int = 4, seed: int = 1234,
                      input_size: tuple[int, int] | None = None) -> Tensor:
    """Generated images through the zoo's test pipeline (resize, pad, normalise) at
    ``input_size`` (width, height; default the zoo's): what the well-conditioned weights are
    calibrated on, and realistic probe inputs for export checks."""
    from ..data.pipeline import TestPipeline
    from ..data.synthetic import draw_images

    pipe = TestPipeline(tuple(input_size or entry.input_size), entry.pipeline)
    padded = [pipe.pad(pipe.resize(image)[0]) for image in draw_images(num_images, seed)]
    return pipe.normalize(torch.stack([torch.from_numpy(p) for p in padded]))


def network(model: ResolvedModel | str, *, seed: int = 0, num_classes: int | None = None,
            zoo_path: str | Path | None = None) -> nn.Module:
    """The zoo model's network with seeded PyTorch initialisation (``seed=0`` is the
    "random-init" weights :func:`build` gives); tests use other seeds for other weights."""
    entry = resolve(model, zoo_path)
    return build_rtmdet(entry.architecture.model_dump(), num_classes or entry.num_classes,
                        seed=seed)


_WELL_CONDITIONED: dict[tuple, dict[str, Tensor]] = {}  # the latest model's only


def _well_conditioned_state(entry: ResolvedModel, net: nn.Module) -> dict[str, Tensor]:
    """The well-conditioned weights of ``entry`` (deterministic): calibrated once per model and
    input size, then reused by that model's next units (x takes ~10 s to calibrate on 2 cores;
    a suite runs a model's units one after another, so one cached model is enough)."""
    key = (entry.name, tuple(entry.input_size), entry.architecture.model_dump_json())
    if key not in _WELL_CONDITIONED:
        _WELL_CONDITIONED.clear()
        state = well_conditioned_(net, calibration_batch(entry), seed=0).state_dict()
        _WELL_CONDITIONED[key] = {k: v.detach().clone() for k, v in state.items()}
    return _WELL_CONDITIONED[key]


def build(model: ResolvedModel | str, weights: str | None = None, *,
          checkpoint: str | Path | None = None, trust: bool = False, progress: bool = True,
          zoo_path: str | Path | None = None) -> Built:
    """The zoo model ``model`` (an entry, a size or a name) in eval mode, with its weights."""
    entry = resolve(model, zoo_path)
    net = network(entry)
    if checkpoint is not None:
        if weights not in (None, RANDOM_INIT, WELL_CONDITIONED):
            raise ValueError("give a zoo weights id or a checkpoint file, not both")
        from ..sources import load_checkpoint

        info = load_checkpoint(net, checkpoint, trust=trust)
        return Built(net.eval(), {"weights": "file", "path": str(checkpoint), **info})
    if weights == RANDOM_INIT:
        return Built(net, {"weights": RANDOM_INIT, "seed": 0})
    if weights == WELL_CONDITIONED:
        net.load_state_dict(_well_conditioned_state(entry, net))
        return Built(net.eval(), {"weights": WELL_CONDITIONED, "seed": 0})
    from ..sources import fetch_weights, load_checkpoint

    fetched = fetch_weights(entry, weights, progress=progress)
    weights_id = weights or entry.default_weights_id()
    layout = entry.weights_by_id(weights_id).layout  # declared, not guessed
    info = load_checkpoint(net, fetched.path, layout=layout, trust=trust,
                           sha256=fetched.sha256)
    return Built(net.eval(), {**fetched.provenance(), **info, "weights": weights_id})
