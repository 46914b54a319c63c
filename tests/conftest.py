from __future__ import annotations

import pytest
import torch


def well_conditioned_state_dict(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights whose activations stay O(1) through every size, yet for which a wrong BN
    eps or a missing block shows: running variances are small and varied (1e-3..1e-2, so eps
    1e-3 vs 1e-5 changes outputs by ~20%), BN scales compensate per channel, convs are scaled
    by fan-in, and the box regressor is small so MMDetection's exp() cannot overflow."""
    g = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    out = {}
    for key, value in state.items():
        if not value.dtype.is_floating_point:
            out[key] = value.clone()
        elif key.endswith("running_var"):
            out[key] = torch.rand(value.shape, generator=g) * 9e-3 + 1e-3
        elif key.endswith("running_mean"):
            out[key] = torch.randn(value.shape, generator=g) * 0.05
        elif key.endswith("bn.bias"):
            out[key] = torch.randn(value.shape, generator=g) * 0.1
        elif value.dim() == 4:
            fan_in = value.shape[1] * value.shape[2] * value.shape[3]
            gain = 0.1 if ".rtm_reg." in key else 1.0
            out[key] = torch.randn(value.shape, generator=g) * gain / fan_in ** 0.5
        else:
            out[key] = torch.randn(value.shape, generator=g) * 0.1
    for key in out:  # BN weight = sqrt(var) * U(0.5, 1.5): normalised scale stays near 1
        if key.endswith("bn.weight"):
            var = out[key.replace("weight", "running_var")]
            out[key] = var.sqrt() * (torch.rand(var.shape, generator=g) + 0.5)
    return out


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
