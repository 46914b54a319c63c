from __future__ import annotations

import pytest
import torch

# Tests import it from here; it lives in models/ (the well-conditioned weights id uses it).
from rtmbench.models.init import well_conditioned_state_dict  # noqa: F401

pytest_plugins = ["tests.fetch_fixtures"]  # cache, blob, server: the download tests' fixtures


def pytest_configure(config):
    from tests.fake_hardware import from_environ

    from_environ()  # a bad RTMBENCH_TEST_FAKE_CORES stops the session with the fix


def pytest_report_header(config):
    from tests.fake_hardware import FAKE_CORES, FAKE_CPU, from_environ

    fake = from_environ()
    if fake is not None:
        return f"rtmbench: hardware description faked ({FAKE_CPU}, {FAKE_CORES}): " \
               f"{fake.describe()}"
    return None


@pytest.fixture(scope="session", autouse=True)
def _fake_hardware():
    """RTMBENCH_TEST_FAKE_CPU / RTMBENCH_TEST_FAKE_CORES: every record of the session says it
    was made on that machine (tests/fake_hardware.py). Session-wide and first, so the session
    fixtures below (the smoke run) record it too."""
    from tests.fake_hardware import from_environ, install

    fake = from_environ()
    if fake is None:
        yield None
        return
    with pytest.MonkeyPatch.context() as patch:
        install(patch, fake)
        yield fake


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


# What a developer's environment could lend a test: a cache holding fetched checkpoints or a
# fetched COCO (box AP would then evaluate the real val2017 where a test expects "not run"),
# a COCO root, mirrors. Every test starts without them; tests that need them set their own.
HOST_SETTINGS = ("RTMBENCH_COCO", "RTMBENCH_COCO_MIRROR", "RTMBENCH_MIRROR", "RTMBENCH_ZOO",
                 "RTMBENCH_OFFLINE")


@pytest.fixture(autouse=True, scope="session")
def _private_cache_for_the_session(tmp_path_factory):
    """Session fixtures (smoke_run) run before any function fixture: isolate them too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RTMBENCH_CACHE", str(tmp_path_factory.mktemp("rtmbench-cache")))
        for var in HOST_SETTINGS:
            patch.delenv(var, raising=False)
        yield


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch, _private_cache_for_the_session):
    """Each test gets an empty RTMBENCH_CACHE of its own (tests/fetch_fixtures.py's ``cache``
    fixture overrides it with one it can name), and none of the host's COCO or mirrors."""
    monkeypatch.setenv("RTMBENCH_CACHE", str(tmp_path_factory.mktemp("rtmbench-cache")))
    for var in HOST_SETTINGS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True, scope="session")
def _no_published_runs(tmp_path_factory):
    """The plan learns durations from the published runs (results/): no test may depend on
    what is committed there, so the runner sees none (tests that need some write their own)."""
    from rtmbench.run import runner

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner, "PUBLISHED", tmp_path_factory.mktemp("no-published-runs"))
        yield


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The records the real checks write: the shipped smoke suite, run once per session.

    Gate and report tests use them (besides hand-made records), so that renaming a metric or
    changing what a check writes cannot leave those tests green.
    """
    from rtmbench.records import read_run
    from rtmbench.run.runner import run_suite
    from rtmbench.spec.suite import load_suite

    results = tmp_path_factory.mktemp("smoke-results")
    summary = run_suite(load_suite("smoke"), run_id="smoke-test", results_dir=results,
                        progress=False)
    run = read_run(summary.path)
    assert not run.problems and len(run.records) == summary.planned
    return summary.path


@pytest.fixture
def shadow_package(monkeypatch, tmp_path):
    """``shadow_package(name, body)``: ``import name`` finds ``tmp_path/name/__init__.py``
    holding ``body`` first (e.g. a broken installation: ``raise ImportError(...)``); the real
    module and its submodules are out of sys.modules until the test ends."""
    import importlib
    import sys
    import textwrap

    def shadow(name: str, body: str):
        root = tmp_path / "shadowed"
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text(textwrap.dedent(body))
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, key)
        monkeypatch.syspath_prepend(str(root))
        importlib.invalidate_caches()
        return root / name

    return shadow
