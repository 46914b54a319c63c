"""Write the smoke suite's golden detections (suites/baselines/smoke-detections.json).

The smoke gate scores each run's detections against these (agreement AP, see
rtmbench.measure.agreement): regenerate them only when a change to the detection pipeline is
*meant* to change detections, and say why in the commit.

    python tools/make_smoke_golden.py [--suite suites/smoke.yaml]

It evaluates exactly what the suite's box_ap check evaluates (the same generated images,
weights, batch size and test settings) and keeps the best 100 detections per image.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rtmbench.fileio import write_bytes_atomic
from rtmbench.measure.agreement import top_per_image
from rtmbench.measure.eval_plan import EvaluationRequest
from rtmbench.measure.evaluation import evaluate
from rtmbench.run.build import build
from rtmbench.run.checks import CheckContext, golden_path, resolve_dataset
from rtmbench.spec.suite import load_suite
from rtmbench.spec.zoo import load_zoo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="suites/smoke.yaml")
    args = parser.parse_args(argv)
    zoo = load_zoo()
    suite = load_suite(args.suite, zoo)
    spec = dict(suite.enabled_checks())["box_ap"]
    if spec.golden is None or spec.synthetic is None:
        print(f"{args.suite}: its box_ap check names no golden file or uses no generated "
              f"data", file=sys.stderr)
        return 2
    (model_name,) = suite.models
    entry = zoo.get(model_name)
    weights = spec.weights if isinstance(spec.weights, str) else spec.weights[0]
    with tempfile.TemporaryDirectory() as tmp:
        ctx = CheckContext(suite, Path(tmp), {}, progress=False)
        root, described = resolve_dataset(spec, Path(tmp))
        cfg_name, test_cfg = entry.evaluation_test_cfg(weights)
        result = evaluate(entry, build(entry, weights).model, EvaluationRequest(
            root, Path(tmp) / "e", batch_size=spec.batch_size, workers=spec.workers,
            progress=False, test_cfg=test_cfg))
        detections = json.loads(result.detections_path.read_text())
        out = golden_path(spec, ctx)
    data = {"about": "golden detections of the smoke suite's box_ap check; written by "
                     "tools/make_smoke_golden.py", "model": entry.name, "weights": weights,
            "dataset": described, "batch_size": spec.batch_size, "test_cfg": cfg_name,
            "top_k": 100, "detections": top_per_image(detections)}
    head = json.dumps({k: v for k, v in data.items() if k != "detections"}, indent=1)[:-2]
    rows = ",\n".join(json.dumps(d, sort_keys=True) for d in data["detections"])
    write_bytes_atomic(out, f'{head},\n "detections": [\n{rows}\n]}}\n'.encode())
    out.chmod(0o644)
    print(f"wrote {out}: {len(data['detections'])} detections on {result.num_images} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
