from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rtmbench.cli import main
from rtmbench.data import make_synthetic_coco
from rtmbench.errors import DatasetError, InputError
from rtmbench.measure.scoring import CONVENTIONS, ScoreOptions, metric_names, score


@pytest.fixture(scope="module")
def gt(tmp_path_factory):
    root = make_synthetic_coco(tmp_path_factory.mktemp("coco"), 60, seed=2)
    return root / "annotations/instances_val2017.json"


def perturbed(gt_data: dict, seed: int = 0) -> list[dict]:
    """Jittered copies of every box, some with the wrong class, random scores: > 100 per image
    on some images, so maxDets conventions differ. Sizes stay >= 1 (a negative one is refused)."""
    rng = np.random.default_rng(seed)
    dets = []
    for a in gt_data["annotations"]:
        x, y, w, h = a["bbox"]
        for k in range(int(rng.integers(1, 40))):
            j = rng.normal(0, 0.04 * k, 4) * np.array([w, h, w, h])
            cat = a["category_id"] if rng.random() < 0.8 else 1
            dets.append({"image_id": a["image_id"], "category_id": cat,
                         "bbox": [float(x + j[0]), float(y + j[1]), max(float(w + j[2]), 1.0),
                                  max(float(h + j[3]), 1.0)], "score": float(rng.random())})
    return dets


def pycocotools_stats(gt_path, dets, max_dets) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO(str(gt_path))
        e = COCOeval(g, g.loadRes(copy.deepcopy(dets)), "bbox")
        e.params.maxDets = list(max_dets)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return [float(v) for v in e.stats]


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_ground_truth_as_detections_scores_ap_one(gt, backend):
    data = json.loads(gt.read_text())
    dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "score": 1.0} for a in data["annotations"]]
    metrics = score(data, dets, ScoreOptions(scorer=backend))
    for convention in CONVENTIONS:
        assert metrics[convention]["AP"] == 1.0
        assert metrics[convention]["AP50"] == metrics[convention]["AP75"] == 1.0
        assert metrics[convention]["ARm"] == 1.0


@pytest.mark.parametrize("convention", list(CONVENTIONS))
def test_perturbation_scores_exactly_what_pycocotools_computes(gt, convention):
    data = json.loads(gt.read_text())
    dets = perturbed(data)
    expected = pycocotools_stats(gt, dets, CONVENTIONS[convention])
    ours = score(gt, dets, ScoreOptions(scorer="pycocotools"))[convention]
    assert list(ours) == metric_names(convention)
    assert list(ours.values()) == expected  # bit for bit
    assert 0.05 < ours["AP"] < 0.95


@pytest.mark.parametrize("convention", list(CONVENTIONS))
def test_faster_backend_gives_pycocotools_numbers(gt, convention):
    data = json.loads(gt.read_text())
    dets = perturbed(data, seed=1)
    expected = pycocotools_stats(gt, dets, CONVENTIONS[convention])
    faster = list(score(gt, dets, ScoreOptions(scorer="faster"))[convention].values())
    # faster-coco-eval divides tp / (tp + fp) in C++: precision values can differ from numpy's
    # in the last bit (<= 2.2e-16), so the 12 means agree to ~1e-16, not always bit for bit.
    assert faster == pytest.approx(expected, abs=1e-12, rel=0)
    assert [f"{v:.4f}" for v in faster] == [f"{v:.4f}" for v in expected]


def test_maxdets_conventions_share_the_headline_ap_but_not_the_rest(gt):
    """pycocotools' summarize() takes AP at maxDets=100 whatever params.maxDets says, and
    evaluate() sorts maxDets: MMDetection's (100, 300, 1000) changes AP50..APl and the AR keys,
    not AP; RTMDet's config's (100, 1, 10) is pycocotools' default."""
    data = json.loads(gt.read_text())
    dets = perturbed(data, seed=2)
    # one image gets 150 confident false positives, so its true boxes rank past 100
    image_id = data["annotations"][0]["image_id"]
    dets = [dict(d, score=d["score"] / 2) if d["image_id"] == image_id else d for d in dets]
    dets += [{"image_id": image_id, "category_id": data["annotations"][0]["category_id"],
              "bbox": [0.0, 0.0, 1.0 + i / 100, 1.0], "score": 0.9} for i in range(150)]
    both = score(data, dets, ScoreOptions(scorer="pycocotools"))
    assert both["coco"]["AP"] == both["mmdet-proposal"]["AP"]
    assert both["coco"]["AP50"] != both["mmdet-proposal"]["AP50"]
    assert both["coco"]["AR100"] == both["mmdet-proposal"]["AR100"]
    assert pycocotools_stats(gt, dets, (100, 1, 10)) == list(both["coco"].values())


def test_image_ids_restrict_the_evaluation(gt):
    data = json.loads(gt.read_text())
    first = sorted(im["id"] for im in data["images"])[:10]
    dets = [d for d in perturbed(data) if d["image_id"] in first]
    small = {"images": [im for im in data["images"] if im["id"] in first],
             "annotations": [a for a in data["annotations"] if a["image_id"] in first],
             "categories": data["categories"]}
    assert score(data, dets, ScoreOptions(image_ids=first)) == score(small, dets)


def test_detections_on_unknown_images_and_unknown_options_are_errors(gt):
    data = json.loads(gt.read_text())
    with pytest.raises(DatasetError, match="not in the ground truth"):
        score(data, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    with pytest.raises(InputError, match="unknown scoring backend"):
        score(data, [], ScoreOptions(scorer="nope"))


def test_score_cli_prints_json_and_table(gt, tmp_path, capsys):
    data = json.loads(gt.read_text())
    dets_path = tmp_path / "dets.json"
    dets_path.write_text(json.dumps(perturbed(data)))
    assert main(["score", str(gt), str(dets_path), "--json", "--convention", "coco",
                 "--backend", "pycocotools"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["coco"] and len(printed["coco"]) == 12
    assert main(["score", str(gt), str(dets_path)]) == 0
    table = capsys.readouterr().out
    assert "AR1000" in table and "AR10 " in table
    dets_path.write_text(json.dumps([{"image_id": 1}]))
    assert main(["score", str(gt), str(dets_path)]) == 2
    assert "dets.json: entry 0 is not a COCO box result" in capsys.readouterr().err


# ------------------------------------------------------------------ inputs both backends refuse

def _set_box(i: int, value: float):
    return lambda d: d[3]["bbox"].__setitem__(i, value)


BAD_DETECTIONS = [  # (change to the 4th detection, error class, words of the message)
    (lambda d: d[3].update(score=float("nan")), InputError, ["entry 3", "score is nan"]),
    (lambda d: d[3].update(score=float("inf")), InputError, ["entry 3", "score is inf"]),
    (lambda d: d[3].update(score=float("-inf")), InputError, ["entry 3", "score is -inf"]),
    (lambda d: d[3].update(score=True), InputError, ["entry 3", "score must be a number"]),
    (_set_box(0, float("nan")), InputError, ["entry 3", "bbox must hold finite numbers"]),
    (_set_box(2, float("inf")), InputError, ["entry 3", "bbox must hold finite numbers"]),
    (_set_box(2, -4.0), InputError, ["entry 3", "bbox has a negative width or height"]),
    (_set_box(3, -0.5), InputError, ["entry 3", "bbox has a negative width or height"]),
    # a vectorised pre-check once coerced these and let both backends crash with a TypeError
    (lambda d: d[3].update(score="0.5"), InputError, ["entry 3", "score must be a number"]),
    (lambda d: d[3].update(bbox=["0", "0", "1", "1"]), InputError, ["entry 3", "bbox"]),
    (lambda d: d[3].update(bbox=[True, 0, 1, 1]), InputError, ["entry 3", "bbox"]),
    (lambda d: d[3].update(bbox=[[0, 0], [1, 1]]), InputError, ["entry 3", "bbox"]),
    (lambda d: d[3].update(category_id=999), DatasetError,
     ["category ids [999]", "entry 3", "category_id"]),
    (lambda d: d[3].update(image_id=10 ** 6), DatasetError,
     ["not in the ground truth", "entry 3", "image_id"]),
]


@pytest.mark.parametrize("change, kind, words", BAD_DETECTIONS)
def test_bad_detections_are_the_same_clear_error_on_both_backends(gt, change, kind, words):
    data = json.loads(gt.read_text())
    messages = []
    for backend in ("faster", "pycocotools"):
        dets = perturbed(data)
        change(dets)
        with pytest.raises(kind) as err:
            score(data, dets, ScoreOptions(scorer=backend, detections_name="dets.json"))
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("dets.json: ") and all(w in messages[0] for w in words), \
        messages[0]


BAD_GROUND_TRUTH = [
    (lambda g: g.pop("annotations"), ["must be an object with 'images', 'annotations'"]),
    (lambda g: g["annotations"][2]["bbox"].__setitem__(1, float("nan")),
     ["annotations[2].bbox must hold finite numbers"]),
    (lambda g: g["annotations"][2]["bbox"].__setitem__(2, -1.0),
     ["annotations[2].bbox has a negative width"]),
    (lambda g: g["annotations"][2].pop("area"), ["annotations[2].area"]),
    (lambda g: g["annotations"][2].update(iscrowd=None), ["annotations[2].iscrowd"]),
    (lambda g: g["annotations"][2].update(id=g["annotations"][1]["id"]),
     ["'annotations' repeats an id"]),
]


@pytest.mark.parametrize("change, words", BAD_GROUND_TRUTH)
def test_bad_ground_truth_is_the_same_clear_error_on_both_backends(gt, tmp_path, change, words):
    data = json.loads(gt.read_text())
    dets = perturbed(data)
    change(data)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    messages = []
    for backend in ("faster", "pycocotools"):
        with pytest.raises(DatasetError) as err:
            score(path, dets, ScoreOptions(scorer=backend))
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert str(path) in messages[0] and all(w in messages[0] for w in words), messages[0]


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_score_cli_names_the_file_entry_and_field_without_a_traceback(gt, tmp_path, capsys,
                                                                      backend):
    data = json.loads(gt.read_text())
    dets = perturbed(data)
    dets[5]["score"] = float("nan")
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))  # json writes NaN, and reads it back
    assert main(["score", str(gt), str(path), "--backend", backend]) == 2
    err = capsys.readouterr().err
    assert f"detections file {path}: entry 5 is not a COCO box result" in err
    assert "score is nan" in err and "Traceback" not in err


def test_zero_sized_boxes_and_empty_annotations_score_alike_on_both_backends(gt):
    data = json.loads(gt.read_text())
    dets = perturbed(data)
    dets[0]["bbox"][2] = 0.0
    results = [score(data, dets, ScoreOptions(scorer=b)) for b in ("faster", "pycocotools")]
    for convention in CONVENTIONS:
        assert np.allclose(list(results[0][convention].values()),
                           list(results[1][convention].values()), atol=1e-12)


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_ground_truth_without_annotations_is_refused_never_an_ap_of_minus_one(gt, tmp_path,
                                                                              capsys, backend):
    """pycocotools' AP is -1 when no ground-truth box can be matched (no annotation, or only
    crowd ones): nothing can be scored, and a -1 must never be shown as an AP."""
    data = json.loads(gt.read_text())
    dets = perturbed(data)
    crowd_only = copy.deepcopy(data)
    for a in crowd_only["annotations"]:
        a["iscrowd"] = 1
    for name, truth in (("empty", {**data, "annotations": []}), ("crowd", crowd_only)):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(truth))
        with pytest.raises(DatasetError, match="nothing can be scored"):
            score(truth, dets, ScoreOptions(scorer=backend))
        detections = tmp_path / "dets.json"
        detections.write_text(json.dumps(dets))
        for extra in ([], ["--json"]):
            assert main(["score", str(path), str(detections), "--backend", backend, *extra]) == 2
            captured = capsys.readouterr()
            assert "-1" not in captured.out and "Traceback" not in captured.err
            assert f"COCO annotation file {path}" in captured.err, captured.err
            assert "nothing can be scored" in captured.err, captured.err


def test_a_json_file_nested_too_deeply_is_named_never_a_traceback(gt, tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["score", str(gt), str(deep)]) == 2
    err = capsys.readouterr().err
    assert f"detections file {deep}" in err and "Traceback" not in err, err
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps(perturbed(json.loads(gt.read_text()))))
    assert main(["score", str(deep), str(detections)]) == 2
    err = capsys.readouterr().err
    assert f"COCO annotation file {deep}" in err and "Traceback" not in err, err


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_parallel_scoring_by_category_gives_the_same_numbers_bit_for_bit(gt, backend):
    data = json.loads(gt.read_text())
    dets = perturbed(data, seed=3)
    one = score(data, dets, ScoreOptions(scorer=backend, workers=1))
    assert score(data, dets, ScoreOptions(scorer=backend, workers=3)) == one
    ids = sorted({im["id"] for im in data["images"]})[::2]
    subset = [d for d in dets if d["image_id"] in set(ids)]
    assert score(data, subset, ScoreOptions(backend, ids, workers=4)) == score(
        data, subset, ScoreOptions(backend, ids, workers=1))


@pytest.mark.parametrize("cores, workers", [(1, 1), (2, 1), (3, 1), (4, 4), (8, 8), (64, 8)])
def test_scoring_workers_rule(monkeypatch, cores, workers):
    """On every kind of machine, not only on the cores this one has."""
    import os

    from rtmbench.measure.scoring import PARALLEL_MIN_DETECTIONS, scoring_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert scoring_workers(None, 10) == 1
    assert scoring_workers(None, PARALLEL_MIN_DETECTIONS) == workers
    assert scoring_workers(5, 0) == 5 and scoring_workers(0, 10**6) == 1
