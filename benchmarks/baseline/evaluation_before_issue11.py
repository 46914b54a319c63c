"""COCO box AP of one model: batched inference, resumable per-image predictions, sharding.

Images are sorted by id and cut into fixed batches of ``batch_size``; shard i of n (an
explicit ``--shard i/n`` or rank i of n under torchrun) runs batches i, i+n, i+2n, ... So every
image is always inferred in the same batch, whatever the number of processes or interruptions,
and the merged detections are bit-identical to a single-process run.

An output directory holds::

    run.json                     what was run (model, weights fingerprint, images, settings)
    predictions.<i>-of-<n>.jsonl one line per image, appended and fsynced batch by batch
    detections.json              COCO results, all images, sorted by image id
    metrics.json                 the 12 numbers per AP convention (rtmbench.scoring)

A rerun with the same settings skips every image already in a predictions file (a line cut by
a crash is dropped and its batch redone); different settings in the same directory are refused
rather than mixed or overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..data import CocoDataset, ImageRecord, TestPipeline
from ..errors import DatasetError, InputError
from ..fileio import append_durable, sha256_file, write_bytes_atomic, write_json_atomic
from ..models.postprocess import TestSettings, postprocess
from .scoring import DEFAULT_BACKEND, score

MANIFEST, DETECTIONS, METRICS = "run.json", "detections.json", "metrics.json"


@dataclass
class EvalResult:
    metrics: dict[str, dict[str, float]]  # {} for a single shard: `rtmbench merge` scores
    num_images: int
    detections_path: Path
    metrics_path: Path | None = None
    backend: str = DEFAULT_BACKEND
    newly_inferred: int = 0
    manifest: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"metrics": self.metrics, "num_images": self.num_images,
                "detections": str(self.detections_path), "backend": self.backend,
                "newly_inferred": self.newly_inferred, "run": self.manifest}


# --- weights -------------------------------------------------------------------------------

def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 of the state_dict's names and bytes: which weights produced the predictions."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# --- images --------------------------------------------------------------------------------

class _Images(Dataset):
    """Decode + resize + pad in DataLoader workers; a bad file comes back as its message."""

    def __init__(self, records: list[ImageRecord], pipeline: TestPipeline) -> None:
        self.records, self.pipeline = records, pipeline

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        record = self.records[index]
        try:
            return self.pipeline.prepare(record.id, record.path)
        except DatasetError as exc:  # re-raised in the main process, without a worker traceback
            return str(exc)


def _collate(items: list) -> dict:
    errors = [item for item in items if isinstance(item, str)]
    if errors:
        return {"error": errors[0]}
    return {"image_ids": [item.image_id for item in items],
            "pixels": torch.stack([torch.from_numpy(item.pixels) for item in items]),
            "scale_factors": [item.scale_factor for item in items]}


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


# --- predictions files ---------------------------------------------------------------------

def _predictions_path(out_dir: Path, shard: tuple[int, int]) -> Path:
    return out_dir / f"predictions.{shard[0]}-of-{shard[1]}.jsonl"


def _drop_partial_tail(path: Path) -> None:
    """A crash can cut the last line short: cut the file back to its last complete line."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with open(path, "r+b") as f:
            f.truncate(end)


def read_predictions(out_dir: Path) -> dict[int, list[list[float]]]:
    """image id -> [[x, y, w, h, score, category_id], ...] from every predictions file."""
    found: dict[int, list[list[float]]] = {}
    for path in sorted(out_dir.glob("predictions.*.jsonl")):
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # being written by another rank, or cut by a crash
                row = json.loads(line)
                found.setdefault(row["image_id"], row["detections"])
    return found


def _append_lines(path: Path, rows: list[dict]) -> None:
    append_durable(path, "".join(json.dumps(row) + "\n" for row in rows).encode())


def _to_coco_rows(detections, image_ids, cat_ids: list[int]) -> list[dict]:
    """As MMDetection's CocoMetric: xyxy -> [x1, y1, x2 - x1, y2 - y1] on Python floats."""
    rows = []
    for image_id, det in zip(image_ids, detections, strict=True):
        boxes = det.boxes.detach().cpu().numpy().tolist()
        scores = det.scores.detach().cpu().float().numpy().tolist()
        labels = det.labels.detach().cpu().tolist()
        rows.append({"image_id": image_id, "detections": [
            [b[0], b[1], b[2] - b[0], b[3] - b[1], s, cat_ids[label]]
            for b, s, label in zip(boxes, scores, labels, strict=True)]})
    return rows


def coco_results(predictions: dict[int, list[list[float]]]) -> list[dict]:
    return [{"image_id": image_id, "category_id": int(d[5]), "bbox": d[:4], "score": d[4]}
            for image_id in sorted(predictions) for d in predictions[image_id]]


# --- run manifest --------------------------------------------------------------------------

def _manifest(entry, dataset: CocoDataset, records: list[ImageRecord], batch_size: int,
              device: str, fingerprint: str, test_cfg) -> dict:
    manifest = {"model": entry.name, "weights_sha256": fingerprint,
            "annotations_sha256": sha256_file(dataset.annotation_file),
            "num_images": len(records), "image_ids_sha256": _image_ids_sha256(records),
            "batch_size": batch_size, "device": torch.device(device).type,
            "input_size": list(entry.input_size), "pipeline": entry.pipeline.model_dump(),
            "test_cfg": test_cfg.model_dump()}
    return json.loads(json.dumps(manifest))  # as it reads back from run.json (tuples -> lists)


def _image_ids_sha256(records: list[ImageRecord]) -> str:
    return hashlib.sha256(",".join(str(r.id) for r in records).encode()).hexdigest()


def _check_manifest(out_dir: Path, manifest: dict, *, create: bool) -> None:
    path = out_dir / MANIFEST
    if not path.exists():
        if create:
            write_json_atomic(path, manifest)
            return
        raise InputError(f"{out_dir} has no {MANIFEST}: not an rtmbench evaluation directory.")
    existing = json.loads(path.read_text())
    if existing != manifest:
        diff = sorted(k for k in manifest.keys() | existing.keys()
                      if manifest.get(k) != existing.get(k))
        raise InputError(f"{out_dir} holds an evaluation with different settings "
                         f"({', '.join(diff)} differ; see {path}). Rerun with the same "
                         f"settings to resume it, or "
                         f"pass another --out to start a new one.")


# --- distributed ---------------------------------------------------------------------------

def _distributed_rank(device: str) -> tuple[int, int, bool]:
    """(rank, world, initialised_here); torchrun sets WORLD_SIZE, RANK, MASTER_ADDR..."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    initialised_here = not dist.is_initialized()
    if initialised_here:
        dist.init_process_group("nccl" if torch.device(device).type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), initialised_here


# --- the run -------------------------------------------------------------------------------

def _infer(model, loader, pipeline: TestPipeline, entry, test_cfg, device: torch.device,
           cat_ids: list[int], path: Path, bar) -> int:
    settings = TestSettings.from_test_cfg(test_cfg.model_dump())
    input_hw = (entry.input_size[1], entry.input_size[0])
    done = 0
    for batch in loader:
        if "error" in batch:
            raise DatasetError(batch["error"])
        x = pipeline.normalize(batch["pixels"].to(device, non_blocking=True))
        with torch.inference_mode():
            cls_scores, bbox_preds = model(x)
            detections = postprocess(cls_scores, bbox_preds, model.arch.strides, input_hw,
                                     batch["scale_factors"], settings)
        _append_lines(path, _to_coco_rows(detections, batch["image_ids"], cat_ids))
        done += len(batch["image_ids"])
        bar.update(len(batch["image_ids"]))
    return done


def finalize(out_dir: Path, dataset: CocoDataset, records: list[ImageRecord],
             backend: str) -> tuple[dict, Path, Path]:
    """Gather every image's predictions; write detections.json and metrics.json; return them."""
    predictions = read_predictions(out_dir)
    missing = [r.id for r in records if r.id not in predictions]
    if missing:
        raise DatasetError(f"{out_dir}: {len(missing)} of {len(records)} images have no "
                           f"predictions yet (e.g. image {missing[0]}); run the missing shards "
                           f"or rerun the evaluation to finish them.")
    wanted = {r.id for r in records}
    results = coco_results({k: v for k, v in predictions.items() if k in wanted})
    metrics = score(dataset.data, results, backend=backend, image_ids=wanted)
    detections_path, metrics_path = out_dir / DETECTIONS, out_dir / METRICS
    write_json_atomic(detections_path, results)
    write_json_atomic(metrics_path, {"metrics": metrics, "num_images": len(records),
                                     "num_detections": len(results), "backend": backend,
                                     "run": json.loads((out_dir / MANIFEST).read_text())})
    return metrics, detections_path, metrics_path


def evaluate(model_entry, coco_root: Path, *, model: torch.nn.Module, out_dir: Path,
             limit: int | None = None, batch_size: int = 8, workers: int = 2,
             device: str = "cpu", shard: tuple[int, int] | None = None,
             progress: bool = True, backend: str = DEFAULT_BACKEND,
             test_cfg=None) -> EvalResult:
    """Run ``model`` over COCO val (or its first ``limit`` images) and score it.

    ``test_cfg`` (a zoo TestCfg) overrides the entry's default test-time settings, e.g. with
    the variant a claim was evaluated with (``ResolvedModel.test_cfg_for(claim)``).

    Under torchrun each rank takes its share of the batches and rank 0 merges and scores;
    every rank returns the same result. With ``shard=(i, n)`` this process runs shard i only
    and scores nothing (``merge_shards`` does, once all shards are in one place).
    """
    from tqdm import tqdm

    if batch_size <= 0 or workers < 0:
        raise InputError(f"--batch-size must be >= 1 and --workers >= 0, got {batch_size}, "
                         f"{workers}.")
    dataset = CocoDataset(coco_root)
    if dataset.num_classes != model.num_classes:
        raise DatasetError(f"{dataset.annotation_file} has {dataset.num_classes} categories; the "
                           f"model predicts {model.num_classes} classes.")
    records = dataset.select(limit)
    rank, world, initialised_here = _distributed_rank(device)
    if world > 1 and shard is not None:
        raise InputError("--shard is for separate machines; under torchrun the ranks are the "
                         "shards already. Drop one of them.")
    my_shard = shard or (rank, world)
    dev = torch.device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(dev)
    model = model.to(dev).eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    test_cfg = test_cfg or model_entry.test_cfg
    manifest = _manifest(model_entry, dataset, records, batch_size, device,
                         weights_fingerprint(model), test_cfg)
    try:
        if rank == 0:
            _check_manifest(out_dir, manifest, create=True)
        _barrier(world)
        if rank != 0:
            _check_manifest(out_dir, manifest, create=False)
        path = _predictions_path(out_dir, my_shard)
        _drop_partial_tail(path)
        done = read_predictions(out_dir)
        batches = plan_batches(len(records), batch_size)[my_shard[0]::my_shard[1]]
        todo = [b for b in batches if any(records[i].id not in done for i in b)]
        pipeline = TestPipeline.for_model(model_entry)
        loader = DataLoader(_Images(records, pipeline), batch_sampler=todo, num_workers=workers,
                            collate_fn=_collate, pin_memory=dev.type == "cuda")
        total = sum(len(b) for b in todo)
        with tqdm(total=total, unit="img", file=sys.stderr, disable=not progress or rank != 0,
                  desc=f"{model_entry.name} shard {my_shard[0]}/{my_shard[1]}"
                  if my_shard[1] > 1 else model_entry.name) as bar:
            newly = _infer(model, loader, pipeline, model_entry, test_cfg, dev, dataset.cat_ids,
                           path, bar)
        _barrier(world)
        if shard is not None and shard[1] > 1:
            return EvalResult({}, len(records), path, None, backend, newly, manifest)
        metrics, detections_path, metrics_path = (
            finalize(out_dir, dataset, records, backend) if rank == 0 else ({}, None, None))
        metrics = _broadcast(world, metrics)
        return EvalResult(metrics, len(records), out_dir / DETECTIONS, out_dir / METRICS,
                          backend, newly, manifest)
    finally:
        if initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _broadcast(world: int, value: dict) -> dict:
    if world <= 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def merge_shards(shard_dirs: list[Path], coco_root: Path, out_dir: Path, *,
                 backend: str = DEFAULT_BACKEND) -> EvalResult:
    """Combine the predictions of ``--shard i/n`` runs (same settings) and score them once."""
    manifests = []
    for d in shard_dirs:
        if not (Path(d) / MANIFEST).is_file():
            raise InputError(f"{d} has no {MANIFEST}: not an rtmbench evaluation directory.")
        manifests.append(json.loads((Path(d) / MANIFEST).read_text()))
    if any(m != manifests[0] for m in manifests[1:]):
        raise InputError(f"the shard directories {', '.join(map(str, shard_dirs))} were run with "
                         f"different settings (compare their {MANIFEST}); merge only shards of "
                         f"one evaluation.")
    dataset = CocoDataset(coco_root)
    records = dataset.select(manifests[0]["num_images"])
    if (sha256_file(dataset.annotation_file) != manifests[0]["annotations_sha256"]
            or _image_ids_sha256(records) != manifests[0]["image_ids_sha256"]):
        raise DatasetError(f"the shards were run on another annotation file than "
                           f"{dataset.annotation_file}; merge with the COCO they were run on.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_manifest(out_dir, manifests[0], create=True)
    for d in shard_dirs:
        if Path(d).resolve() == out_dir.resolve():
            continue
        for src in sorted(Path(d).glob("predictions.*.jsonl")):
            target = out_dir / src.name
            if target.exists() and target.read_bytes() != src.read_bytes():
                raise InputError(f"{target} already exists with other content; merge into an "
                                 f"empty --out directory.")
            write_bytes_atomic(target, src.read_bytes())
    metrics, detections_path, metrics_path = finalize(out_dir, dataset, records, backend)
    return EvalResult(metrics, len(records), detections_path, metrics_path, backend, 0,
                      manifests[0])
