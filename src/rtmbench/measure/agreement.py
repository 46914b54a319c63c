"""Agreement AP: how far one set of detections is from another that serves as the reference.

COCO box AP of ``detections`` scored with ``reference`` detections as the ground truth: the
reference's best ``top_k`` per image become ground-truth boxes, the candidate's best ``top_k``
per image are scored against them with pycocotools' rules (the "coco" convention). Identical
detections give 1.0; a changed resize, pad value, colour order, clip or NMS threshold moves boxes
and scores and the value drops. Used by the smoke gate (golden detections committed under
``suites/baselines/``) and for the accuracy of timed artifacts against the PyTorch reference.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import InputError
from .scoring import DEFAULT_BACKEND, ScoreOptions, check_detections, score

TOP_K = 100  # pycocotools' headline AP counts 100 detections per image


def top_per_image(detections: list[dict], top_k: int = TOP_K) -> list[dict]:
    """The ``top_k`` highest-scoring detections of each image (stable order, by image id)."""
    by_image: dict[int, list[dict]] = defaultdict(list)
    for d in detections:
        by_image[d["image_id"]].append(d)
    out = []
    for image_id in sorted(by_image):
        ranked = sorted(by_image[image_id], key=lambda d: -d["score"])  # stable for ties
        out.extend(ranked[:top_k])
    return out


def reference_as_ground_truth(reference: list[dict], image_ids: list[int],
                              category_ids: list[int], top_k: int = TOP_K) -> dict[str, Any]:
    """A COCO ground-truth dict whose boxes are the reference's best ``top_k`` per image."""
    annotations = [{"id": i + 1, "image_id": d["image_id"], "category_id": d["category_id"],
                    "bbox": list(d["bbox"]), "area": float(d["bbox"][2] * d["bbox"][3]),
                    "iscrowd": 0}
                   for i, d in enumerate(top_per_image(reference, top_k))]
    return {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 1, "height": 1}
                       for i in sorted(set(image_ids))],
            "annotations": annotations,
            "categories": [{"id": c, "name": str(c)} for c in sorted(set(category_ids))]}


def agreement_scores(detections: list[dict], reference: list[dict], image_ids: list[int],
                     category_ids: list[int], *, top_k: int = TOP_K,
                     backend: str = DEFAULT_BACKEND) -> dict[str, float]:
    """The 12 COCO numbers (fractions) of ``detections`` against ``reference``: both cut at
    ``top_k`` per image, so identical detections give exactly 1.0."""
    if not reference:
        raise InputError("the reference detections are empty: there is nothing to agree with "
                         "(weights that detect nothing make no golden detections)")
    ground_truth = reference_as_ground_truth(reference, image_ids, category_ids, top_k)
    wanted = set(image_ids)
    candidate = top_per_image([d for d in detections if d["image_id"] in wanted], top_k)
    return score(ground_truth, candidate, ScoreOptions(scorer=backend, image_ids=image_ids,
                                                       conventions=("coco",)))["coco"]


def agreement_ap(detections: list[dict], reference: list[dict], image_ids: list[int],
                 category_ids: list[int], *, top_k: int = TOP_K,
                 backend: str = DEFAULT_BACKEND) -> float:
    """COCO AP (a fraction, 1.0 = the same detections) of ``detections`` against
    ``reference``, both cut at ``top_k`` per image; both are COCO results lists on the
    images ``image_ids``."""
    return max(0.0, agreement_scores(detections, reference, image_ids, category_ids,
                                     top_k=top_k, backend=backend)["AP"])


GOLDEN_FIX = "regenerate them with `python tools/make_smoke_golden.py`"


def load_golden(path: str | Path) -> list[dict]:
    """Golden detections: a COCO results list (what :func:`write_golden` wrote); a damaged
    file is an InputError naming it, the entry and the field."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise InputError(f"golden detections {path} cannot be read ({exc.strerror}); "
                         f"{GOLDEN_FIX}.") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"golden detections {path} cannot be read (not UTF-8 text: {exc}); "
                         f"{GOLDEN_FIX}.") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"golden detections {path} is not valid JSON ({exc}); "
                         f"{GOLDEN_FIX}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("detections"), list):
        raise InputError(f"golden detections {path} must be an object with a 'detections' "
                         f"list; {GOLDEN_FIX}.")
    try:
        check_detections(data["detections"], f"golden detections {path}")
    except InputError as exc:
        raise InputError(f"{exc} Fix: {GOLDEN_FIX}.") from None
    return data["detections"]
