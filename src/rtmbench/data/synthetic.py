"""A small COCO-format dataset generated on the spot: for tests and the CI smoke suite.

Images are JPEGs of varied, non-square sizes with filled rectangles and ellipses on a noisy
background; each shape is an instance whose box is the shape's extent. The categories are
COCO's own 80 (ids 1..90 with COCO's gaps) so that label <-> category id mapping is exercised.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..fileio import write_json_atomic
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


def make_synthetic_coco(root: Path, num_images: int, seed: int = 0) -> Path:
    """Write ``root/annotations/instances_val2017.json`` and ``root/val2017/*.jpg``; return root.

    Deterministic for a given seed. Image sizes vary between 96 and 320 px per side, never
    square, so keep-ratio resizing and padding are exercised along both axes.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
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
    categories = [{"id": cid, "name": name, "supercategory": "synthetic"}
                  for cid, name in COCO_CATEGORIES]
    write_json_atomic(root / ANNOTATIONS, {
        "info": {"description": f"rtmbench synthetic COCO, seed {seed}"}, "licenses": [],
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
