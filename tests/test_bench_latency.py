"""benchmarks/bench_latency.py keeps working: one short round of the CPU backends it compares
(figures from it are meaningless here: this only checks the script and its summary fields)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # two configurations, each in its own process with its reference conv
def test_latency_benchmark_compares_the_cpu_backends(tmp_path):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_latency.py"), "--size", "tiny",
           "--input-size", "64", "64", "--rounds", "1", "--warmup", "0", "--iterations", "2",
           "--min-duration", "0", "--retries", "0", "--pause", "0",
           "--configs", "onnxruntime", "openvino", "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: a target missed (not judged here)
    summary = json.loads(out.read_text())
    assert set(summary["configs"]) == {"onnxruntime", "openvino"}
    round_ = summary["rounds"][0]
    assert round_["fastest"] in ("onnxruntime", "openvino")
    assert 0 < round_["fastest_fraction_of_best_conv"] and round_["openvino_median_ms"] > 0
    assert "fastest_fraction_of_conv_peak" in summary["targets"]
    details = round_["per_config"]["openvino"]["details"]
    assert details["inference_precision_hint"] == "f32"
