"""Checkpoints and data sets from where users keep them: fetch (cache, hash, resume, mirrors,
offline), safe load, MMYOLO -> MMDetection layout mapping; data set archives fetched the same
way and extracted safely (``datasets``, ``archive``)."""

from .datasets import FetchedDataset, fetch_dataset
from .download import FetchSettings
from .fetch import FetchedCheckpoint, FetchedFile, choose_weights, fetch_file, fetch_weights
from .fetch_errors import (
    CacheNotWritable,
    CheckpointError,
    CheckpointMismatchError,
    DatasetArchiveError,
    DatasetUnavailable,
    DownloadError,
    HashMismatchError,
    OfflineError,
    SizeLimitError,
    UnsafeCachePath,
    UnsafeCheckpointError,
    WeightsUnavailable,
)
from .layouts import MMYOLO_TO_MMDET, detect_layout, to_mmdet, to_mmyolo
from .load import load_checkpoint
from .safe_load import read_state_dict

__all__ = [
    "CacheNotWritable", "CheckpointError", "CheckpointMismatchError", "DatasetArchiveError",
    "DatasetUnavailable", "DownloadError", "FetchSettings", "FetchedCheckpoint", "FetchedDataset",
    "FetchedFile", "HashMismatchError", "MMYOLO_TO_MMDET", "OfflineError",
    "SizeLimitError", "UnsafeCachePath", "UnsafeCheckpointError", "WeightsUnavailable",
    "choose_weights", "detect_layout", "fetch_dataset", "fetch_file", "fetch_weights",
    "load_checkpoint",
    "read_state_dict", "to_mmdet", "to_mmyolo",
]

from .._aliases import renamed  # noqa: E402

# Renamed modules, still importable under their old names (rtmbench._aliases).
renamed("rtmbench.sources.errors", "rtmbench.sources.fetch_errors")
