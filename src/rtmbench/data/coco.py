"""COCO val2017 on disk: the annotation file, its images, and the 80 contiguous labels.

Labels are the category ids in ascending order, which is how MMDetection's CocoDataset maps them
on COCO (``cat2label = {cat_id: i for i, cat_id in enumerate(coco.get_cat_ids(classes))}``: the
file lists its 80 categories sorted by id). Detections are mapped back through the same table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError, DatasetMissing
from ..spec.fetched_datasets import COCO_VAL2017, FETCH_COCO, dataset_dir, fetched_dataset
from ..spec.settings import load_settings

ANNOTATIONS = Path("annotations") / "instances_val2017.json"
IMAGES = Path("val2017")
ENV_VAR = "RTMBENCH_COCO"


def default_coco_root() -> Path | None:
    """The COCO root when none is given on the command line: ``$RTMBENCH_COCO``, else COCO
    val2017 as ``rtmbench fetch --coco`` left it in the cache, if complete (its marker
    present: a half-extracted set never counts), else None. The one rule for ``rtmbench
    evaluate``, the box AP check and the latency accuracy check."""
    return load_settings().coco or fetched_dataset(COCO_VAL2017)


def missing_coco_reason() -> str:
    """Why there is no COCO, and the two ways to get one."""
    return (f"{ENV_VAR} is not set and no COCO was fetched: run `{FETCH_COCO}` (COCO val2017 "
            f"into {dataset_dir(COCO_VAL2017)}, used from there), or point {ENV_VAR} (or "
            f"--coco DIR) at a COCO 2017 directory holding {IMAGES}/ and {ANNOTATIONS}")


def resolve_coco_root(flag: str | Path | None) -> Path:
    """The COCO root from the flag, else :func:`default_coco_root`; a DatasetMissing naming
    ``rtmbench fetch --coco`` and RTMBENCH_COCO when there is none."""
    value = flag or default_coco_root()
    if not value:
        raise DatasetMissing(missing_coco_reason() + ".")
    return Path(value).expanduser()


def check_coco_root(root: Path) -> Path:
    """A quick look before any slow work (fetching weights): the root and its annotation file
    are there, else :class:`DatasetMissing` saying what is expected where."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetMissing(f"COCO root {root} is not a directory; expected it to hold "
                             f"{ANNOTATIONS} and {IMAGES}/ (COCO val2017 from "
                             f"https://cocodataset.org).")
    if not (root / ANNOTATIONS).is_file():
        raise DatasetMissing(f"COCO root {root} has no {ANNOTATIONS}; expected COCO 2017 there "
                             f"(annotations/ and val2017/ from cocodataset.org).")
    return root


@dataclass(frozen=True)
class ImageRecord:
    id: int
    path: Path
    width: int
    height: int


def read_json(path: Path, what: str) -> object:
    """Parse a JSON file; a missing or broken file is a DatasetError naming it."""
    if not path.is_file():
        raise DatasetError(f"{what} {path} does not exist (or is not a file).")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
                           f"column {exc.colno}. Re-download or regenerate the file.") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise DatasetError(f"{what} {path} cannot be read: {exc}.") from None
    except RecursionError:
        raise DatasetError(f"{what} {path} cannot be read: its JSON is nested too deeply. "
                           f"Re-download or regenerate the file.") from None


def _require_fields(where: str, section: str, items: object, fields: dict[str, type]) -> None:
    if not isinstance(items, list):
        raise DatasetError(f"{where}: '{section}' must be a list, found {type(items).__name__}.")
    for i, item in enumerate(items):
        bad = [name for name, kind in fields.items()
               if not isinstance(item, dict) or not isinstance(item.get(name), kind)
               or isinstance(item.get(name), bool)]
        if bad:
            expected = ", ".join(f"{n}: {t.__name__}" for n, t in fields.items())
            raise DatasetError(
                f"{where}: {section}[{i}] lacks a valid {', '.join(bad)} "
                f"(expected {expected}); found {json.dumps(item)[:200]}.")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def box_problem(box: object) -> str | None:
    """Why ``box`` is not a COCO box ``[x, y, w, h]`` of finite numbers with ``w, h >= 0``."""
    if not isinstance(box, list) or len(box) != 4 or not all(_is_number(v) for v in box):
        return f"must be [x, y, w, h], four numbers; found {json.dumps(box)[:80]}"
    if not all(math.isfinite(v) for v in box):
        return f"must hold finite numbers (no NaN or infinity); found {box}"
    if box[2] < 0 or box[3] < 0:
        return f"has a negative width or height ([x, y, w, h] = {box})"
    return None


def validate_ground_truth(data: object, where: str) -> None:
    """Check a COCO instances file (``where`` names it in errors) the way both scoring backends
    need it: the three sections, ids, each annotation's bbox, area and iscrowd. pycocotools
    crashes (KeyError) on a missing 'area' or 'iscrowd' where faster-coco-eval carries on, and
    both score NaN or negative boxes without a word: every such file is a DatasetError naming
    the entry and the field instead."""
    if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= data.keys():
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DatasetError(f"{where} must be an object with 'images', 'annotations' and "
                           f"'categories'; found {found}. Give the instances_*.json file of the "
                           f"data set (ground truth), not a results or image-info file.")
    _require_fields(where, "images", data["images"],
                    {"id": int, "file_name": str, "width": int, "height": int})
    _require_fields(where, "categories", data["categories"], {"id": int, "name": str})
    _require_fields(where, "annotations", data["annotations"],
                    {"id": int, "image_id": int, "category_id": int, "bbox": list})
    for kind in ("images", "categories", "annotations"):
        ids = [x["id"] for x in data[kind]]
        if len(ids) != len(set(ids)):
            raise DatasetError(f"{where}: '{kind}' repeats an id.")
    image_ids = {im["id"] for im in data["images"]}
    cat_ids = {c["id"] for c in data["categories"]}
    for i, ann in enumerate(data["annotations"]):
        if ann["image_id"] not in image_ids or ann["category_id"] not in cat_ids:
            raise DatasetError(f"{where}: annotations[{i}] refers to image {ann['image_id']} / "
                               f"category {ann['category_id']}, not both listed in 'images' "
                               f"and 'categories'.")
        if problem := box_problem(ann["bbox"]):
            raise DatasetError(f"{where}: annotations[{i}].bbox {problem}.")
        area = ann.get("area")
        if not _is_number(area) or not math.isfinite(area) or area < 0:
            raise DatasetError(f"{where}: annotations[{i}].area must be a finite number >= 0 "
                               f"(COCO requires it; pycocotools reads it), found {area!r}.")
        if ann.get("iscrowd") not in (0, 1) or isinstance(ann.get("iscrowd"), bool):
            raise DatasetError(f"{where}: annotations[{i}].iscrowd must be 0 or 1 (COCO requires "
                               f"it; pycocotools reads it), found {ann.get('iscrowd')!r}.")


class CocoDataset:
    """The annotation file parsed and checked, images sorted by id, categories sorted by id."""

    def __init__(self, root: str | Path, *, check_images: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetMissing(f"COCO root {self.root} is not a directory; expected it to hold "
                               f"{ANNOTATIONS} and {IMAGES}/.")
        self.annotation_file = self.root / ANNOTATIONS
        if not self.annotation_file.exists():
            raise DatasetMissing(f"COCO root {self.root} has no {ANNOTATIONS}; expected COCO "
                                 f"2017 there (annotations/ and val2017/ from cocodataset.org).")
        self.data = read_json(self.annotation_file, "COCO annotation file")
        self._validate()
        self.cat_ids = sorted(c["id"] for c in self.data["categories"])
        self.cat_id_to_label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        image_dir = self.root / IMAGES
        self.images = [ImageRecord(im["id"], image_dir / im["file_name"], im["width"], im["height"])
                       for im in sorted(self.data["images"], key=lambda im: im["id"])]
        if check_images:
            self._check_images_exist(image_dir)

    @property
    def num_classes(self) -> int:
        return len(self.cat_ids)

    def _validate(self) -> None:
        validate_ground_truth(self.data, f"COCO annotation file {self.annotation_file}")

    def _check_images_exist(self, image_dir: Path) -> None:
        if not image_dir.is_dir():
            raise DatasetError(f"COCO image directory {image_dir} does not exist; expected the "
                               f"{len(self.images)} images listed in {self.annotation_file}.")
        missing = [im.path.name for im in self.images if not im.path.is_file()]
        if missing:
            raise DatasetError(f"{len(missing)} of the {len(self.images)} images listed in "
                               f"{self.annotation_file} are missing from {image_dir}, e.g. "
                               f"{', '.join(missing[:3])}. Complete the download (val2017.zip).")

    def select(self, limit: int | None) -> list[ImageRecord]:
        """The first ``limit`` images by id (all when None)."""
        if limit is not None and limit <= 0:
            raise DatasetError(f"--limit must be a positive number of images, got {limit}.")
        return self.images[:limit] if limit else list(self.images)
