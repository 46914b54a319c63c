"""Where a measurement came from: code version, packages, hardware, date."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("rtmbench", "torch", "torchvision", "numpy", "mmengine", "onnx", "onnxruntime",
            "onnxruntime-gpu", "openvino", "tensorrt", "pycocotools", "faster-coco-eval",
            "opencv-python-headless")


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """Commit of the checkout the package runs from; ``dirty`` counts tracked changes only."""
    cwd = cwd or Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"commit": commit, "dirty": bool(status)}


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    torch = sys.modules.get("torch")
    if torch is None:
        import torch
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def hardware() -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "cores": cores, "gpu": gpu_name(),
            "machine": platform.machine(), "os": f"{platform.system()} {platform.release()}"}


def run_provenance() -> dict[str, Any]:
    """Everything that is the same for every record of one run (the date is per record)."""
    return {"git": git_state(), "packages": package_versions(), "hardware": hardware()}
