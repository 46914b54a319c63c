from __future__ import annotations

import pytest
import torch

# Tests import it from here; it lives in models/ (the well-conditioned weights id uses it).
from rtmbench.models.well_conditioned import well_conditioned_state_dict  # noqa: F401


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield
