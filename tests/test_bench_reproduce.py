"""benchmarks/bench_reproduce_gpu.py keeps working: its CPU path on a few images, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_evaluation import small_zoo

REPO = Path(__file__).resolve().parents[1]


def test_reproduce_benchmark_runs_on_cpu_and_writes_its_fields(tmp_path):
    out = tmp_path / "reproduce.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_reproduce_gpu.py"), "--device", "cpu",
           "--images", "2", "--sizes", "tiny", "--zoo", str(small_zoo(tmp_path)),
           "--batch-size", "2", "--workers", "1", "--latency-backends", "torch",
           "--latency-iterations", "3", "--latency-duration", "0.01", "--latency-warmup", "0.01",
           "--before-images", "1", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| tiny |" in done.stdout and "full table" in done.stdout
    report = json.loads(out.read_text())
    assert report["gpu"] is None and report["device"] == "cpu" and report["complete"]
    assert report["projected"] is True and report["images_measured"] == 2
    assert report["total_wall_s"] > 0 and report["run_wall_s"] > 0
    assert report["data_generation"]["images"] == 2
    tiny = report["sizes"]["tiny"]
    assert set(tiny["eval"]) == {"pre-pr9494", "default"}
    for ws, e in tiny["eval"].items():
        assert e["images"] == 2 and e["images_per_s"] > 0
        assert e["stage_seconds"]["forward"] > 0 and "score" in e["stage_seconds"]
        assert e["test_cfg"]["nms_pre"] == (1000 if ws == "pre-pr9494" else 30000)
        assert tiny["before"][ws]["images"] == 1 and tiny["before"][ws]["stage_seconds"]["forward"]
    assert tiny["eval_images_per_s"] > 0 and tiny["stage_seconds"]["forward"] > 0
    lat = tiny["latency_ms"]["torch"]["fp32"]
    assert lat["status"] == "measured" and lat["median_ms"] > 0 and lat["reference_median_ms"] > 0
    full = report["full_table"]
    assert set(full["per_size_s"]) == {"tiny", "s", "m", "l", "x"}
    assert full["basis"]["x/default"].startswith("projected")
    assert full["basis"]["tiny/default"].startswith("measured")
