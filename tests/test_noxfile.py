"""The nox sessions' choice of the gpu extra, tested both ways with a fake ``nvidia-smi`` on
PATH (nothing is installed)."""

from __future__ import annotations

import importlib.util
import os
import stat
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def noxfile():
    pytest.importorskip("nox")
    spec = importlib.util.spec_from_file_location("rtmbench_noxfile", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _fake_smi(tmp_path: Path, output: str, code: int = 0) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\ncat <<'OUT'\n{output}\nOUT\nexit {code}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def test_a_listed_gpu_installs_the_gpu_extra(noxfile, tmp_path, monkeypatch):
    bin_dir = _fake_smi(tmp_path, "GPU 0: NVIDIA H200 (UUID: GPU-1234)")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    gpu, why = noxfile.gpu_extra_choice({})
    assert gpu is True
    assert "NVIDIA H200" in why and "installing the gpu extra" in why
    assert noxfile.extras(gpu) == f"{noxfile.EXTRAS},gpu"


@pytest.mark.parametrize("output,code", [("", 0), ("NVIDIA-SMI has failed because it couldn't "
                                                   "communicate with the NVIDIA driver", 9)])
def test_no_listed_gpu_installs_no_gpu_extra(noxfile, tmp_path, monkeypatch, output, code):
    bin_dir = _fake_smi(tmp_path, output, code)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    gpu, why = noxfile.gpu_extra_choice({})
    assert gpu is False and "CPU-only" in why
    assert noxfile.extras(gpu) == noxfile.EXTRAS


def test_no_nvidia_smi_at_all(noxfile, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert noxfile.gpu_extra_choice({})[0] is False


def test_the_switch_forces_either_choice(noxfile, tmp_path, monkeypatch):
    bin_dir = _fake_smi(tmp_path, "GPU 0: NVIDIA H200 (UUID: GPU-1234)")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    assert noxfile.gpu_extra_choice({"RTMBENCH_GPU_EXTRA": "0"})[0] is False
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert noxfile.gpu_extra_choice({"RTMBENCH_GPU_EXTRA": "1"})[0] is True
    with pytest.raises(ValueError, match="RTMBENCH_GPU_EXTRA='maybe'"):
        noxfile.gpu_extra_choice({"RTMBENCH_GPU_EXTRA": "maybe"})


def test_the_install_key_includes_the_choice(noxfile):
    assert noxfile._install_key(True) != noxfile._install_key(False)
