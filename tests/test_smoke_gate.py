"""The smoke gate catches a broken detection pipeline: each one-line change below makes the
smoke suite's detections disagree with the golden ones and turns `rtmbench gate` red.

The agreement threshold (0.99, suites/smoke.yaml) was chosen from measured noise: the same
code gives agreement 1.0 with 1 or 2 threads, batch 1, 4 or 8, oneDNN's SSE4.1, AVX2 or AVX-512
kernels or oneDNN off; these mutations give 0.39 to 0.84.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import cv2
import pytest
import torch

from rtmbench.judge.gate import compare
from rtmbench.records import read_run
from rtmbench.run.runner import run_suite
from rtmbench.spec.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def box_ap_suite(tmp_path):
    """The smoke suite's box_ap check alone (same data, weights, golden, threshold)."""
    smoke = (ROOT / "suites" / "smoke.yaml").read_text()
    box_ap = smoke[smoke.index("  box_ap:"):smoke.index("tolerances:")]
    (tmp_path / "baselines").mkdir()
    shutil.copy(ROOT / "suites" / "baselines" / "smoke-detections.json", tmp_path / "baselines")
    path = tmp_path / "suite.yaml"
    path.write_text("name: smoke-box-ap\nmodels: [tiny]\nchecks:\n" + box_ap
                    + textwrap.dedent(f"""\
                        tolerances:
                          box_ap: {{absolute: 0.1}}
                        results_dir: {tmp_path / "results"}
                        """))
    return load_suite(path)


def _gate(suite, run_id: str):
    run = read_run(run_suite(suite, run_id=run_id, progress=False).path)
    rows = compare(run, None, suite)
    row = next((r for r in rows if "agreement" in r.metric), None)
    assert row is not None, f"no agreement row (did the run fail?): {rows}"
    return row, rows


def test_the_unchanged_pipeline_agrees_exactly(box_ap_suite):
    row, rows = _gate(box_ap_suite, "unchanged")
    assert not any(r.regression for r in rows), rows
    assert row.measured == "1.0000" and "≥ 0.99" in row.verdict


def _no_clip(points, distances, clip_hw):
    return torch.stack([points[..., 0] - distances[..., 0], points[..., 1] - distances[..., 1],
                        points[..., 0] + distances[..., 2], points[..., 1] + distances[..., 3]],
                       -1)


def _mutate(monkeypatch, which: str) -> None:
    pipeline = sys.modules["rtmbench.data.pipeline"]
    post = sys.modules["rtmbench.models.postprocess"]
    if which == "nearest resize":
        monkeypatch.setitem(pipeline.INTERPOLATION, "bilinear", cv2.INTER_NEAREST)
    elif which == "pad value 0":
        monkeypatch.setattr(pipeline.TestPipeline, "__init__", _patched_init(pad_value=0))
    elif which == "RGB instead of BGR":
        monkeypatch.setattr(pipeline.TestPipeline, "__init__", _patched_init(to_rgb=True))
    elif which == "no clip to the padded canvas":
        monkeypatch.setattr(post, "distance_to_boxes", _no_clip)
    elif which == "NMS IoU 0.6":
        settings = post.TestSettings.from_test_cfg

        def iou_06(cls, cfg):
            return settings({**dict(cfg), "nms_iou": 0.6})

        monkeypatch.setattr(post.TestSettings, "from_test_cfg", classmethod(iou_06))


def _patched_init(**change):
    original = sys.modules["rtmbench.data.pipeline"].TestPipeline.__init__

    def init(self, input_size, pipeline):
        original(self, input_size, pipeline.model_copy(update=change))

    return init


@pytest.mark.parametrize("which", ["nearest resize", "pad value 0", "RGB instead of BGR",
                                   "no clip to the padded canvas", "NMS IoU 0.6"])
def test_a_one_line_pipeline_change_fails_the_gate(box_ap_suite, monkeypatch, which):
    _mutate(monkeypatch, which)
    row, _ = _gate(box_ap_suite, which.replace(" ", "-"))
    assert row.regression, (which, row)
    assert "< 0.99: the detections changed" in row.verdict


@pytest.mark.parametrize(("text", "words"), [
    ('{"detections": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": NaN}]}',
     ["entry 0", "score"]),
    ('{"detections": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}]}',
     ["entry 0", "bbox"]),
    ('{"detections": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}, 7]}',
     ["entry 1"]),
    ('{"detections": [{"image_id": 1, "categ', ["not valid JSON", "line 1"]),
    ("\udcff", ["cannot be read"]),
])
def test_damaged_golden_detections_name_the_file_entry_and_fix(tmp_path, text, words):
    from rtmbench.errors import InputError
    from rtmbench.measure.agreement import load_golden

    path = tmp_path / "golden.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(InputError) as info:
        load_golden(path)
    message = str(info.value)
    assert f"golden detections {path}" in message and all(w in message for w in words), message
    assert "tools/make_smoke_golden.py" in message, message
