"""The architecture is enforced, not described: import-linter's contracts (pyproject.toml) hold,
and no two modules import each other, directly or through others."""

from __future__ import annotations

import pytest

grimp = pytest.importorskip("grimp", reason="import-linter (the dev extra) is not installed")


def test_import_linter_contracts_are_kept():
    from importlinter.application.use_cases import lint_imports
    from importlinter.configuration import configure

    configure()
    assert lint_imports() is True  # prints the broken contracts' chains when one breaks


def test_no_import_cycle_between_packages():
    graph = grimp.build_graph("rtmbench")
    packages = sorted(m for m in graph.modules if m.count(".") == 1 and graph.find_children(m))
    cycles = []
    for a in packages:
        for b in packages:
            if a < b and graph.chain_exists(a, b, as_packages=True) and \
                    graph.chain_exists(b, a, as_packages=True):
                cycles.append((a, b, graph.find_shortest_chain(a, b),
                               graph.find_shortest_chain(b, a)))
    assert not cycles, cycles


def test_no_import_cycle_between_modules():
    graph = grimp.build_graph("rtmbench")
    modules = sorted(graph.modules)
    cycles = [(a, b) for a in modules for b in graph.find_modules_directly_imported_by(a)
              if a != b and not b.startswith(a + ".") and not a.startswith(b + ".")
              and graph.chain_exists(b, a)]
    assert not cycles, cycles[:5]
