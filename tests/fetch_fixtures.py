"""What the download tests share (tests/test_checkpoints.py, tests/test_sources.py): fast
fetch settings, a random checkpoint-like blob, a cache with every network setting of the
environment cleared (loopback servers only: no proxy, mirror, CA bundle or Hub endpoint of the
machine running the tests may see or change these requests), and a loopback server. Loaded for
every test module by tests/conftest.py's ``pytest_plugins``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from rtmbench.sources import FetchSettings
from tests.http_server import LoopbackServer

FAST = FetchSettings(connect_timeout=2.0, read_timeout=2.0, retries=1, backoff=0.01,
                     lock_timeout=60.0)
SRC = str(Path(__file__).resolve().parents[1] / "src")
NETWORK_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                "https_proxy", "all_proxy", "no_proxy", "RTMBENCH_MIRROR", "RTMBENCH_OFFLINE",
                "RTMBENCH_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HF_ENDPOINT",
                "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE")


def make_blob(size: int = 300_000, seed: int = 1) -> tuple[str, bytes, str]:
    data = np.random.default_rng(seed).bytes(size)
    sha = hashlib.sha256(data).hexdigest()
    return f"blob_{seed}-{sha[:8]}.pth", data, sha


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("RTMBENCH_CACHE", str(root))
    for var in NETWORK_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return root


@pytest.fixture
def blob():
    return make_blob()


@pytest.fixture
def server(blob):
    name, data, _ = blob
    with LoopbackServer({name: data}) as srv:
        yield srv
