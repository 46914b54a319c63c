"""COCO val2017 on disk: the annotation file, its images, and the 80 contiguous labels.

Labels are the category ids in ascending order, which is how MMDetection's CocoDataset maps them
on COCO (``cat2label = {cat_id: i for i, cat_id in enumerate(coco.get_cat_ids(classes))}``: the
file lists its 80 categories sorted by id). Detections are mapped back through the same table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError, DatasetMissing
from ..spec.settings import load_settings

ANNOTATIONS = Path("annotations") / "instances_val2017.json"
IMAGES = Path("val2017")
ENV_VAR = "RTMBENCH_COCO"


def resolve_coco_root(flag: str | Path | None) -> Path:
    """The COCO root from the flag, else ``$RTMBENCH_COCO``; a clear error when neither is set."""
    value = flag or load_settings().coco
    if not value:
        raise DatasetMissing(
            f"no COCO dataset given: pass --coco DIR or set {ENV_VAR}=DIR, where DIR holds "
            f"{ANNOTATIONS} and {IMAGES}/*.jpg (COCO val2017 from https://cocodataset.org).")
    return Path(value).expanduser()


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


def _require_fields(path: Path, section: str, items: object, fields: dict[str, type]) -> None:
    if not isinstance(items, list):
        raise DatasetError(f"COCO annotation file {path}: '{section}' must be a list, "
                           f"found {type(items).__name__}.")
    for i, item in enumerate(items):
        bad = [name for name, kind in fields.items()
               if not isinstance(item, dict) or not isinstance(item.get(name), kind)
               or isinstance(item.get(name), bool)]
        if bad:
            expected = ", ".join(f"{n}: {t.__name__}" for n, t in fields.items())
            raise DatasetError(
                f"COCO annotation file {path}: {section}[{i}] lacks a valid {', '.join(bad)} "
                f"(expected {expected}); found {json.dumps(item)[:200]}.")


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
        path, data = self.annotation_file, self.data
        if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= data.keys():
            found = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise DatasetError(f"COCO annotation file {path} must be an object with 'images', "
                               f"'annotations' and 'categories'; found {found}.")
        _require_fields(path, "images", data["images"],
                        {"id": int, "file_name": str, "width": int, "height": int})
        _require_fields(path, "categories", data["categories"], {"id": int, "name": str})
        _require_fields(path, "annotations", data["annotations"],
                        {"id": int, "image_id": int, "category_id": int, "bbox": list})
        for kind in ("images", "categories"):
            ids = [x["id"] for x in data[kind]]
            if len(ids) != len(set(ids)):
                raise DatasetError(f"COCO annotation file {path}: '{kind}' repeats an id.")
        image_ids = {im["id"] for im in data["images"]}
        cat_ids = {c["id"] for c in data["categories"]}
        for i, ann in enumerate(data["annotations"]):
            if ann["image_id"] not in image_ids or ann["category_id"] not in cat_ids:
                raise DatasetError(f"COCO annotation file {path}: annotations[{i}] refers to "
                                   f"image {ann['image_id']} / category {ann['category_id']}, "
                                   f"not both listed in 'images' and 'categories'.")
            if len(ann["bbox"]) != 4:
                raise DatasetError(f"COCO annotation file {path}: annotations[{i}].bbox must be "
                                   f"[x, y, w, h], found {ann['bbox']}.")

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
