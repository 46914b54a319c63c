"""The evaluation loop as it was before issue 11, timed stage by stage, for before/after figures
measured in the same run.

``evaluation_before_issue11.py`` beside this file is ``src/rtmbench/measure/evaluation.py`` at
commit 894d877, unchanged: per-image post-processing, the model as given (fp32, BN not
folded), predictions written in the loop, scoring in one process after detections.json. It is
loaded as a module of the current package (its relative imports resolve to today's data,
models and scoring code; its ``score(..., backend=, image_ids=)`` calls go through today's
``ScoreOptions``, one process, as its default was). Its
stages are timed from outside: forward hooks on the model, wrappers around its module-level
``postprocess``, ``_to_coco_rows``, ``_append_lines``, ``read_predictions``, ``score`` and
``write_json_atomic``, each synchronised on CUDA; what is left of the wall time is waiting for
the loader and everything between.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import torch

MODULE = "rtmbench.measure._evaluation_before_issue11"


def load_module():
    if MODULE in sys.modules:
        return sys.modules[MODULE]
    import rtmbench.measure  # noqa: F401 - the parent package of the relative imports

    spec = importlib.util.spec_from_file_location(
        MODULE, Path(__file__).with_name("evaluation_before_issue11.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE] = module
    spec.loader.exec_module(module)
    module.score = _score_with_keywords  # its calls, in today's scoring interface
    return module


def _score_with_keywords(ground_truth, detections, *, backend: str, image_ids=None):
    """``score(..., backend=, image_ids=)`` as the old loop calls it, through today's
    :class:`ScoreOptions` (one process, as its default was)."""
    from rtmbench.measure.scoring import ScoreOptions, score

    return score(ground_truth, detections, ScoreOptions(scorer=backend, image_ids=image_ids))


def evaluate_before(entry, coco: Path, *, model: torch.nn.Module, out_dir: Path, batch_size: int,
                    workers: int, device: str, test_cfg, limit: int | None = None,
                    timings: dict | None = None):
    """The pre-issue-11 ``evaluate()``; ``timings`` (if given) gets stage seconds."""
    legacy = load_module()
    seconds: dict[str, float] = {}
    cuda = torch.device(device).type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def timed(name: str, fn):
        def wrapper(*args, **kwargs):
            sync()
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync()
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    originals = {name: getattr(legacy, name) for name in
                 ("postprocess", "_to_coco_rows", "_append_lines", "read_predictions", "score",
                  "write_json_atomic")}
    stage_of = {"postprocess": "postprocess", "_to_coco_rows": "d2h_and_rows",
                "_append_lines": "write_predictions", "read_predictions": "read_predictions",
                "score": "score", "write_json_atomic": "write_detections_json"}
    clock: dict[str, float] = {}

    def before_forward(module, inputs):
        sync()
        clock["forward"] = time.perf_counter()

    def after_forward(module, inputs, output):
        sync()
        seconds["forward"] = seconds.get("forward", 0.0) + time.perf_counter() - clock["forward"]

    hooks = [model.register_forward_pre_hook(before_forward),
             model.register_forward_hook(after_forward)]
    for name, fn in originals.items():
        setattr(legacy, name, timed(stage_of[name], fn))
    start = time.perf_counter()
    try:
        result = legacy.evaluate(entry, coco, model=model, out_dir=out_dir, limit=limit,
                                 batch_size=batch_size, workers=workers, device=device,
                                 progress=False, test_cfg=test_cfg)
    finally:
        wall = time.perf_counter() - start
        for name, fn in originals.items():
            setattr(legacy, name, fn)
        for hook in hooks:
            hook.remove()
    if timings is not None:
        seconds["loader_wait_and_other"] = max(0.0, wall - sum(seconds.values()))
        timings.update({"stages_s": {k: round(v, 6) for k, v in seconds.items()},
                        "wall_s": round(wall, 6), "newly_inferred": result.newly_inferred,
                        "loader_workers": workers})
    return result
