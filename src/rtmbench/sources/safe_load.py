"""Read a checkpoint file into a plain ``{name: tensor}`` dict without running its code.

A ``.pth`` is a pickle, and unpickling can call any function it names. We unpickle with torch's
``weights_only`` unpickler, which only builds tensors and plain containers. OpenMMLab runners
also store objects of their own in ``meta`` and ``message_hub`` (ConfigDict, HistoryBuffer,
numpy scalars): globals from the modules in ``DROPPABLE_MODULES`` are replaced by inert
placeholders that record their arguments and run nothing, and are dropped with the entry that
held them. Any other global (``os.system``, ``builtins.eval``, ...) is refused before the
unpickling starts, unless the caller trusts the file. ``.safetensors`` holds no code at all.

The file is read into memory once and everything (the inspection, the unpickling, the sha256
the caller records and checks) works on those bytes: what is hashed is what is loaded, even if
the file changes meanwhile. (The bytes are held while the tensors are built: peak memory is
about twice the file, ~0.8 GB for RTMDet-x.)
"""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .fetch_errors import CheckpointError, UnsafeCheckpointError

# Modules whose objects OpenMMLab checkpoints carry outside the weights. Their globals are never
# imported or called: each is swapped for a placeholder class of ours.
DROPPABLE_MODULES = ("mmengine.", "mmcv.", "mmdet.", "mmyolo.", "numpy.")


class Dropped:
    """Stands in for an object we refused to construct; holds what the pickle gave it."""

    global_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<dropped {self.global_name}>"


def _placeholder(global_name: str) -> type[Dropped]:
    return type(f"Dropped<{global_name}>", (Dropped,), {"global_name": global_name})


def _unsafe_globals(data: bytes, path: Path) -> list[str]:
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data)))
    except (ValueError, RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise UnsafeCheckpointError(
            f"{path} is not a checkpoint in torch's zip format ({exc}), so its pickle cannot be "
            f"inspected before loading; re-save it with a current torch.save, convert it to "
            f".safetensors, or pass --trust-checkpoint (trust=True) if you trust its source: "
            f"loading it then may run code it contains.") from exc


PICKLE_PROTOCOL_2_PLUS = b"\x80"  # how every pickle (and a legacy torch.save file) begins


def _not_a_checkpoint(data: bytes) -> str | None:
    """Why ``data`` cannot be a torch checkpoint at all (empty, or neither torch's zip format
    nor a pickle), whoever made it: trusting it would change nothing. None when it may be."""
    head = data[:4]
    if not head:
        return "it is empty (0 bytes)"
    if head.startswith(PICKLE_PROTOCOL_2_PLUS):
        return None
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if any(name.endswith("data.pkl") for name in archive.namelist()):
                return None
        return "it is a zip archive without the data.pkl that torch.save writes"
    if head.startswith(b"PK"):
        return "it is a damaged or cut-short zip archive (torch's format needs the whole file)"
    return f"it is neither torch's zip format nor a pickle (it begins with {head!r})"


def _load_pickle(data: bytes, path: Path, trust: bool) -> Any:
    if reason := _not_a_checkpoint(data):
        raise CheckpointError(f"{path} is not a checkpoint: {reason}. Fetch it again (`rtmbench "
                              f"fetch SIZE`) or give a .pth or .safetensors file that holds "
                              f"the weights.")
    if trust:
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - a damaged file: EOFError, UnpicklingError...
            raise CheckpointError(f"{path} is not a checkpoint that torch can load, even "
                                  f"trusted: {type(exc).__name__}: {exc}. Fetch it again or "
                                  f"give another file.") from exc
    unsafe = _unsafe_globals(data, path)
    refused = [g for g in unsafe if not g.startswith(DROPPABLE_MODULES)]
    if refused:
        raise UnsafeCheckpointError(
            f"{path} would call {', '.join(refused)} while being unpickled: these are not "
            f"tensors nor OpenMMLab metadata, and unpickling them can execute code. Nothing was "
            f"loaded. If you trust where this file came from, pass --trust-checkpoint "
            f"(trust=True); otherwise get the checkpoint from the official source.")
    stand_ins = [(_placeholder(g), g) for g in unsafe]
    try:
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path} could not be unpickled safely: {str(exc).splitlines()[0]}. Pass "
            f"--trust-checkpoint (trust=True) only if you trust its source.") from exc


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The weights inside a loaded object: ``obj['state_dict']`` (OpenMMLab) or ``obj`` itself."""
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state:
        keys = f" with keys {', '.join(map(str, list(obj)[:8]))}" if isinstance(obj, dict) else ""
        raise CheckpointError(f"{path} holds no state_dict (found {type(obj).__name__}{keys}); "
                              f"expected an OpenMMLab checkpoint or a dict of tensors.")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        kinds = sorted({type(state[k]).__name__ for k in bad})
        raise UnsafeCheckpointError(
            f"{path}: state_dict entries {', '.join(map(str, bad[:5]))} are not tensors "
            f"({', '.join(kinds)}); a weights file should hold tensors only. Nothing was loaded "
            f"into the model.")
    return dict(state)


def _meta_summary(obj: Any) -> dict[str, Any]:
    """The harmless, plain-data parts of OpenMMLab's ``meta`` (versions, epoch, classes)."""
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return {}
    keep = {}
    for key in ("mmdet_version", "mmyolo_version", "mmengine_version", "epoch", "iter",
                "experiment_name", "time"):
        value = meta.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            keep[key] = value
    classes = (meta.get("dataset_meta") or {}).get("classes") if isinstance(
        meta.get("dataset_meta"), dict) else meta.get("CLASSES")
    if isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes):
        keep["num_classes"] = len(classes)
    return keep


def read_checkpoint(path: str | Path, *, trust: bool = False
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """``(state_dict, meta, sha256)`` of a ``.pth``/``.pt`` or ``.safetensors`` file, safely;
    ``sha256`` is that of the bytes the tensors were built from.

    ``meta`` keeps only plain values (framework versions, epoch, number of classes).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; fetch it with `rtmbench "
                              f"fetch SIZE` or give the path of a .pth/.safetensors file.")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror}.") from None
    sha256 = hashlib.sha256(data).hexdigest()
    if path.suffix == ".safetensors":
        from safetensors.torch import load

        try:
            return load(data), {}, sha256
        except Exception as exc:  # safetensors raises its own SafetensorError for bad headers
            raise CheckpointError(f"{path} is not a valid .safetensors file: {exc}") from exc
    obj = _load_pickle(data, path, trust)
    del data
    # Placeholders may only sit outside the weights: _state_dict_of refuses non-tensors.
    return _state_dict_of(obj, path), _meta_summary(obj), sha256


def read_state_dict(path: str | Path, *, trust: bool = False
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` of a checkpoint file, safely (:func:`read_checkpoint`)."""
    state, meta, _ = read_checkpoint(path, trust=trust)
    return state, meta
