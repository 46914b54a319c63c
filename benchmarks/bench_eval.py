"""Benchmark: scorer speed (faster-coco-eval vs pycocotools, same numbers?) and loader vs model;
and (issue 11) the whole ``evaluate()`` before and after, interleaved in one process.

    python benchmarks/bench_eval.py [--images 5000] [--dets 100] [--loader-images 64]
    python benchmarks/bench_eval.py --evaluate [--eval-images 24] [--rounds 3]

Prints measured times and ratios; targets (issue 4): default scorer >= 6x pycocotools with the
same 12 numbers; loader throughput >= 5x tiny's inference throughput on CPU. ``--evaluate``
(issue 11: nothing may get slower on CPU): RTMDet-tiny with calibrated random weights
(benchmarks/_weights.py) on COCO-shaped generated images, both test settings, the loop before
issue 11 (benchmarks/baseline) and today's, alternating A B A B over ``--rounds``; medians,
min-max spread and stage shares. ``--scoring-workers`` also times scoring of
``--images`` x ``--dets`` in 1 process vs several, alternating; ``--postprocess`` times
per-image vs batched post-processing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rtmbench.data import CocoDataset, TestPipeline, make_synthetic_coco
from rtmbench.measure.evaluation import _collate, _Images
from rtmbench.measure.scoring import ScoreOptions, score
from rtmbench.run.build import network
from rtmbench.spec.zoo import load_zoo


def synthetic_ground_truth(num_images: int, seed: int = 0) -> dict:
    """COCO-like ground truth without image files: ~7 boxes per 640 x 480 image."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i in range(num_images):
        images.append({"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 640,
                       "height": 480})
        for _ in range(int(rng.integers(1, 14))):
            w, h = rng.uniform(4, 300, 2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            anns.append({"id": len(anns) + 1, "image_id": i + 1,
                         "category_id": int(rng.integers(1, 81)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    return {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": str(c)} for c in range(1, 81)]}


def synthetic_detections(gt: dict, per_image: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    by_image: dict[int, list] = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    dets = []
    for image in gt["images"]:
        anns = by_image.get(image["id"], [])
        for k in range(per_image):
            if anns and k < 3 * len(anns):
                a = anns[k % len(anns)]
                j = rng.normal(0, 0.1, 4) * np.array(a["bbox"])[[2, 3, 2, 3]]
                bbox, cat = [float(v) for v in np.array(a["bbox"]) + j], a["category_id"]
            else:
                w, h = rng.uniform(4, 200, 2)
                bbox = [float(rng.uniform(0, 600)), float(rng.uniform(0, 440)), float(w), float(h)]
                cat = int(rng.integers(1, 81))
            dets.append({"image_id": image["id"], "category_id": cat, "bbox": bbox,
                         "score": float(rng.random())})
    return dets


def bench_scoring(num_images: int, per_image: int) -> None:
    gt = synthetic_ground_truth(num_images)
    dets = synthetic_detections(gt, per_image)
    results, times = {}, {}
    for backend in ("pycocotools", "faster"):
        start = time.perf_counter()
        results[backend] = score(gt, dets, ScoreOptions(scorer=backend))
        times[backend] = time.perf_counter() - start
    worst = max(abs(results["faster"][c][k] - results["pycocotools"][c][k])
                for c in results["faster"] for k in results["faster"][c])
    shown = all(f"{results['faster'][c][k]:.4f}" == f"{results['pycocotools'][c][k]:.4f}"
                for c in results["faster"] for k in results["faster"][c])
    print(f"scoring {num_images} images x {per_image} detections ({len(dets)} in all), both "
          f"conventions from one evaluation:")
    print(f"  pycocotools {times['pycocotools']:.2f} s, faster-coco-eval {times['faster']:.2f} s"
          f" -> ratio {times['pycocotools'] / times['faster']:.1f}x (target >= 6x)")
    print(f"  largest difference over the 24 numbers: {worst:.1e}; equal to 4 decimals: {shown}")
    print(f"  AP (coco) = {results['pycocotools']['coco']['AP']:.6f}")


def bench_loader(num_images: int, workers: int) -> None:
    entry = load_zoo().get("tiny")
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_coco(Path(tmp), num_images, seed=0)
        records = CocoDataset(root).images
        pipeline = TestPipeline.for_model(entry)
        loader = torch.utils.data.DataLoader(_Images(records, pipeline), batch_size=8,
                                             num_workers=workers, collate_fn=_collate)
        start = time.perf_counter()
        for batch in loader:
            pipeline.normalize(batch["pixels"])
        loader_ips = num_images / (time.perf_counter() - start)
    model = network("tiny")
    x = torch.randn(8, 3, 640, 640)
    with torch.inference_mode():
        model(x)
        start, runs = time.perf_counter(), 2
        for _ in range(runs):
            model(x)
        model_ips = 8 * runs / (time.perf_counter() - start)
    print(f"loader ({workers} workers, decode + resize + pad + batched normalise): "
          f"{loader_ips:.0f} images/s; tiny forward on CPU (batch 8, {torch.get_num_threads()} "
          f"threads): {model_ips:.1f} images/s -> ratio {loader_ips / model_ips:.1f}x "
          f"(target >= 5x)")


def bench_scoring_workers(num_images: int, per_image: int, workers: int, rounds: int) -> None:
    gt = synthetic_ground_truth(num_images)
    dets = synthetic_detections(gt, per_image)
    times: dict[int, list[float]] = {1: [], workers: []}
    results = {}
    for _ in range(rounds):
        for w in (1, workers):
            start = time.perf_counter()
            results[w] = score(gt, dets, ScoreOptions(workers=w))
            times[w].append(time.perf_counter() - start)
    same = results[1] == results[workers]
    print(f"scoring {num_images} x {per_image} detections, 1 process vs {workers} (by category "
          f"groups), {rounds} rounds alternating: " + ", ".join(
              f"{w}: median {statistics.median(t):.2f} s (min {min(t):.2f}, max {max(t):.2f})"
              for w, t in times.items())
          + f" -> {statistics.median(times[1]) / statistics.median(times[workers]):.2f}x; "
          f"identical numbers: {same}")


def bench_postprocess(batch: int, rounds: int) -> None:
    """Per-image (reference) vs batched post-processing of tiny-shaped head outputs at 640x640:
    logits ~ N(-13.73, 3.145) as the calibrated weights give (_weights.py), boxes 1..41 px."""
    from _weights import CLS_MU, CLS_SIGMA

    from rtmbench.models import TestSettings, postprocess, postprocess_batched

    g = torch.Generator().manual_seed(0)
    strides = (8, 16, 32)
    cls = tuple(torch.randn(batch, 80, 640 // s, 640 // s, generator=g) * CLS_SIGMA + CLS_MU
                for s in strides)
    box = tuple(torch.rand(batch, 4, 640 // s, 640 // s, generator=g) * 40 + 1 for s in strides)
    scales = [(1.0, 1.0)] * batch
    entry = load_zoo().get("tiny")
    for name, cfg in (("pre-pr9494", entry.test_cfg_variants["pre-pr9494"]),
                      ("default", entry.test_cfg)):
        settings = TestSettings.from_test_cfg(cfg.model_dump())
        times: dict[str, list[float]] = {"per-image": [], "batched": []}
        for _ in range(rounds):
            for label, fn in (("per-image", postprocess), ("batched", postprocess_batched)):
                start = time.perf_counter()
                fn(cls, box, strides, (640, 640), scales, settings)
                times[label].append((time.perf_counter() - start) / batch * 1e3)
        a, b = (statistics.median(times[k]) for k in ("per-image", "batched"))
        print(f"post-processing {name}: per-image {a:.1f} ms/image, batched {b:.1f} ms/image "
              f"({a / b:.2f}x; {rounds} rounds alternating, batch {batch})")


def bench_evaluate(num_images: int, rounds: int, batch_size: int, workers: int) -> dict:
    """Today's evaluate() vs the loop before issue 11, interleaved, on one data set."""
    from _weights import calibrated_model
    from baseline.legacy import evaluate_before

    from rtmbench.measure.eval_plan import EvaluationRequest
    from rtmbench.measure.evaluation import evaluate

    entry = load_zoo().get("tiny")
    model = calibrated_model(entry)
    runs: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_coco(Path(tmp) / "coco", num_images, seed=0, profile="coco")
        for r in range(rounds):
            for variant in ("before", "after"):
                for cfg_name in ("pre-pr9494", "default"):
                    cfg = entry.test_cfg if cfg_name == "default" else \
                        entry.test_cfg_variants[cfg_name]
                    out = Path(tmp) / f"{variant}-{cfg_name}-{r}"
                    timings: dict = {}
                    start = time.perf_counter()
                    if variant == "before":
                        evaluate_before(entry, root, model=model, out_dir=out,
                                        batch_size=batch_size, workers=workers, device="cpu",
                                        test_cfg=cfg, timings=timings)
                    else:
                        timings = evaluate(entry, model, EvaluationRequest(
                            root, out, batch_size=batch_size, workers=workers, device="cpu",
                            progress=False, test_cfg=cfg, timings=True)).timings
                    wall = time.perf_counter() - start
                    runs.setdefault((variant, cfg_name), []).append(
                        {"wall_s": wall, "stages_s": timings["stages_s"]})
                    print(f"round {r + 1} {variant:>6} {cfg_name:>10}: {wall:6.2f} s "
                          f"({num_images / wall:.2f} img/s)", flush=True)
    summary = {}
    for (variant, cfg_name), rs in runs.items():
        walls = [x["wall_s"] for x in rs]
        best = min(rs, key=lambda x: x["wall_s"])  # shares of the least disturbed round
        summary[f"{variant}/{cfg_name}"] = {
            "median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
            "max_s": round(max(walls), 3),
            "images_per_s": round(num_images / statistics.median(walls), 3),
            "stage_share": {k: round(v / best["wall_s"], 3)
                            for k, v in sorted(best["stages_s"].items(), key=lambda kv: -kv[1])
                            if v / best["wall_s"] >= 0.005}}
    for cfg_name in ("pre-pr9494", "default"):
        before, after = summary[f"before/{cfg_name}"], summary[f"after/{cfg_name}"]
        print(f"{cfg_name}: before median {before['median_s']} s [{before['min_s']}, "
              f"{before['max_s']}], after {after['median_s']} s [{after['min_s']}, "
              f"{after['max_s']}] -> after/before {after['median_s'] / before['median_s']:.3f}")
        print(f"  shares before: {before['stage_share']}")
        print(f"  shares after:  {after['stage_share']}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets", type=int, default=100)
    parser.add_argument("--loader-images", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--evaluate", action="store_true",
                        help="only the before/after evaluate() comparison")
    parser.add_argument("--eval-images", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scoring-workers", type=int, default=None,
                        help="only: scoring in 1 process vs this many")
    parser.add_argument("--postprocess", action="store_true",
                        help="only: per-image vs batched post-processing")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.postprocess:
        bench_postprocess(args.batch_size, args.rounds)
        return
    if args.scoring_workers:
        bench_scoring_workers(args.images, args.dets, args.scoring_workers, args.rounds)
        return
    if args.evaluate:
        summary = bench_evaluate(args.eval_images, args.rounds, args.batch_size, args.workers)
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1))
        return
    bench_scoring(args.images, args.dets)
    bench_loader(args.loader_images, args.workers)
    print(json.dumps({"note": "times are of this machine, now; compare ratios only"}))


if __name__ == "__main__":
    main()
