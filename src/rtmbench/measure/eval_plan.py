"""What an evaluation will run, decided without torch: its options checked, its shard parsed,
its batches planned. ``rtmbench evaluate`` checks these before importing the evaluation (torch
takes seconds to import; a wrong flag is said at once)."""

from __future__ import annotations

import re

from ..errors import InputError
from ..spec.check_specs import MAX_BATCH, MAX_IMAGES, MAX_WORKERS

PRECISIONS = ("fp32", "fp16")
DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


def check_options(*, batch_size: int | None, workers: int | None, device: str, precision: str,
                  limit: int | None = None) -> None:
    """The evaluation's options, with the bounds a suite's box_ap check has; else InputError
    naming the flag. ``batch_size`` None: the device's default; ``device`` auto: resolved later
    (fp16 on a machine without a GPU is refused then)."""
    if not DEVICE.fullmatch(device):
        raise InputError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}.")
    if (batch_size is not None and not 1 <= batch_size <= MAX_BATCH) or (
            workers is not None and not 0 <= workers <= MAX_WORKERS):
        raise InputError(f"--batch-size must be 1 to {MAX_BATCH} and --workers 0 to "
                         f"{MAX_WORKERS}, got {batch_size}, {workers}.")
    if limit is not None and not 1 <= limit <= MAX_IMAGES:
        raise InputError(f"--limit must be a number of images from 1 to {MAX_IMAGES}, got "
                         f"{limit}.")
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use fp32 or fp16.")
    if precision != "fp32" and device == "cpu":
        raise InputError("--precision fp16 needs --device cuda: CPU evaluation runs in fp32.")


def plan_batches(num_images: int, batch_size: int) -> list[list[int]]:
    return [list(range(i, min(i + batch_size, num_images)))
            for i in range(0, num_images, batch_size)]


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        index = count = -1
    if not 0 <= index < count:
        raise InputError(f"--shard takes i/n with 0 <= i < n (e.g. 0/4), got {text!r}.")
    return index, count
