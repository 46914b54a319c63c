"""What an evaluation will run, decided without torch: its request checked, its shard parsed,
its batches planned. ``rtmbench evaluate`` and the box AP check build an
:class:`EvaluationRequest` before importing the evaluation (torch takes seconds to import; a
wrong setting is said at once).

A request is checked when it is made, with the bounds a suite's box_ap check has
(:class:`rtmbench.spec.check_specs.BoxAPSpec`) (its output directory on disk by
:func:`check_out_dir`); a setting out of them is an InputError naming
the setting in words ("batch size", "shard i/n"), never a command-line flag, and carrying the
request's field name as ``error.setting`` (:func:`setting_of`) so that a command can add its
flag. Which device ``auto`` is and the defaults suited to it are decided once, with torch, by
:func:`rtmbench.measure.evaluation.resolve_request`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError, RtmbenchError
from ..spec.check_specs import MAX_BATCH, MAX_IMAGES, MAX_WORKERS
from .scoring import BACKENDS as SCORERS
from .scoring import DEFAULT_BACKEND as DEFAULT_SCORER

if TYPE_CHECKING:
    from ..spec.zoo import TestCfg
    from .artifact import ArtifactSpec

PRECISIONS = ("fp32", "fp16")
DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


def about(setting: str, error: RtmbenchError) -> RtmbenchError:
    """``error``, marked as being about the request's field ``setting`` (see
    :func:`setting_of`); its class, and so its exit code and outcome, unchanged."""
    error.setting = setting  # type: ignore[attr-defined]
    return error


def setting_of(error: BaseException) -> str | None:
    """The request field an error is about (:func:`about`), or None."""
    return getattr(error, "setting", None)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class EvaluationRequest:
    """One COCO box AP evaluation, everything :func:`rtmbench.measure.evaluation.evaluate`
    needs besides the model entry and the network with its weights.

    - ``coco_root``: a COCO directory (annotations/instances_val2017.json, val2017/);
      ``limit``: its first N images by id (None: all);
    - ``out_dir``: where run.json, the predictions, detections.json and metrics.json go; a
      rerun with the same request resumes there;
    - ``test_cfg``: the zoo's test-time settings (None: the model entry's own);
    - ``device``: auto (cuda where torch sees a GPU, else cpu), cpu, cuda or cuda:N;
      ``precision``: fp32, or fp16 (cuda only);
    - ``batch_size``: images per forward (None: suited to the device; 1 for an artifact);
      ``workers``: data-loader processes (None: suited to the device and the machine);
    - ``artifact``: evaluate this backend's artifact (:class:`~.artifact.ArtifactSpec`)
      instead of the PyTorch model; its device and precision are the evaluation's;
    - ``shard``: (i, n), run shard i of n only and score nothing (None: everything; under
      torchrun the ranks are the shards);
    - ``scorer``: the COCOeval implementation (:data:`SCORERS`); ``scoring_workers``: its
      processes (None: :func:`rtmbench.measure.scoring.scoring_workers` decides);
    - ``timings``: time every stage (the result's ``timings``); ``progress``: a progress bar.
    """

    coco_root: Path
    out_dir: Path
    limit: int | None = None
    test_cfg: TestCfg | None = None
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int | None = None
    workers: int | None = None
    artifact: ArtifactSpec | None = None
    shard: tuple[int, int] | None = None
    scorer: str = DEFAULT_SCORER
    scoring_workers: int | None = None
    timings: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "coco_root", Path(self.coco_root))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.shard is not None:
            object.__setattr__(self, "shard", tuple(self.shard))
        for check in (_check_data, _check_device, _check_sizes, _check_artifact, _check_shard,
                      _check_scoring, _check_switches):
            check(self)

    @property
    def resolved(self) -> bool:
        """Whether the device and its defaults are decided (``resolve_request``)."""
        return self.device != "auto" and self.batch_size is not None and self.workers is not None

    @property
    def device_type(self) -> str:
        """cpu or cuda (auto: not decided yet)."""
        return self.device.split(":")[0]


def _check_data(request: EvaluationRequest) -> None:
    limit = request.limit
    if limit is not None and not (_whole(limit) and 1 <= limit <= MAX_IMAGES):
        raise about("limit", InputError(f"the image limit must be 1 to {MAX_IMAGES} images, "
                                        f"got {limit!r}."))


def _check_device(request: EvaluationRequest) -> None:
    device, precision = request.device, request.precision
    if not isinstance(device, str) or not DEVICE.fullmatch(device):
        raise about("device", InputError(f"the device must be auto, cpu, cuda or cuda:N, got "
                                         f"{device!r}."))
    if precision not in PRECISIONS:
        raise about("precision", InputError(f"unknown precision {precision!r}; use fp32 or "
                                            f"fp16."))
    if precision != "fp32" and device == "cpu":
        raise about("precision", InputError("precision fp16 needs device cuda: CPU evaluation "
                                            "runs in fp32."))


def _check_sizes(request: EvaluationRequest) -> None:
    batch, workers = request.batch_size, request.workers
    if batch is not None and not (_whole(batch) and 1 <= batch <= MAX_BATCH):
        raise about("batch_size", InputError(f"the batch size must be 1 to {MAX_BATCH} images, "
                                             f"got {batch!r}."))
    if workers is not None and not (_whole(workers) and 0 <= workers <= MAX_WORKERS):
        raise about("workers", InputError(f"the data-loader workers must be 0 to {MAX_WORKERS}, "
                                          f"got {workers!r}."))


def _check_artifact(request: EvaluationRequest) -> None:
    """An artifact is evaluated at its own device and precision."""
    artifact = request.artifact
    if artifact is None:
        return
    device = request.device_type if request.device != "auto" else artifact.device
    if (artifact.device, artifact.precision) != (device, request.precision):
        raise about("artifact", InputError(
            f"the artifact {artifact.label} is evaluated with device {artifact.device} and "
            f"precision {artifact.precision}; pass those (got {request.device}, "
            f"{request.precision})."))


def _check_shard(request: EvaluationRequest) -> None:
    shard = request.shard
    if shard is None:
        return
    if not (len(shard) == 2 and all(_whole(v) for v in shard) and 0 <= shard[0] < shard[1]):
        raise about("shard", InputError(f"a shard i/n needs whole numbers 0 <= i < n, got "
                                        f"{shard!r}."))


def _check_scoring(request: EvaluationRequest) -> None:
    if request.scorer not in SCORERS:
        raise about("scorer", InputError(f"unknown scorer {request.scorer!r}; use one of "
                                         f"{', '.join(SCORERS)}."))
    workers = request.scoring_workers
    if workers is not None and not (_whole(workers) and workers >= 1):
        raise about("scoring_workers", InputError(f"the scoring workers must be 1 or more, got "
                                                  f"{workers!r}."))


def _check_switches(request: EvaluationRequest) -> None:
    for name in ("timings", "progress"):
        if not isinstance(getattr(request, name), bool):
            raise about(name, InputError(f"{name} is true or false, got "
                                         f"{getattr(request, name)!r}."))


def check_out_dir(out_dir: Path) -> None:
    """An output directory that is a file is refused (the request's values are checked when it
    is made; this looks at the disk, when the caller knows its final output directory)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise about("out_dir", InputError(f"the output directory {out_dir} is a file; give a "
                                          f"directory for the evaluation's outputs."))


def plan_batches(num_images: int, batch_size: int) -> list[list[int]]:
    return [list(range(i, min(i + batch_size, num_images)))
            for i in range(0, num_images, batch_size)]


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n), 0 <= i < n; else an InputError about the shard."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        index = count = -1
    if not 0 <= index < count:
        raise about("shard", InputError(f"a shard is i/n with 0 <= i < n (e.g. 0/4), got "
                                        f"{text!r}."))
    return index, count

