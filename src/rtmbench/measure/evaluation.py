"""COCO box AP of one model: batched inference, resumable per-image predictions, sharding.

What to evaluate, how and where is one :class:`~.eval_plan.EvaluationRequest`: ``evaluate(entry,
model, request)``; :func:`resolve_request` decides its device and the defaults suited to it.

Images are sorted by id and cut into fixed batches of ``batch_size``; shard i of n (a
request's ``shard=(i, n)`` or rank i of n under torchrun) runs batches i, i+n, i+2n, ... So every
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

What runs the network: by default the PyTorch model itself (below). With the request's
``artifact`` (an :class:`~.artifact.ArtifactSpec`, ``rtmbench evaluate --backend``) the forward is
the timed artifact's instead (:mod:`.artifact`: the export, engine or compiled graph the
latency check times, static ``batch_size`` x 3 x H x W, the last batch padded), run on the
host side of the pipeline: its outputs come back as host FP32 tensors and go through the same
batched post-processing. Its identity is part of ``run.json`` (``artifact``), and its ONNX
export, if any, is kept in ``artifact/`` beside the predictions.

Throughput. DataLoader workers decode, resize and pad (``workers`` None: :func:`default_workers`);
on CUDA the batches arrive in pinned memory and go to the GPU with non-blocking copies as
uint8, where they are normalised. On CUDA the network runs BN-folded and channels_last in
``precision`` fp32 (cuDNN may use TF32, as torch's default allows) or fp16, with cuDNN's
heuristics rather than its benchmark mode (the same kernels in every process and rerun, which
keeps shards and resumes bit-identical). Post-processing is batched and stays on the device
(:func:`rtmbench.models.postprocess_batched`, the same detections as the per-image reference);
each batch's detections come back in one copy, and on CUDA a background thread turns them into
lines and appends them, in order, while the GPU works on the next batch. On CPU the network
and precision are exactly as before (fp32, the model as given). When this process wrote
every image's predictions, scoring takes them from memory instead of parsing the files again
(the same values: JSON round-trips Python floats); it runs in several processes once the
detections are many (:func:`rtmbench.measure.scoring.score`), while ``detections.json`` is
written.

Stage timing: with the request's ``timings``, the result's ``timings`` hold seconds per stage
(decode+resize+pad summed over the workers, waiting for the loader, H2D + normalise, forward,
post-processing, device-to-host, writing predictions, reading them back, scoring, writing
detections.json) and counts (images, batches, NMS candidates). On CUDA each timed stage is
synchronised, so stages are attributed exactly; without ``timings`` nothing is synchronised or
timed beyond what the evaluation needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data import CocoDataset, ImageRecord, TestPipeline
from ..errors import DatasetError, DeviceMissing, InputError, NonFiniteOutputs
from ..fileio import append_durable, sha256_file, write_bytes_atomic, write_json_atomic
from ..models.postprocess import TestSettings, postprocess_batched
from .eval_plan import EvaluationRequest, about, check_out_dir, plan_batches
from .scoring import DEFAULT_BACKEND, ScoreOptions, score

MAX_CUDA_WORKERS = 12
# Images per forward when none is given: 32 on a GPU (what MMDetection's test loaders fill an
# 8-GPU node with, per GPU, and enough to keep a GPU busy at 640x640 for every size); 8 on a
# CPU, where the batch does not change throughput and a smaller one shows progress sooner.
BATCH_SIZE = {"cuda": 32, "cpu": 8}

MANIFEST, DETECTIONS, METRICS = "run.json", "detections.json", "metrics.json"


@dataclass
class EvalResult:
    metrics: dict[str, dict[str, float]]  # {} for a single shard: `rtmbench merge` scores
    num_images: int
    detections_path: Path
    metrics_path: Path | None = None
    backend: str = DEFAULT_BACKEND  # the COCOeval implementation that scored (the scorer)
    newly_inferred: int = 0
    manifest: dict = field(default_factory=dict)
    timings: dict | None = None  # seconds per stage and counts, when the request asked

    def to_dict(self) -> dict:
        # "backend" is the scorer, as it always was (kept for scripts that read it); "scorer"
        # says so by name, and the inference backend is the manifest's "artifact"
        return {"metrics": self.metrics, "num_images": self.num_images,
                "detections": str(self.detections_path), "backend": self.backend,
                "scorer": self.backend, "artifact": self.manifest.get("artifact"),
                "newly_inferred": self.newly_inferred, "run": self.manifest}


# --- stage timing --------------------------------------------------------------------------

class StageTimer:
    """Seconds per stage and counts; ``sync`` (e.g. torch.cuda.synchronize) runs before and
    after each timed stage so that asynchronous device work lands in its own stage."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.sync = sync or (lambda: None)
        self.lock = threading.Lock()  # the writer thread adds its own seconds

    @contextlib.contextmanager
    def __call__(self, stage: str):
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        with self.lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def count(self, name: str, value: int) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + int(value)

    def to_dict(self) -> dict:
        return {"stages_s": {k: round(v, 6) for k, v in self.seconds.items()},
                "counts": dict(self.counts)}


class _NoTimer:
    """The timer when nobody asked: one shared no-op context, nothing synchronised."""

    _null = contextlib.nullcontext()

    def __call__(self, stage: str):
        return self._null

    def add(self, stage: str, seconds: float) -> None:
        pass

    def count(self, name: str, value: int) -> None:
        pass


def resolve_eval_device(device: str) -> str:
    """``auto``: cuda where torch sees a GPU, else cpu; ``cuda`` (or ``cuda:N``) without one is
    a missing prerequisite, said before any weights are fetched."""
    from ..spec.check_specs import resolve_device
    from .backends.base import cuda_unavailable_reason

    if device == "auto":
        return resolve_device(device, "gpu" if torch.cuda.is_available() else None)
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise about("device", InputError(f"unknown device {device!r}; use auto, cpu or cuda "
                                         f"(cuda:N for one GPU of several).")) from None
    if kind not in ("cpu", "cuda"):
        raise about("device", InputError(f"device {device!r} is not supported; use auto, cpu "
                                         f"or cuda."))
    if kind == "cuda" and (reason := cuda_unavailable_reason()):
        raise about("device", DeviceMissing(f"device {device} was asked for, but {reason}; use "
                                            f"device auto or cpu."))
    return device


def resolve_request(request: EvaluationRequest) -> EvaluationRequest:
    """``request`` with its device decided and the defaults suited to it, checked again there:
    the device ``auto`` is cuda where torch sees a GPU, else cpu (:func:`resolve_eval_device`;
    cuda asked for without a GPU is DeviceMissing), and with an artifact the artifact's device
    (its backend said whether it runs there); the batch size 1 for an artifact (the batch
    latency times by default), else :func:`default_batch_size`; the workers
    :func:`default_workers`. Then fp16 where auto chose the CPU is refused (and an output
    directory that is a file, :func:`~.eval_plan.check_out_dir`). A resolved request
    comes back as it is: ``evaluate`` calls this too, and the CLI and the runner call it first
    (to say where it runs, to find a missing GPU before any weights are fetched)."""
    check_out_dir(request.out_dir)
    artifact = request.artifact
    device = resolve_eval_device(request.device) if artifact is None else artifact.device
    batch = request.batch_size
    if batch is None:
        batch = 1 if artifact is not None else default_batch_size(device)
    workers = request.workers if request.workers is not None else default_workers(device)
    if (device, batch, workers) == (request.device, request.batch_size, request.workers):
        return request
    return replace(request, device=device, batch_size=batch, workers=workers)


def default_batch_size(device: str) -> int:
    """Images per forward pass when none is given (:data:`BATCH_SIZE`)."""
    return BATCH_SIZE[torch.device(device).type]


def default_workers(device: str) -> int:
    """DataLoader workers when none are given. CUDA: every usable core but two (the main
    process and the pin-memory thread), at most 12: if a worker decodes, resizes and pads a
    COCO image in ~4-6 ms (an estimate for a server core), 12 feed ~2,000-3,000 images/s,
    about tiny's FP16 forward on an H100-class GPU (bench_reproduce_gpu.py measures both).
    CPU: 2 (the forward needs the cores; decoding is ~20x faster than tiny's CPU forward)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if torch.device(device).type == "cuda":
        return max(1, min(cores - 2, MAX_CUDA_WORKERS))
    return min(2, cores)


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
        start = time.perf_counter()
        try:
            prepared = self.pipeline.prepare(record.id, record.path)
        except DatasetError as exc:  # re-raised in the main process, without a worker traceback
            return str(exc)
        prepared.seconds = time.perf_counter() - start  # decode + resize + pad, in this worker
        return prepared


def _collate(items: list) -> dict:
    errors = [item for item in items if isinstance(item, str)]
    if errors:
        return {"error": errors[0]}
    return {"image_ids": [item.image_id for item in items],
            "pixels": torch.stack([torch.from_numpy(item.pixels) for item in items]),
            "scale_factors": [item.scale_factor for item in items],
            "prepare_s": sum(item.seconds for item in items)}


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


def _not_finite(token: str) -> float:
    raise ValueError(f"{token} is not a finite number")


def _prediction_problem(row: object, line: bytes) -> str | None:
    """Why a parsed predictions line is not ``{"image_id": int, "detections": [[x, y, w, h,
    score, category_id], ...]}`` with finite numbers, ``w, h >= 0`` and integer category ids;
    None when it is. (Checked as one array per line: a loop over 1.5 M detections in Python
    took as long again as parsing them.)"""
    if not isinstance(row, dict) or set(row) != {"image_id", "detections"}:
        found = sorted(row) if isinstance(row, dict) else f"a JSON {type(row).__name__}"
        return f"expected an object with image_id and detections, found {found}"
    if type(row["image_id"]) is not int:
        return f"image_id must be an integer, found {row['image_id']!r}"
    detections = row["detections"]
    if not isinstance(detections, list):
        return f"detections must be a list, found {str(detections)[:80]}"
    if not detections:
        return None
    if line.count(b'"') != 4 or b"true" in line or b"false" in line or b"null" in line:
        return ("detections must hold numbers only (a string, boolean or null was found): "
                f"{str(detections)[:120]}")
    try:
        boxes = np.array(detections, dtype=np.float64)
    except (ValueError, TypeError):
        boxes = None
    if boxes is None or boxes.ndim != 2 or boxes.shape[1] != 6:
        return (f"detections must be lists [x, y, w, h, score, category_id] of six numbers, "
                f"found {str(detections)[:120]}")
    if not np.isfinite(boxes).all():
        k = int(np.flatnonzero(~np.isfinite(boxes).all(axis=1))[0])
        return f"detections[{k}] holds a number that is not finite: {detections[k]}"
    if (boxes[:, 2:4] < 0).any():
        k = int(np.flatnonzero((boxes[:, 2:4] < 0).any(axis=1))[0])
        return f"detections[{k}] has a negative width or height: {detections[k]}"
    if (boxes[:, 5] != np.floor(boxes[:, 5])).any():
        k = int(np.flatnonzero(boxes[:, 5] != np.floor(boxes[:, 5]))[0])
        return f"detections[{k}] has a category id that is not an integer: {detections[k]}"
    return None


def _damaged_line(path: Path, number: int, why: str) -> InputError:
    return InputError(
        f"{path}:{number}: damaged predictions line: {why}. A crash can only cut the last line "
        f"short, so this file was changed or damaged otherwise; delete {path} to infer its "
        f"images again (or delete the folder {path.parent} to redo the evaluation).")


def read_predictions_file(path: Path, into: dict[int, list[list[float]]] | None = None
                          ) -> dict[int, list[list[float]]]:
    """image id -> detections of one predictions file; a last line without its newline (being
    written by another rank, or cut by a crash) is left out, any other line that is not a
    valid prediction is an InputError naming the file and the line."""
    found = {} if into is None else into
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, start=1):
                if not line.endswith(b"\n"):
                    break  # being written by another rank, or cut by a crash
                try:
                    row = json.loads(line, parse_constant=_not_finite)
                except (ValueError, RecursionError) as exc:  # UnicodeDecodeError included
                    raise _damaged_line(path, number, f"not a JSON line ({exc})") from None
                if problem := _prediction_problem(row, line):
                    raise _damaged_line(path, number, problem)
                found.setdefault(row["image_id"], row["detections"])
    except OSError as exc:
        raise InputError(f"predictions file {path} cannot be read ({exc.strerror}); delete it "
                         f"to infer its images again.") from None
    return found


def read_predictions(out_dir: Path) -> dict[int, list[list[float]]]:
    """image id -> [[x, y, w, h, score, category_id], ...] from every predictions file."""
    found: dict[int, list[list[float]]] = {}
    for path in sorted(out_dir.glob("predictions.*.jsonl")):
        read_predictions_file(path, found)
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


def _to_host(detections: list) -> list:
    """Every image's detections in one device-to-host copy per tensor kind."""
    from ..models.postprocess import Detections

    if not detections or detections[0].boxes.device.type == "cpu":
        return detections
    sizes = [len(d) for d in detections]  # shapes: known on the host, no synchronisation
    parts = [torch.cat([getattr(d, k) for d in detections]).cpu().split(sizes)
             for k in ("boxes", "scores", "labels")]
    return [Detections(b, s, label) for b, s, label in zip(*parts)]


class _Writer:
    """Appends each batch's lines, in batch order, to the predictions file: in the calling
    thread, or (``background``) on one thread of its own so that the GPU need not wait. After a
    failure nothing more is written and :meth:`close` (or the next :meth:`submit`) re-raises
    it, so the file always holds whole batches in order, as a resume expects."""

    def __init__(self, path: Path, cat_ids: list[int], timer, background: bool,
                 max_pending: int = 2) -> None:
        self.path, self.cat_ids, self.timer = path, cat_ids, timer
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="rtmbench-writer") \
            if background else None
        self.pending: list[Future] = []
        self.max_pending = max_pending
        self.failed: BaseException | None = None
        # What was written, by image id: the values read_predictions would read back (JSON
        # round-trips Python floats exactly), so scoring need not parse the file again.
        self.written: dict[int, list] = {}

    def _write(self, detections, image_ids) -> None:
        if self.failed is not None:
            return
        start = time.perf_counter()
        try:
            rows = _to_coco_rows(detections, image_ids, self.cat_ids)
            _append_lines(self.path, rows)
            self.written.update((row["image_id"], row["detections"]) for row in rows)
        except BaseException as exc:
            self.failed = exc
            raise
        finally:
            self.timer.add("write_predictions", time.perf_counter() - start)

    def submit(self, detections, image_ids) -> None:
        if self.pool is None:
            self._write(detections, image_ids)
            return
        self._reap(block=len(self.pending) >= self.max_pending)
        self.pending.append(self.pool.submit(self._write, detections, image_ids))

    def _reap(self, block: bool) -> None:
        while self.pending and (block or self.pending[0].done()):
            self.pending.pop(0).result()  # re-raises a failure here
            block = False

    def close(self) -> None:
        if self.pool is None:
            return
        try:
            while self.pending:
                self.pending.pop(0).result()
        finally:
            self.pool.shutdown(wait=True)


def coco_results(predictions: dict[int, list[list[float]]]) -> list[dict]:
    return [{"image_id": image_id, "category_id": int(d[5]), "bbox": d[:4], "score": d[4]}
            for image_id in sorted(predictions) for d in predictions[image_id]]


# --- run manifest --------------------------------------------------------------------------

def _manifest(entry, dataset: CocoDataset, records: list[ImageRecord],
              request: EvaluationRequest, device: str, fingerprint: str) -> dict:
    """What run.json records of an evaluation (the keys it always had): ``device`` is where the
    network runs (cpu for an artifact, whose own device the caller puts in)."""
    precision = request.precision
    manifest = {"model": entry.name, "weights_sha256": fingerprint,
            "annotations_sha256": sha256_file(dataset.annotation_file),
            "num_images": len(records), "image_ids_sha256": _image_ids_sha256(records),
            "batch_size": request.batch_size, "device": torch.device(device).type,
            "input_size": list(entry.input_size), "pipeline": entry.pipeline.model_dump(),
            "test_cfg": request.test_cfg.model_dump()}
    if torch.device(device).type == "cuda":  # CPU runs keep the manifest they always had
        manifest |= {"precision": precision, "network": "bn-folded, channels_last",
                     "cudnn_tf32": bool(torch.backends.cudnn.allow_tf32) and precision == "fp32"}
    return json.loads(json.dumps(manifest))  # as it reads back from run.json (tuples -> lists)


def _image_ids_sha256(records: list[ImageRecord]) -> str:
    return hashlib.sha256(",".join(str(r.id) for r in records).encode()).hexdigest()


MANIFEST_FIELDS = {"model": str, "weights_sha256": str, "annotations_sha256": str,
                   "num_images": int, "image_ids_sha256": str}


def read_manifest(out_dir: Path, fix: str | None = None) -> dict:
    """``out_dir``'s run.json; a damaged one is an InputError naming it, with ``fix`` (default:
    delete the folder to redo the evaluation there)."""
    path = out_dir / MANIFEST
    fix = fix or (f"Delete {out_dir} to redo the evaluation there, or give another output "
                  f"directory")
    try:
        data = json.loads(path.read_bytes(), parse_constant=_not_finite)
    except OSError as exc:
        raise InputError(f"{path} cannot be read ({exc.strerror}). {fix}.") from None
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError included
        raise InputError(f"{path} is damaged: not valid JSON ({exc}). {fix}.") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} is damaged: a JSON {type(data).__name__}, not the object "
                         f"rtmbench writes. {fix}.")
    bad = [k for k, kind in MANIFEST_FIELDS.items() if type(data.get(k)) is not kind]
    if bad:
        raise InputError(f"{path} is damaged: {', '.join(bad)} missing or of the wrong type. "
                         f"{fix}.")
    return data


def _check_manifest(out_dir: Path, manifest: dict, *, create: bool) -> None:
    path = out_dir / MANIFEST
    if not path.exists():
        if create:
            write_json_atomic(path, manifest)
            return
        raise InputError(f"{out_dir} has no {MANIFEST}: not an rtmbench evaluation directory.")
    existing = read_manifest(out_dir)
    if existing != manifest:
        diff = sorted(k for k in manifest.keys() | existing.keys()
                      if manifest.get(k) != existing.get(k))
        raise InputError(f"{out_dir} holds an evaluation with different settings "
                         f"({', '.join(diff)} differ; see {path}). Rerun with the same "
                         f"settings to resume it, or give another output directory to start a "
                         f"new one.")


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

def _inference_network(model: torch.nn.Module, device: torch.device,
                       precision: str) -> torch.nn.Module:
    """CPU: the model as given. CUDA: a BN-folded, channels_last copy in ``precision``."""
    if device.type != "cuda":
        return model
    from .export import fold_batchnorm

    dtype = torch.float16 if precision == "fp16" else torch.float32
    return fold_batchnorm(model).to(device=device, dtype=dtype,
                                    memory_format=torch.channels_last).eval()


@dataclass(frozen=True)
class _Pass:
    """One inference pass: what runs each batch (``forward``: x -> (cls_scores, bbox_preds),
    the PyTorch network or a timed artifact's :meth:`.artifact.Artifact.forward`; ``failure``
    says what gave NaN), on which device and in which precision, how its outputs become
    detections (the pipeline's normalisation, the test settings, the strides, the network's
    input height and width, the data set's category ids) and the predictions file they are
    appended to."""

    forward: Callable
    failure: str
    device: torch.device
    precision: str
    pipeline: TestPipeline
    settings: TestSettings
    strides: tuple
    input_hw: tuple[int, int]
    cat_ids: list[int]
    path: Path


def _infer(job: _Pass, loader, bar, timer=None, written: dict | None = None) -> int:
    """Infer every batch of ``loader`` and append its predictions; return the image count.
    ``written``, if given, receives what was appended (image id -> detections)."""
    device, pipeline, strides, input_hw = job.device, job.pipeline, job.strides, job.input_hw
    timer = timer or _NoTimer()
    cuda = device.type == "cuda"
    forward, failure = job.forward, job.failure
    dtype = torch.float16 if job.precision == "fp16" else torch.float32
    nms_stats: dict | None = {} if isinstance(timer, StageTimer) else None
    writer = _Writer(job.path, job.cat_ids, timer, background=cuda)
    done = 0
    batches = iter(loader)
    try:
        while True:
            with timer("loader_wait"):
                batch = next(batches, None)
            if batch is None:
                break
            if "error" in batch:
                raise DatasetError(batch["error"])
            timer.add("decode_resize_pad_in_workers", batch["prepare_s"])
            with timer("h2d_normalize"):
                x = pipeline.normalize(batch["pixels"].to(device, non_blocking=True))
                if cuda:
                    x = x.to(dtype).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                with timer("forward"):
                    cls_scores, bbox_preds = forward(x)
                    finite = torch.stack([t.isfinite().all()
                                          for t in (*cls_scores, *bbox_preds)]).all()
                with timer("postprocess"):
                    detections = postprocess_batched(cls_scores, bbox_preds, strides, input_hw,
                                                     batch["scale_factors"], job.settings,
                                                     stats=nms_stats)
                with timer("d2h"):
                    detections = _to_host(detections)
                    finite = bool(finite)  # the device has synchronised for the copy already
            if not finite:  # before anything of this batch is written: a rerun redoes it
                ids = batch["image_ids"]
                raise NonFiniteOutputs(
                    f"{failure} on a batch of images {ids[:4]}"
                    f"{' ...' if len(ids) > 4 else ''}: no box AP from them (an FP16 overflow, "
                    "or broken weights)")
            writer.submit(detections, batch["image_ids"])
            done += len(batch["image_ids"])
            timer.count("images", len(batch["image_ids"]))
            timer.count("batches", 1)
            bar.update(len(batch["image_ids"]))
    finally:
        with timer("write_wait"):
            writer.close()
        if written is not None:
            written.update(writer.written)
    for key, value in (nms_stats or {}).items():
        timer.count(f"nms_{key}" if not key.startswith("nms") else key, value)
    return done


def finalize(out_dir: Path, dataset: CocoDataset, records: list[ImageRecord],
             scoring: ScoreOptions, *, timer=None,
             known: dict[int, list] | None = None) -> tuple[dict, Path, Path]:
    """Gather every image's predictions; write detections.json and metrics.json; return them.

    ``scoring``: its scorer and workers score (the images are ``records``'). ``known``:
    predictions this process wrote (image id -> detections); when they cover every image, the
    predictions files are not read back. detections.json is written on a thread while the
    scoring processes work."""
    timer = timer or _NoTimer()
    with timer("read_predictions"):
        if known is not None and all(r.id in known for r in records):
            predictions = known
        else:
            predictions = read_predictions(out_dir)
    missing = [r.id for r in records if r.id not in predictions]
    if missing:
        raise DatasetError(f"{out_dir}: {len(missing)} of {len(records)} images have no "
                           f"predictions yet (e.g. image {missing[0]}); run the missing shards "
                           f"or rerun the evaluation to finish them.")
    wanted = {r.id for r in records}
    with timer("read_predictions"):
        results = coco_results({k: v for k, v in predictions.items() if k in wanted})
    detections_path, metrics_path = out_dir / DETECTIONS, out_dir / METRICS

    def write_detections() -> None:
        start = time.perf_counter()
        write_json_atomic(detections_path, results)
        timer.add("write_detections_json", time.perf_counter() - start)

    with ThreadPoolExecutor(1, thread_name_prefix="rtmbench-detections") as pool:
        written = pool.submit(write_detections)
        with timer("score"):
            metrics = score(dataset.data, results, replace(
                scoring, image_ids=wanted,
                ground_truth_name=f"COCO annotation file {dataset.annotation_file}"))
        with timer("write_detections_wait"):
            written.result()
    timer.count("detections", len(results))
    write_json_atomic(metrics_path, {"metrics": metrics, "num_images": len(records),
                                     "num_detections": len(results),
                                     "backend": scoring.scorer,
                                     "run": read_manifest(out_dir)})
    return metrics, detections_path, metrics_path


def evaluate(model_entry, model: torch.nn.Module, request: EvaluationRequest) -> EvalResult:
    """Run ``model`` (the network of ``model_entry``, a zoo entry, with its weights) as
    ``request`` says (:class:`~.eval_plan.EvaluationRequest`): over its COCO images, on its
    device, at its batch size, and score it.

    The request's ``test_cfg`` (None: the entry's own) can be the variant a claim was evaluated
    with (``ResolvedModel.test_cfg_for(claim)``); its device and defaults are decided by
    :func:`resolve_request` (a resolved request is kept as it is); with ``timings`` the result
    holds per-stage seconds and counts (module docstring); with an ``artifact`` that backend's
    artifact of ``model`` is evaluated at the batch size instead of the PyTorch model.

    Under torchrun each rank takes its share of the batches and rank 0 merges and scores;
    every rank returns the same result. With a ``shard`` (i, n) this process runs shard i only
    and scores nothing (``merge_shards`` does, once all shards are in one place).
    """
    from tqdm import tqdm

    request = resolve_request(request)
    request = replace(request, test_cfg=request.test_cfg or model_entry.test_cfg)
    start_wall = time.perf_counter()
    dataset = CocoDataset(request.coco_root)
    if dataset.num_classes != model.num_classes:
        raise DatasetError(f"{dataset.annotation_file} has {dataset.num_classes} categories; the "
                           f"model predicts {model.num_classes} classes.")
    records = dataset.select(request.limit)
    rank, world, initialised_here = _distributed_rank(request.device)
    if world > 1 and request.shard is not None:
        raise about("shard", InputError("a shard i/n is for separate machines; under torchrun "
                                        "the ranks are the shards already. Drop one of them."))
    shard = request.shard or (rank, world)
    dev = torch.device(request.device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(dev)
    artifact = request.artifact
    if artifact is not None:  # the artifact runs on its device, the rest on the host
        dev = torch.device("cpu")
    model = model.to(dev).eval()
    out_dir = request.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(model_entry, dataset, records, request, dev.type,
                         weights_fingerprint(model))
    timer = (StageTimer(torch.cuda.synchronize if dev.type == "cuda" else None)
             if request.timings else None)
    try:
        forward = what = None
        if artifact is not None:
            prepared = _prepare_artifact(request, model, model_entry, rank, world)
            manifest = json.loads(json.dumps(manifest | {"device": artifact.device,
                                                         "artifact": prepared.identity}))
            forward, what = prepared.forward, f"the {artifact.label} artifact"
        if rank == 0:
            _check_manifest(out_dir, manifest, create=True)
        _barrier(world)
        if rank != 0:
            _check_manifest(out_dir, manifest, create=False)
        path = _predictions_path(out_dir, shard)
        _drop_partial_tail(path)
        done = read_predictions(out_dir)
        batches = plan_batches(len(records), request.batch_size)[shard[0]::shard[1]]
        todo = [b for b in batches if any(records[i].id not in done for i in b)]
        pipeline = TestPipeline.for_model(model_entry)
        cuda = dev.type == "cuda"
        workers = request.workers
        loader = DataLoader(_Images(records, pipeline), batch_sampler=todo, num_workers=workers,
                            collate_fn=_collate, pin_memory=cuda,
                            prefetch_factor=(4 if cuda else 2) if workers else None)
        total = sum(len(b) for b in todo)
        cudnn = (torch.backends.cudnn.flags(enabled=True, benchmark=False,
                                            deterministic=torch.backends.cudnn.deterministic,
                                            allow_tf32=torch.backends.cudnn.allow_tf32)
                 if cuda else contextlib.nullcontext())
        precision = request.precision
        with tqdm(total=total, unit="img", file=sys.stderr,
                  disable=not request.progress or rank != 0,
                  desc=f"{model_entry.name} shard {shard[0]}/{shard[1]}"
                  if shard[1] > 1 else model_entry.name) as bar, cudnn:
            written: dict[int, list] = {}
            settings = TestSettings.from_test_cfg(request.test_cfg.model_dump())
            job = _Pass(
                forward=forward or _inference_network(model, dev, precision),
                failure=(f"{what} gave NaN or infinite outputs" if what else
                         f"the network gave NaN or infinite outputs ({precision}, {dev})"),
                device=dev, precision=precision, pipeline=pipeline, settings=settings,
                strides=model.arch.strides,
                input_hw=(model_entry.input_size[1], model_entry.input_size[0]),
                cat_ids=dataset.cat_ids, path=path)
            newly = _infer(job, loader, bar, timer, written)
        _barrier(world)
        if request.shard is not None and request.shard[1] > 1:
            return EvalResult({}, len(records), path, None, request.scorer, newly, manifest,
                              _timings(timer, start_wall, newly, workers))
        scoring = ScoreOptions(scorer=request.scorer, workers=request.scoring_workers)
        metrics, detections_path, metrics_path = (
            finalize(out_dir, dataset, records, scoring, timer=timer,
                     known=written if world == 1 else None)
            if rank == 0 else ({}, None, None))
        timings = _timings(timer, start_wall, newly, workers)
        metrics = _broadcast(world, metrics)
        return EvalResult(metrics, len(records), out_dir / DETECTIONS, out_dir / METRICS,
                          request.scorer, newly, manifest, timings)
    finally:
        if initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _prepare_artifact(request: EvaluationRequest, model, entry, rank: int, world: int):
    """The request's artifact, prepared by rank 0 first (a TensorRT engine goes into the cache
    once; the other ranks then load it from there), its ONNX export kept in
    ``out_dir/artifact``."""
    from .artifact import prepare_artifact

    width, height = entry.input_size
    workdir = request.out_dir / "artifact" / (f"rank{rank}" if rank else "")
    if rank != 0:
        _barrier(world)
    prepared = prepare_artifact(request.artifact, model, (height, width), request.batch_size,
                                workdir)
    if rank == 0:
        _barrier(world)
    return prepared


def _timings(timer, start_wall: float, newly: int, workers: int) -> dict | None:
    """Seconds per stage and counts (None when nobody asked)."""
    if timer is None:
        return None
    return {**timer.to_dict(), "wall_s": round(time.perf_counter() - start_wall, 6),
            "newly_inferred": newly, "loader_workers": workers}


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
                 scorer: str = DEFAULT_BACKEND) -> EvalResult:
    """Combine the predictions of the evaluations of shards i/n (same settings) and score them
    once, with ``scorer`` (a COCOeval implementation)."""
    manifests = []
    for d in shard_dirs:
        if not (Path(d) / MANIFEST).is_file():
            raise InputError(f"{d} has no {MANIFEST}: not an rtmbench evaluation directory.")
        manifests.append(read_manifest(Path(d), f"Delete {d} and run that shard again"))
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
    sources = sorted({src.resolve(): src for d in shard_dirs
                      for src in Path(d).glob("predictions.*.jsonl")}.values())
    known: dict[int, list] = {}
    for src in sources:  # every line checked where it is, before anything is written
        read_predictions_file(src, known)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_manifest(out_dir, manifests[0], create=True)
    for src in sources:
        target = out_dir / src.name
        if target.resolve() == src.resolve():
            continue
        if target.exists() and target.read_bytes() != src.read_bytes():
            raise InputError(f"{target} already exists with other content; merge into an "
                             f"empty output directory.")
        write_bytes_atomic(target, src.read_bytes())
    metrics, detections_path, metrics_path = finalize(
        out_dir, dataset, records, ScoreOptions(scorer=scorer, workers=None), known=known)
    return EvalResult(metrics, len(records), detections_path, metrics_path, scorer, 0,
                      manifests[0])
