"""The layout stays readable: one module per concept, no two modules of the same name, and a
renamed module still importable under its old name (with a warning naming the new one)."""

from __future__ import annotations

import importlib
import warnings
from collections import Counter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "rtmbench"

RENAMED = {
    "rtmbench.spec.checks": "rtmbench.spec.check_specs",
    "rtmbench.spec.datasets": "rtmbench.spec.fetched_datasets",
    "rtmbench.sources.errors": "rtmbench.sources.fetch_errors",
    "rtmbench.records.model": "rtmbench.records.record",
    "rtmbench.records.plan": "rtmbench.records.suite_units",
    "rtmbench.run.model": "rtmbench.run.build",
    "rtmbench.measure.backends.onednn": "rtmbench.measure.onednn_fusion",
}


def test_no_two_modules_share_a_name():
    names = Counter(p.name for p in SRC.rglob("*.py") if p.name != "__init__.py")
    assert [n for n, count in names.items() if count > 1] == []


@pytest.mark.parametrize("old,new", sorted(RENAMED.items()))
def test_a_renamed_module_keeps_its_old_name_with_a_warning(old, new):
    module = importlib.import_module(new)
    public = next(n for n in dir(module) if not n.startswith("_")
                  and getattr(getattr(module, n), "__module__", None) == new)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alias = importlib.import_module(old)
        assert getattr(alias, public) is getattr(module, public)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message)
               for w in caught)
