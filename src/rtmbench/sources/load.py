"""Load a checkpoint strictly into our RTMDet, whichever layout it was saved in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .fetch_errors import CheckpointError, CheckpointMismatchError, HashMismatchError
from .layouts import LAYOUTS, detect_layout, to_mmdet
from .safe_load import read_checkpoint

SHOW = 5  # how many keys of each kind an error lists


def _resolve_layout(keys: list[str], layout: str, path: Path) -> str:
    if layout != "auto":
        if layout not in LAYOUTS:
            raise CheckpointError(f"unknown layout {layout!r}; use auto, {', '.join(LAYOUTS)}.")
        return layout
    found = detect_layout(keys)
    if found is None:
        raise CheckpointMismatchError(
            f"{path}: cannot tell whether this is an MMDetection or an MMYOLO RTMDet checkpoint "
            f"(first keys: {', '.join(keys[:SHOW])}); it is probably not an RTMDet checkpoint. "
            f"Pass layout='mmdet' or 'mmyolo' to force one.")
    return found


def _differences(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    """A readable list of missing/unexpected keys and shape mismatches, or None if all fit."""
    ours = model.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    shapes = [f"{k}: checkpoint {list(state[k].shape)} vs model {list(v.shape)}"
              for k, v in ours.items() if k in state and state[k].shape != v.shape]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected),
                         ("shape mismatches", shapes)):
        if items:
            more = f" (+{len(items) - SHOW} more)" if len(items) > SHOW else ""
            parts.append(f"{len(items)} {label}: {'; '.join(items[:SHOW])}{more}")
    return ". ".join(parts) if parts else None


def load_checkpoint(model: torch.nn.Module, path: str | Path, *, layout: str = "auto",
                    trust: bool = False, sha256: str | None = None) -> dict[str, Any]:
    """Load ``path`` into ``model`` strictly; MMYOLO names are mapped to ours.

    Returns ``{"layout", "sha256", "meta"}``, ``sha256`` being that of the bytes loaded (hashed
    as they are read, never taken from a sidecar); when ``sha256`` is given (a fetched file's
    hash) they must match it, else HashMismatchError: the file changed since it was fetched.
    A checkpoint of another size or architecture raises CheckpointMismatchError listing the
    first missing/unexpected keys and shape mismatches; an unsafe pickle raises
    UnsafeCheckpointError unless ``trust``.
    """
    path = Path(path)
    raw, meta, actual = read_checkpoint(path, trust=trust)
    if sha256 is not None and not actual.startswith(sha256):
        raise HashMismatchError(
            f"{path} has sha256 {actual} as it is loaded, but {sha256} was verified when it "
            f"was fetched: the file was changed in the cache since. Nothing was loaded; delete "
            f"it, fetch again, and check who can write to {path.parent}.")
    keys = list(raw)
    chosen = _resolve_layout(keys, layout, path)
    state = to_mmdet(raw, chosen)
    problem = _differences(model, state)
    if problem:
        raise CheckpointMismatchError(
            f"{path} ({chosen} layout) does not fit {type(model).__name__}: {problem}. Check "
            f"that the checkpoint is for this model size (the zoo lists each size's files) "
            f"and, if you forced a layout, that it is the right one.")
    model.load_state_dict(state, strict=True)
    return {"layout": chosen, "sha256": actual, "meta": meta}
