"""COCO dataset on disk, MMDetection's RTMDet test pipeline, and a synthetic COCO generator.

The names below load their module on first use: ``rtmbench.data.coco`` (JSON, no torch) must not
pull in the pipeline (torch, OpenCV), or every command, `--help` included, would pay for it.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import DatasetError

_WHERE = {
    "ANNOTATIONS": "coco", "ENV_VAR": "coco", "IMAGES": "coco", "CocoDataset": "coco",
    "ImageRecord": "coco", "resolve_coco_root": "coco", "check_coco_root": "coco",
    "default_coco_root": "coco", "missing_coco_reason": "coco",
    "PreparedImage": "pipeline", "TestPipeline": "pipeline", "rescale_size": "pipeline",
    "COCO_CATEGORIES": "synthetic", "make_synthetic_coco": "synthetic",
}

__all__ = ["DatasetError", *_WHERE]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
