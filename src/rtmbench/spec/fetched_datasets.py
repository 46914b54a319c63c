"""Where a zoo data set is fetched to, and how a complete one is told from a half-made one.

``rtmbench fetch --coco`` (:mod:`rtmbench.sources.datasets`) extracts a data set into a
temporary sibling folder, writes :data:`COMPLETE_MARKER` into it last, and only then renames it
into place; :func:`fetched_dataset` is the one test of "fetched and complete" that every reader
uses (``rtmbench evaluate``, the box AP check, the latency accuracy check, through
:func:`rtmbench.data.coco.resolve_coco_root`). A folder without the marker (a killed
extraction, a folder made by hand) is never taken for a fetched data set.

Here, in the spec layer, because both the writer (``sources``) and the readers (``data``) need
it and neither may import the other.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .settings import load_settings

DATASETS_DIR = "datasets"  # under RTMBENCH_CACHE: the archives, and one folder per data set
COMPLETE_MARKER = ".rtmbench-complete.json"
COCO_VAL2017 = "coco-val2017"  # the zoo's name of COCO val2017 (``datasets:`` in the zoo)
FETCH_COCO = "rtmbench fetch --coco"


def datasets_root(cache: Path | None = None) -> Path:
    """``<RTMBENCH_CACHE>/datasets``: where data set archives and folders are kept."""
    return (cache or load_settings().cache) / DATASETS_DIR


def dataset_dir(name: str, cache: Path | None = None) -> Path:
    """The default folder of data set ``name``: ``<RTMBENCH_CACHE>/datasets/<name>``."""
    return datasets_root(cache) / name


def is_complete(folder: Path) -> bool:
    """``folder`` is a real directory (not a link) holding the completion marker as a regular
    file (not a link): a fetch finished it."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return False
        return stat.S_ISREG(os.lstat(folder / COMPLETE_MARKER).st_mode)
    except OSError:
        return False


def fetched_dataset(name: str = COCO_VAL2017) -> Path | None:
    """The complete fetched data set ``name`` in the cache, or None."""
    folder = dataset_dir(name)
    return folder if is_complete(folder) else None
