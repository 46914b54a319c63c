"""COCO box AP: the 12 standard numbers, under two ``maxDets`` conventions, two backends.

pycocotools' COCOeval is the reference. Its numbers depend on ``params.maxDets`` in a way worth
stating exactly (pycocotools 2.0.x, cocoeval.py):

* ``evaluate()`` replaces ``maxDets`` by ``sorted(maxDets)``;
* ``summarize()`` computes stats[0] (AP) with ``maxDets=100`` *hard-coded*, stats[1..5] (AP50,
  AP75, APs, APm, APl) and stats[8..11] with ``maxDets[2]``, stats[6] and stats[7] with
  ``maxDets[0]`` and ``maxDets[1]``.

So with MMDetection CocoMetric's default ``proposal_nums=(100, 300, 1000)`` ("mmdet-proposal"),
the headline AP still counts 100 detections per image, like pycocotools' default (1, 10, 100)
("coco"); AP50..APl count up to 1000 and the AR keys become AR@100/300/1000. RTMDet's configs
set ``val_evaluator = dict(proposal_nums=(100, 1, 10))``, which sorts to (1, 10, 100): the
published box AP is the "coco" convention.

Both conventions come from one evaluation with maxDets (1, 10, 100, 300, 1000): matching is
greedy in score order per image, so the first k detections match the same way whatever comes
after them, and accumulation truncates each image to each maxDets value separately. The 12
numbers are then read off ``eval['precision']`` / ``eval['recall']`` with pycocotools' rules
(``summarize()`` itself is not used: faster-coco-eval's summarize() takes AP at maxDets[-1],
not at 100). Tests check every number against pycocotools' own summarize().

Parallel scoring (``workers``): COCOeval evaluates and accumulates each category on its own
(matching, the score ranking and the precision/recall curves are per category), so the
categories are dealt out to worker processes (started from a clean fork server, never forked
from a process whose other threads may hold locks), each scores its categories' ground truth
and detections, and
the per-category arrays are put back in category order before the 12 numbers are read: the
same arrays, bit for bit, as one process computes (tests/test_scoring.py).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.coco import box_problem, read_json, validate_ground_truth
from ..errors import DatasetError, InputError

CONVENTIONS: dict[str, tuple[int, int, int]] = {"coco": (1, 10, 100),
                                                "mmdet-proposal": (100, 300, 1000)}
BACKENDS = ("faster", "pycocotools")
DEFAULT_BACKEND = "faster"  # identical numbers to pycocotools (tests/test_scoring.py), ~7x faster
# Below this many detections one process scores faster than forking several.
PARALLEL_MIN_DETECTIONS = 50_000
MAX_SCORING_WORKERS = 8
MIN_PARALLEL_CORES = 4


@dataclass(frozen=True)
class ScoreOptions:
    """How :func:`score` scores: ``scorer``, the COCOeval implementation (one of
    :data:`BACKENDS`); ``image_ids``, the images evaluated (None: every image of the ground
    truth); ``workers``, the scoring processes (None: :func:`scoring_workers` decides);
    ``conventions``, the maxDets conventions reported (:data:`CONVENTIONS`);
    ``detections_name`` and ``ground_truth_name``, what errors call the two inputs (None for
    the ground truth: "ground truth", or its file's name when a path is given)."""

    scorer: str = DEFAULT_BACKEND
    image_ids: Iterable[int] | None = None
    workers: int | None = 1
    conventions: Sequence[str] = tuple(CONVENTIONS)
    detections_name: str = "detections"
    ground_truth_name: str | None = None


@dataclass(frozen=True)
class _How:
    """What every COCOeval of one scoring is run with (picklable: it goes to the workers)."""

    scorer: str
    max_dets: list[int]
    image_ids: list[int] | None


def metric_names(convention: str) -> list[str]:
    """AP, AP50, AP75, APs, APm, APl, AR<m0>, AR<m1>, AR<m2>, ARs, ARm, ARl."""
    m = CONVENTIONS[convention]
    return ["AP", "AP50", "AP75", "APs", "APm", "APl", f"AR{m[0]}", f"AR{m[1]}", f"AR{m[2]}",
            "ARs", "ARm", "ARl"]


def _stat_specs(max_dets: Sequence[int]) -> list[tuple[bool, float | None, str, int]]:
    """(is_ap, iou, area, maxDets) of pycocotools' summarizeDets stats[0..11], in order."""
    m = sorted(max_dets)
    return [(True, None, "all", 100), (True, 0.5, "all", m[2]), (True, 0.75, "all", m[2]),
            (True, None, "small", m[2]), (True, None, "medium", m[2]), (True, None, "large", m[2]),
            (False, None, "all", m[0]), (False, None, "all", m[1]), (False, None, "all", m[2]),
            (False, None, "small", m[2]), (False, None, "medium", m[2]),
            (False, None, "large", m[2])]


def _summarize(evaluator, is_ap: bool, iou: float | None, area: str, max_det: int) -> float:
    """pycocotools' COCOeval._summarize, without printing, on any evaluator's eval arrays
    (``evaluator`` needs ``params`` and ``eval``)."""
    p = evaluator.params
    a = list(p.areaRngLbl).index(area)
    m = [i for i, d in enumerate(p.maxDets) if d == max_det]
    s = evaluator.eval["precision"] if is_ap else evaluator.eval["recall"]
    if iou is not None:
        s = s[np.where(iou == np.asarray(p.iouThrs))[0]]
    s = s[:, :, :, a, m] if is_ap else s[:, :, a, m]
    valid = s[s > -1]
    return -1.0 if valid.size == 0 else float(np.mean(valid))


def _entry_problem(d: object) -> str | None:
    """Why ``d`` is not one COCO box result, naming the field; None when it is one."""
    if not isinstance(d, dict):
        return f"is a {type(d).__name__}, not an object"
    for name in ("image_id", "category_id"):
        if not isinstance(d.get(name), int) or isinstance(d.get(name), bool):
            return f"{name} must be an integer, found {d.get(name)!r}"
    value = d.get("score")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"score must be a number, found {value!r}"
    if not math.isfinite(value):
        return (f"score is {value}: scores must be finite (NaN and infinity cannot be ranked; "
                f"pycocotools and faster-coco-eval disagree on them)")
    if problem := box_problem(d.get("bbox")):
        return f"bbox {problem}"
    return None


def check_detections(detections: list, where: str) -> None:
    """Every entry is ``{image_id: int, category_id: int, bbox: [x, y, w, h], score}`` with
    finite numbers and ``w, h >= 0``; else an InputError naming ``where``, the entry and the
    field. (One plain pass: a vectorised pre-check coerced strings and booleans and was no
    faster, 0.41 s vs 0.44 s on 300k detections.)"""
    for i, d in enumerate(detections):
        if problem := _entry_problem(d):
            raise InputError(f"{where}: entry {i} is not a COCO box result {{image_id: int, "
                             f"category_id: int, bbox: [x, y, w, h], score}} with finite "
                             f"numbers and w, h >= 0: {problem}; found {str(d)[:200]}.")


def load_detections(path: str | Path) -> list[dict]:
    """A COCO results file: a list of {image_id, category_id, bbox [x, y, w, h], score}."""
    path = Path(path)
    data = read_json(path, "detections file")
    if not isinstance(data, list):
        raise InputError(f"detections file {path} must hold a JSON list of detections, found "
                         f"{type(data).__name__}.")
    check_detections(data, f"detections file {path}")
    return data


def _check_against_ground_truth(detections: list[dict], dataset: dict, where: str) -> None:
    """Image and category ids of the detections must exist in the ground truth (pycocotools
    asserts on unknown images; both backends silently drop unknown categories)."""
    images = {im["id"] for im in dataset["images"]}
    categories = {c["id"] for c in dataset["categories"]}
    stray = sorted({d["image_id"] for d in detections} - images)
    if stray:
        strays = set(stray)
        first = next(i for i, d in enumerate(detections) if d["image_id"] in strays)
        raise DatasetError(f"{where}: {len(stray)} image ids in the detections are not in the "
                           f"ground truth, e.g. {stray[:3]} (first at entry {first}, field "
                           f"image_id): were they made on another dataset?")
    unknown = sorted({d["category_id"] for d in detections} - categories)
    if unknown:
        unknowns = set(unknown)
        first = next(i for i, d in enumerate(detections) if d["category_id"] in unknowns)
        raise DatasetError(f"{where}: category ids {unknown[:5]} are not categories of the "
                           f"ground truth (first at entry {first}, field category_id; known: "
                           f"{sorted(categories)[:3]}...{sorted(categories)[-1:]}): map labels "
                           f"to the ground truth's category ids.")


def _ground_truth(backend: str, dataset: dict):
    if backend == "pycocotools":
        from pycocotools.coco import COCO

        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO()
            gt.dataset = dataset
            gt.createIndex()
        return gt
    from faster_coco_eval import COCO as FasterCOCO

    return FasterCOCO(dataset)


def _results(gt, detections: list[dict]):
    """gt.loadRes on shallow copies (it adds area, id, iscrowd to each dict; it only reads the
    bbox list); an empty list is evaluable too."""
    if detections:
        return gt.loadRes([dict(d) for d in detections])
    res = type(gt)()
    res.dataset = {"images": list(gt.dataset["images"]), "annotations": [],
                   "categories": list(gt.dataset["categories"])}
    with contextlib.redirect_stdout(io.StringIO()):
        res.createIndex()
    return res


def _evaluator(backend: str, gt, dt):
    if backend == "pycocotools":
        from pycocotools.cocoeval import COCOeval

        return COCOeval(gt, dt, "bbox")
    from faster_coco_eval import COCOeval_faster

    return COCOeval_faster(gt, dt, "bbox")


def scoring_workers(workers: int | None, num_detections: int) -> int:
    """``workers`` processes, or for ``None``: one per usable core up to 8, on machines with at
    least 4 cores and once there are enough detections to be worth it. Sending the detections
    costs about a fifth of scoring them (pickling 300k detections ~0.3 s, unpickling ~1 s,
    against ~5 s of scoring on this project's CPU), so two cores gain little, and on two busy
    shared cores the split was measured slower (0.72x)."""
    if workers is not None:
        return max(1, workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if num_detections < PARALLEL_MIN_DETECTIONS or (cores or 1) < MIN_PARALLEL_CORES:
        return 1
    return max(1, min(MAX_SCORING_WORKERS, cores or 1))


class _Evaluated:
    """What _summarize reads: params and the precision/recall arrays."""

    def __init__(self, params, eval_: dict) -> None:
        self.params, self.eval = params, eval_


def _evaluate(how: _How, ground_truth: dict, detections: list[dict], gt=None):
    gt = gt if gt is not None else _ground_truth(how.scorer, ground_truth)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = _evaluator(how.scorer, gt, _results(gt, detections))
        evaluator.params.maxDets = how.max_dets
        if how.image_ids is not None:
            evaluator.params.imgIds = how.image_ids
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _evaluate_group(job: tuple) -> tuple[list[int], object, object]:
    """Score one group of categories (its ground truth and detections only); return its
    category ids and arrays."""
    how, ground_truth, detections = job
    evaluator = _evaluate(how, ground_truth, detections)
    return list(evaluator.params.catIds), evaluator.eval["precision"], evaluator.eval["recall"]


def _evaluate_parallel(how: _How, ground_truth: dict, detections: list[dict], workers: int,
                       params) -> _Evaluated:
    from ..parallel import process_pool

    cat_ids = sorted(c["id"] for c in ground_truth["categories"])
    groups = [cat_ids[i::workers] for i in range(workers) if cat_ids[i::workers]]
    group_of = {c: i for i, g in enumerate(groups) for c in g}
    split: list[list[dict]] = [[] for _ in groups]
    for d in detections:  # one pass here, not one per worker (order within a group is kept)
        group = group_of.get(d["category_id"])
        if group is not None:  # a category outside the ground truth is never evaluated
            split[group].append(d)
    annotations: list[list[dict]] = [[] for _ in groups]
    for a in ground_truth["annotations"]:
        group = group_of.get(a["category_id"])
        if group is not None:
            annotations[group].append(a)
    jobs = [(how, {**ground_truth, "annotations": annotations[i],
                   "categories": [c for c in ground_truth["categories"] if c["id"] in g]},
             split[i]) for i, g in enumerate(groups)]
    with process_pool(len(groups)) as pool:
        parts = list(pool.map(_evaluate_group, jobs))
    index = {c: k for k, c in enumerate(cat_ids)}
    first_precision, first_recall = parts[0][1], parts[0][2]
    precision = np.full(first_precision.shape[:2] + (len(cat_ids),) + first_precision.shape[3:],
                        -1.0, dtype=first_precision.dtype)
    recall = np.full(first_recall.shape[:1] + (len(cat_ids),) + first_recall.shape[2:], -1.0,
                     dtype=first_recall.dtype)
    for ids, p, r in parts:
        where = [index[c] for c in ids]
        precision[:, :, where] = p
        recall[:, where] = r
    return _Evaluated(params, {"precision": precision, "recall": recall})


def score(ground_truth: dict | str | Path, detections: list[dict],
          options: ScoreOptions | None = None) -> dict[str, dict[str, float]]:
    """The 12 COCO box numbers per convention, e.g. ``{"coco": {"AP": 0.41, ...}, ...}``.

    ``options`` (default: :class:`ScoreOptions`'s): ``image_ids`` restricts the evaluation to
    those images (default: every image of the ground truth); detections on other images are an
    error, as in pycocotools' loadRes. ``workers`` processes score disjoint groups of
    categories (module docstring; ``None``: see :func:`scoring_workers`); the numbers are the
    same for any count.

    Both backends get only inputs on which they agree: the ground truth and the detections
    (``detections_name`` names them in errors) are checked first, and NaN or infinite
    numbers, negative box sizes, unknown image or category ids, a ground truth without
    'annotations', 'area' or 'iscrowd' are an InputError/DatasetError naming the file, the
    entry and the field. A ground truth with no box that can be matched (no annotation on the
    evaluated images, or crowd ones only), for which COCOeval reports an AP of -1, is a
    DatasetError: nothing can be scored. (The other numbers keep COCOeval's -1 where their
    area range holds no box; tables show it as n/a.)
    """
    options = options or ScoreOptions()
    backend, conventions = options.scorer, options.conventions
    if backend not in BACKENDS:
        raise InputError(f"unknown scoring backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    unknown = [c for c in conventions if c not in CONVENTIONS]
    if unknown:
        raise InputError(f"unknown AP convention {unknown[0]!r}; use {', '.join(CONVENTIONS)}.")
    gt_name = options.ground_truth_name or "ground truth"
    if not isinstance(ground_truth, dict):
        gt_name = f"COCO annotation file {ground_truth}"
        ground_truth = read_json(Path(ground_truth), "COCO annotation file")
    validate_ground_truth(ground_truth, gt_name)
    detections_name = options.detections_name
    check_detections(detections, detections_name)
    _check_against_ground_truth(detections, ground_truth, detections_name)
    gt = _ground_truth(backend, ground_truth)
    ids = sorted(set(options.image_ids)) if options.image_ids is not None else None
    how = _How(backend, sorted({m for c in conventions for m in CONVENTIONS[c]}), ids)
    workers = min(scoring_workers(options.workers, len(detections)), len(gt.getCatIds()) or 1)
    if workers > 1:
        with contextlib.redirect_stdout(io.StringIO()):
            params = _evaluator(backend, gt, _results(gt, [])).params
        params.maxDets = how.max_dets
        evaluator = _evaluate_parallel(how, ground_truth, detections, workers, params)
    else:
        evaluator = _evaluate(how, ground_truth, detections, gt)
    metrics = {c: {name: _summarize(evaluator, *spec)
                   for name, spec in zip(metric_names(c), _stat_specs(CONVENTIONS[c]),
                                         strict=True)}
               for c in conventions}
    if any(m["AP"] < 0 for m in metrics.values()):
        where = f" on the {len(ids)} evaluated images" if ids is not None else ""
        raise DatasetError(f"{gt_name} has no ground-truth box that counts{where} (no "
                           f"annotation, or crowd ones only): nothing can be scored, box AP is "
                           f"undefined. Give the instances file with its annotations, or "
                           f"evaluate images that have some.")
    return metrics


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """A plain table: one row per number, one column per convention (values x 100)."""
    conventions = list(metrics)
    lines = [f"{'':<8}" + "".join(f"{c:>26}" for c in conventions)]
    for i in range(12):
        cells = []
        for c in conventions:
            name, value = list(metrics[c].items())[i]
            shown = "n/a" if value < 0 or math.isnan(value) else f"{100 * value:.1f}"
            cells.append(f"{name:>18} {shown:>7}")
        lines.append(f"{'':<8}" + "".join(cells))
    return "\n".join(lines)
