"""A COCO-format dataset generated on the spot: for tests, the CI smoke suite and benchmarks.

Images are JPEGs with filled rectangles and ellipses on a background; each shape is an instance
whose box is the shape's extent. The categories are COCO's own 80 (ids 1..90 with COCO's gaps)
so that label <-> category id mapping is exercised. Two profiles:

- ``small`` (the default; tests and CI): 96..320 px per side, never square, 1..5 shapes on a
  noisy background; one random stream, so a seed always gives the same files.
- ``coco``: COCO val2017's shape, to time the evaluation as it runs on the real thing. Sizes:
  long side 640 for ~96% of images (landscape 68%, portrait 27%, square 5%: 640x640 or
  612x612), short side 480 (40%), 427 (25%), 424..426 (15%) or 360..600 (20%); ~2% smaller
  images (long side 200..639). Objects per image: negative binomial with mean 7.36 (val2017:
  36,781 instances / 5,000 images), at least 1, at most 60; object sizes small / medium / large
  (COCO's area bins) 41% / 34% / 25%, log-uniform area within the bin, aspect ratio
  log-uniform in [1/3, 3]. Background: smooth colour field plus grain, JPEG quality 90, ~120 KB
  per 640x480 image (val2017 averages ~160 KB), so decoding costs about what COCO's does. These
  proportions are approximations of COCO's statistics, not a copy of its files. Each image
  has its own random stream (seed, index): the output is the same for any number of worker
  processes, which generate the images in parallel.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from ..fileio import write_json_atomic
from ..parallel import process_pool
from .coco import ANNOTATIONS, IMAGES

COCO_CATEGORIES = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"),
    (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"),
    (24, "zebra"), (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"),
    (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"),
    (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"),
    (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"),
    (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"), (56, "broccoli"),
    (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"),
    (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"),
    (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"),
    (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"))


def _draw_image(rng: np.random.Generator, width: int, height: int, first_ann_id: int,
                image_id: int) -> tuple[np.ndarray, list[dict]]:
    image = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    annotations = []
    for k in range(int(rng.integers(1, 6))):
        w = int(rng.integers(max(4, width // 12), width // 2))
        h = int(rng.integers(max(4, height // 12), height // 2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        colour = tuple(int(c) for c in rng.integers(80, 256, size=3))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), colour, thickness=-1)
        else:
            cv2.ellipse(image, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, colour, -1)
        cat_id = COCO_CATEGORIES[int(rng.integers(len(COCO_CATEGORIES)))][0]
        annotations.append({"id": first_ann_id + k, "image_id": image_id, "category_id": cat_id,
                            "bbox": [float(x), float(y), float(w), float(h)],
                            "area": float(w * h), "iscrowd": 0})
    return image, annotations


# ---------------------------------------------------------------------------- coco profile
COCO_MEAN_OBJECTS = 36781 / 5000  # instances per image in val2017
_SHORT_SIDES = ((480, 0.40), (427, 0.25), (426, 0.05), (425, 0.05), (424, 0.05))
_AREA_BINS = ((0.41, 16.0, 32.0 ** 2), (0.34, 32.0 ** 2, 96.0 ** 2), (0.25, 96.0 ** 2, None))
PROFILES = ("small", "coco")


def coco_image_size(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height) drawn from the approximation of val2017's sizes (module docstring)."""
    u = rng.random()
    if u < 0.05:  # square
        side = 640 if rng.random() < 0.7 else 612
        return side, side
    long_side = 640 if rng.random() >= 0.02 else int(rng.integers(200, 640))
    v, short = rng.random(), 0
    for value, p in _SHORT_SIDES:
        if v < p:
            short = value
            break
        v -= p
    if not short:
        short = int(rng.integers(360, 601))
    if long_side < 640:  # a smaller image keeps a typical aspect ratio
        short = max(1, int(round(long_side * short / 640)))
    return (long_side, short) if u < 0.05 + 0.68 else (short, long_side)


def coco_object_count(rng: np.random.Generator) -> int:
    """Negative binomial (r = 1.5) with COCO's mean, clipped to 1..60."""
    r = 1.5
    return int(min(60, max(1, rng.negative_binomial(r, r / (r + COCO_MEAN_OBJECTS)))))


def _coco_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    cells = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3),
                         dtype=np.uint8)
    image = cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0.0, 8.0, size=(height, width, 1)).astype(np.int16)
    return np.clip(image.astype(np.int16) + grain, 0, 255).astype(np.uint8)


def _coco_box(rng: np.random.Generator, width: int, height: int) -> tuple[int, int, int, int]:
    u, low, high = rng.random(), *_AREA_BINS[-1][1:]
    for p, bin_low, bin_high in _AREA_BINS:
        if u < p:
            low, high = bin_low, bin_high
            break
        u -= p
    high = min(high or 0.6 * width * height, 0.6 * width * height)
    area = float(np.exp(rng.uniform(np.log(low), np.log(max(high, low * 1.01)))))
    ratio = float(np.exp(rng.uniform(np.log(1 / 3), np.log(3))))  # h / w
    w = int(np.clip(round((area / ratio) ** 0.5), 2, width))
    h = int(np.clip(round((area * ratio) ** 0.5), 2, height))
    x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    return x, y, w, h


def _coco_image(args: tuple[int, int, str, int]) -> tuple[dict, list[dict]]:
    """Draw and write image ``index``; return its image entry and annotations (ids unset)."""
    seed, index, folder, quality = args
    rng = np.random.default_rng([seed, index])
    image_id = 1000 + 7 * index
    width, height = coco_image_size(rng)
    pixels = _coco_background(rng, width, height)
    annotations = []
    for _ in range(coco_object_count(rng)):
        x, y, w, h = _coco_box(rng, width, height)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            cv2.rectangle(pixels, (x, y), (x + w - 1, y + h - 1), colour, thickness=-1)
        else:
            cv2.ellipse(pixels, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, colour,
                        -1)
        cat_id = COCO_CATEGORIES[int(rng.integers(len(COCO_CATEGORIES)))][0]
        annotations.append({"image_id": image_id, "category_id": cat_id,
                            "bbox": [float(x), float(y), float(w), float(h)],
                            "area": float(w * h), "iscrowd": 0})
    file_name = f"{image_id:012d}.jpg"
    if not cv2.imwrite(str(Path(folder) / file_name), pixels,
                       [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"could not write {Path(folder) / file_name}")
    return {"id": image_id, "file_name": file_name, "width": width, "height": height}, annotations


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _make_coco_profile(root: Path, num_images: int, seed: int, workers: int | None,
                       quality: int) -> tuple[list[dict], list[dict]]:
    workers = max(1, min(workers or default_workers(), num_images or 1))
    jobs = [(seed, i, str(root / IMAGES), quality) for i in range(num_images)]
    if workers == 1:
        drawn = [_coco_image(job) for job in jobs]
    else:
        with process_pool(workers) as pool:
            drawn = list(pool.map(_coco_image, jobs, chunksize=max(1, num_images // (8 * workers))))
    images, annotations = [], []
    for image, anns in drawn:  # ids in image order: independent of the worker count
        images.append(image)
        for ann in anns:
            annotations.append({"id": len(annotations) + 1, **ann})
    return images, annotations


def make_synthetic_coco(root: Path, num_images: int, seed: int = 0, *,
                        profile: Literal["small", "coco"] = "small",
                        workers: int | None = None, jpeg_quality: int = 90) -> Path:
    """Write ``root/annotations/instances_val2017.json`` and ``root/val2017/*.jpg``; return root.

    Deterministic for a given seed and profile (module docstring). ``small``: image sizes vary
    between 96 and 320 px per side, never square, so keep-ratio resizing and padding are
    exercised along both axes; written by this process. ``coco``: COCO val2017's sizes and
    object counts, written by ``workers`` processes (default: every usable core) at
    ``jpeg_quality``.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {profile!r}")
    root = Path(root)
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
    if profile == "coco":
        images, annotations = _make_coco_profile(root, num_images, seed, workers, jpeg_quality)
        return _write_annotations(root, images, annotations, f"seed {seed}, profile coco")
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(num_images):
        image_id = 1000 + 7 * i  # sparse ids, as COCO's are
        width, height = (int(v) for v in rng.integers(96, 321, size=2))
        if width == height:
            width += 1
        pixels, anns = _draw_image(rng, width, height, len(annotations) + 1, image_id)
        file_name = f"{image_id:012d}.jpg"
        if not cv2.imwrite(str(root / IMAGES / file_name), pixels,
                           [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"could not write {root / IMAGES / file_name}")
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        annotations.extend(anns)
    return _write_annotations(root, images, annotations, f"seed {seed}")


def _write_annotations(root: Path, images: list[dict], annotations: list[dict],
                       what: str) -> Path:
    categories = [{"id": cid, "name": name, "supercategory": "synthetic"}
                  for cid, name in COCO_CATEGORIES]
    write_json_atomic(root / ANNOTATIONS, {
        "info": {"description": f"rtmbench synthetic COCO, {what}"}, "licenses": [],
        "images": images, "annotations": annotations, "categories": categories})
    return root


def draw_images(num_images: int, seed: int = 0) -> list[np.ndarray]:
    """``num_images`` generated BGR images (as :func:`make_synthetic_coco` draws them), in
    memory: e.g. to calibrate seeded weights on the kind of input the smoke suite sees."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(num_images):
        width, height = (int(v) for v in rng.integers(96, 321, size=2))
        images.append(_draw_image(rng, width + (width == height), height, 1, i)[0])
    return images
