from __future__ import annotations

import pytest
import torch

# Tests import it from here; it lives in models/ (the well-conditioned weights id uses it).
from rtmbench.models.init import well_conditioned_state_dict  # noqa: F401

pytest_plugins = ["tests.fetch_fixtures"]  # cache, blob, server: the download tests' fixtures


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
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
