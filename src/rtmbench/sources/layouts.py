"""State-dict layouts of RTMDet checkpoints: MMDetection's (ours) and MMYOLO's.

MMYOLO builds the same network from the same bricks (CSPNeXt, CSPLayer, ConvModule) but names
the neck's layers after its BaseYOLONeck and wraps the head's layers in ``head_module``. The
renames below are read from MMYOLO's source, not guessed:
- mmyolo/models/necks/base_yolo_neck.py: ``reduce_layers`` (one per level), ``top_down_layers``
  built for idx = 2, 1, ``downsample_layers``, ``bottom_up_layers``, ``out_layers``;
- mmyolo/models/necks/cspnext_pafpn.py: reduce layer only at idx 2 (the others are Identity, no
  weights); top-down layer idx 2 = Sequential(CSPLayer, 1x1 ConvModule), idx 1 = CSPLayer. So
  MMDetection's second reduce conv lives at ``top_down_layers.0.1`` in MMYOLO;
- mmyolo/models/dense_heads/rtmdet_head.py: RTMDetHead.head_module = RTMDetSepBNHeadModule with
  ``cls_convs``, ``reg_convs``, ``rtm_cls``, ``rtm_reg`` as in MMDetection;
- mmyolo/models/backbones/cspnext.py: same ``stem``/``stageN`` names as MMDetection;
- tools/model_converters/rtmdet_to_mmyolo.py applies exactly these renames (MMDet -> MMYOLO).
The table is for the three-level (P5) neck every zoo size uses.
"""

from __future__ import annotations

from collections.abc import Mapping

from .fetch_errors import CheckpointError

LAYOUTS = ("mmdet", "mmyolo")

# (MMYOLO key prefix, MMDetection key prefix). No prefix is a prefix of another on either side,
# so the mapping is a bijection on every key it touches; keys matching none stay as they are.
MMYOLO_TO_MMDET: tuple[tuple[str, str], ...] = (
    ("bbox_head.head_module.", "bbox_head."),
    ("neck.reduce_layers.2.", "neck.reduce_layers.0."),
    ("neck.top_down_layers.0.0.", "neck.top_down_blocks.0."),
    ("neck.top_down_layers.0.1.", "neck.reduce_layers.1."),
    ("neck.top_down_layers.1.", "neck.top_down_blocks.1."),
    ("neck.downsample_layers.", "neck.downsamples."),
    ("neck.bottom_up_layers.", "neck.bottom_up_blocks."),
    ("neck.out_layers.", "neck.out_convs."),
)

# Early RTMDet checkpoints named the head's predictors after TOOD; MMYOLO's converter
# (tools/model_converters/rtmdet_to_mmyolo.py) renames 'tood' to 'rtm', and so do we.
LEGACY_MMDET: tuple[tuple[str, str], ...] = (
    ("bbox_head.tood_cls.", "bbox_head.rtm_cls."),
    ("bbox_head.tood_reg.", "bbox_head.rtm_reg."),
)

# Entries either framework keeps next to the network's weights but that carry no weights of the
# detector itself (the data preprocessor's buffers); dropped from both layouts.
IGNORED_PREFIXES = ("data_preprocessor.",)

# Key prefixes that only one layout has: enough to tell them apart.
_MARKERS = {
    "mmyolo": ("bbox_head.head_module.", "neck.top_down_layers.", "neck.out_layers."),
    "mmdet": ("bbox_head.rtm_cls.", "neck.top_down_blocks.", "neck.out_convs."),
}


def detect_layout(keys: list[str]) -> str | None:
    """"mmdet" or "mmyolo" when the keys carry the markers of exactly one layout, else None."""
    found = [name for name, prefixes in _MARKERS.items()
             if any(k.startswith(prefixes) for k in keys)]
    return found[0] if len(found) == 1 else None


def _rename(key: str, table: tuple[tuple[str, str], ...]) -> str:
    for old, new in table:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def _apply(state: Mapping[str, object], table: tuple[tuple[str, str], ...]) -> dict:
    out: dict = {}
    for key, value in state.items():
        if key.startswith(IGNORED_PREFIXES):
            continue
        new = _rename(key, table)
        if new in out:  # would only happen if a checkpoint mixed both layouts
            raise CheckpointError(f"checkpoint keys collide after renaming: two entries map to "
                                  f"{new!r}; the file mixes MMYOLO and MMDetection names.")
        out[new] = value
    return out


def to_mmdet(state: Mapping[str, object], layout: str) -> dict:
    """The state dict in MMDetection's names (ours), from ``layout``."""
    if layout == "mmdet":
        return _apply(state, LEGACY_MMDET)
    if layout == "mmyolo":
        return _apply(state, MMYOLO_TO_MMDET)
    raise CheckpointError(f"unknown checkpoint layout {layout!r}; expected one of "
                          f"{', '.join(LAYOUTS)} or 'auto'.")


def to_mmyolo(state: Mapping[str, object]) -> dict:
    """MMDetection names -> MMYOLO names: the inverse table, used to write MMYOLO-format files."""
    return _apply(state, tuple((new, old) for old, new in MMYOLO_TO_MMDET))
