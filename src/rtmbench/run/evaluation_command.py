"""``rtmbench evaluate``, ``merge`` and ``score`` as library calls: the command line parses
their flags and prints what these return (:mod:`rtmbench.cli`).

``evaluate`` checks every input before torch is imported (seconds) and before any weights are
fetched: the zoo entry, the COCO directory, the request's settings
(:class:`~rtmbench.measure.eval_plan.EvaluationRequest`, with a suite's bounds), the weights,
the test settings, whether the asked backend runs here, the output directory; then decides the
device and its defaults (:func:`~rtmbench.measure.evaluation.resolve_request`, the same as a
suite's box AP units), builds the model and evaluates. An error about one of the request's
settings names its flag (``--batch-size: the batch size must be ...``).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import RtmbenchError
from ..measure.eval_plan import EvaluationRequest, check_out_dir, parse_shard, setting_of
from ..measure.scoring import DEFAULT_BACKEND as DEFAULT_SCORER
from .weights_choice import WeightsChoice, weights_notice

# The flag of each request setting, added to an error about it.
FLAGS = {"coco_root": "--coco", "out_dir": "--out", "limit": "--limit",
         "test_cfg": "--test-cfg", "device": "--device", "precision": "--precision",
         "batch_size": "--batch-size", "workers": "--workers", "artifact": "--backend",
         "shard": "--shard", "scorer": "--scorer", "timings": "--timings",
         "progress": "--no-progress"}

Say = Callable[[str], None]


@contextlib.contextmanager
def flags_named() -> Iterator[None]:
    """An error about a request setting (:func:`~rtmbench.measure.eval_plan.setting_of`) is
    raised again, the same error, with its flag in front: ``--batch-size: ...``."""
    try:
        yield
    except RtmbenchError as exc:
        flag = FLAGS.get(setting_of(exc) or "")
        if flag and len(exc.args) == 1 and not str(exc).startswith(flag):
            exc.args = (f"{flag}: {exc}",)
        raise


@dataclass(frozen=True)
class EvaluateOptions:
    """What ``rtmbench evaluate`` was asked, flag by flag."""

    size: str
    zoo: str | None = None
    coco: str | None = None
    weights: WeightsChoice = field(default_factory=WeightsChoice)
    test_cfg: str | None = None  # a zoo test-settings name; None: what the weights used
    limit: int | None = None
    batch_size: int | None = None
    workers: int | None = None
    precision: str = "fp32"
    device: str = "auto"
    shard: str | None = None  # "i/n"
    out: str | None = None
    scorer: str = DEFAULT_SCORER
    backend: str | None = None  # an inference backend: evaluate its artifact
    backend_options: dict[str, Any] = field(default_factory=dict)
    timings: bool = False
    progress: bool = True


@dataclass
class Evaluated:
    """An evaluation the command ran: its zoo entry, request and result."""

    entry: Any
    request: EvaluationRequest
    result: Any  # rtmbench.measure.evaluation.EvalResult
    shard: str | None = None  # as the user wrote it

    @property
    def reported_here(self) -> bool:
        """Under torchrun only rank 0 prints the result (every rank has it)."""
        return int(os.environ.get("RANK", "0")) == 0

    def to_json(self) -> str:
        return json.dumps(self.result.to_dict())

    def text(self) -> str:
        from ..measure.scoring import format_metrics

        result, artifact = self.result, self.request.artifact
        if not result.metrics:
            return (f"{self.entry.name}: shard {self.shard} done ({result.num_images} images in "
                    f"the evaluation); combine the shards with `rtmbench merge`.")
        return (f"{self.entry.name}{f' ({artifact.label} artifact)' if artifact else ''}: "
                f"{result.num_images} images, detections in {result.detections_path}, "
                f"metrics in {result.metrics_path}\n" + format_metrics(result.metrics))


def artifact_spec(backend: str, device: str, precision: str, options: dict[str, Any]) -> Any:
    """The :class:`~rtmbench.measure.artifact.ArtifactSpec` of ``backend`` at ``device``
    (auto: cuda where there is a GPU and this backend runs there, else cpu; cuda:N: cuda) and
    ``precision``; :class:`~rtmbench.measure.backends.BackendUnavailable` (exit 3, "not run")
    where it cannot run here, before any weights are fetched."""
    from ..measure.artifact import ArtifactSpec
    from ..measure.backends import BackendUnavailable, get_backend

    device = str(device).split(":")[0]
    if device == "auto":
        on_cuda = get_backend(backend, **options).unavailable("cuda", precision)
        device = "cpu" if on_cuda else "cuda"
    spec = ArtifactSpec(backend, device, precision, options)
    if reason := get_backend(spec.backend, **spec.options).unavailable(device, precision):
        raise BackendUnavailable(reason)
    return spec


def evaluate_command(options: EvaluateOptions, say: Say) -> Evaluated:
    """Check, build the request and the model, evaluate; ``say`` gets each line for stderr
    (what runs where, which weights, the stage timings)."""
    with flags_named():
        return _evaluate_command(options, say)


def _evaluate_command(options: EvaluateOptions, say: Say) -> Evaluated:
    from ..data import check_coco_root, resolve_coco_root
    from ..spec.zoo import load_zoo

    # every input is checked before torch is imported (seconds) and weights are fetched
    entry = load_zoo(options.zoo).get(options.size)
    coco = check_coco_root(resolve_coco_root(options.coco))
    shard = parse_shard(options.shard) if options.shard else None
    request = EvaluationRequest(  # its settings checked; the artifact's output folder below
        coco_root=coco, out_dir=Path(options.out or "."), limit=options.limit,
        device=options.device, precision=options.precision, batch_size=options.batch_size,
        workers=options.workers, shard=shard, scorer=options.scorer, timings=options.timings,
        progress=options.progress)
    options.weights.check(entry)
    weights = options.weights
    cfg_name, test_cfg = entry.evaluation_test_cfg(
        "file" if weights.checkpoint else weights.weights, options.test_cfg)
    artifact = (artifact_spec(options.backend, options.device, options.precision,
                              options.backend_options)
                if options.backend else None)  # exit 3 where it cannot run, before downloads
    default_out = entry.name + (f"-{artifact.label.replace('/', '-')}" if artifact else "")
    out = Path(options.out) if options.out else Path("results") / "eval" / default_out
    check_out_dir(out)
    request = replace(request, out_dir=out, test_cfg=test_cfg, artifact=artifact)
    from ..measure.evaluation import evaluate, resolve_request

    request = resolve_request(request)  # a missing GPU too: before any download
    say(f"test settings {cfg_name!r}: {test_cfg}")
    say(f"on {request.device}, {request.precision}, batch {request.batch_size}, "
        f"{request.workers} loader worker(s)")
    if artifact:
        say(f"the {artifact.label} artifact at batch {request.batch_size} (what `rtmbench "
            f"latency {options.size} --backend {artifact.backend} --device {artifact.device} "
            f"--precision {artifact.precision} --batch {request.batch_size}` times; a short "
            f"last batch is padded, its padding's outputs dropped)")
    built = weights.build(entry, progress=options.progress)
    say(weights_notice(built.provenance))
    result = evaluate(entry, built.model, request)
    if result.timings is not None:
        say("stage timing " + json.dumps(result.timings))
    return Evaluated(entry, request, result, options.shard)


def merge_command(shard_dirs: list[str], coco: str | None, out: str,
                  scorer: str = DEFAULT_SCORER) -> Any:
    """The shards' predictions combined into ``out`` and scored (an EvalResult)."""
    from ..data import resolve_coco_root
    from ..measure.evaluation import merge_shards

    with flags_named():
        return merge_shards([Path(d) for d in shard_dirs], resolve_coco_root(coco), Path(out),
                            scorer=scorer)


def merged_text(result: Any, shards: int) -> str:
    from ..measure.scoring import format_metrics

    return (f"merged {shards} shard directories: {result.num_images} images, metrics in "
            f"{result.metrics_path}\n" + format_metrics(result.metrics))


def score_command(annotations: str, detections: str, scorer: str = DEFAULT_SCORER,
                  convention: str | None = None) -> dict[str, dict[str, float]]:
    """The 12 COCO box numbers of a detections file (one convention, or both)."""
    from ..measure.scoring import ScoreOptions, load_detections, score

    found = load_detections(detections)
    options = ScoreOptions(scorer=scorer, detections_name=f"detections file {detections}")
    if convention:
        options = replace(options, conventions=[convention])
    return score(annotations, found, options)
