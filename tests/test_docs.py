"""The documents stay true: every repository path, every ``rtmbench.`` module (or attribute) and
every ``rtmbench`` subcommand that README.md and docs/*.md name exists.

What counts as a name: text in backticks or fenced code blocks, and relative link targets.
Paths are the ones under the repository's own folders (or its top-level files); places a run
makes (``results/local/``, ``reports/local/``, ``.nox/``...) and placeholders (``<run-id>``,
``DIR``) are not checked."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

TOP_FOLDERS = ("src/", "tests/", "benchmarks/", "tools/", "suites/", "zoo/", "docs/", "reports/",
               "results/", ".ci/")
TOP_FILES = ("README.md", "pyproject.toml", "noxfile.py", "constraints.txt", ".gitignore")
MADE_BY_RUNS = ("results/local", "reports/local", ".nox/", ".whl/", "gpu-out", "ci-runs/",
                "history/", "history-report/", ".github/")
PLACEHOLDER = re.compile(r"[<>*$~{}]|\.\.\.|\b[A-Z][A-Z_]{2,}\b")


def spans(text: str) -> list[str]:
    """Code spans, fenced code blocks (line by line) and relative link targets."""
    found: list[str] = []
    fences = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    for block in fences:
        found += block.splitlines()
    text = re.sub(r"```[^\n]*\n.*?```", "", text, flags=re.S)
    found += re.findall(r"`([^`\n]+)`", text)
    found += [t for t in re.findall(r"\]\(([^)\s]+)\)", text)
              if not t.startswith(("http://", "https://", "#", "mailto:"))]
    return found


def repository_paths(span: str) -> list[str]:
    out = []
    for token in re.split(r"[\s,;()'\"=]+", span):
        token = token.split("#")[0].rstrip(".:")
        if not token or PLACEHOLDER.search(token) or token.startswith(MADE_BY_RUNS):
            continue
        if token.startswith("../") or token.startswith("./"):
            continue
        if token.startswith(TOP_FOLDERS) or token in TOP_FILES:
            out.append(token)
    return out


def modules(span: str) -> list[str]:
    return re.findall(r"(?<![\w/.-])(rtmbench(?:\.[A-Za-z_]\w*)+)", span)


def subcommands(span: str) -> list[str]:
    return re.findall(r"(?:^|[\s`(]|-m )rtmbench +([a-z][a-z-]*)\b", span)


def cli_subcommands() -> set[str]:
    from rtmbench.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def resolves(dotted: str) -> bool:
    """``rtmbench.a.b`` is a module (a renamed one's old name too), or an attribute of the
    longest module prefix."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def problems(path: Path, root: Path = ROOT, commands: set[str] | None = None) -> list[str]:
    """Every name in ``path`` that does not exist (the file's own folder for relative links)."""
    commands = cli_subcommands() if commands is None else commands
    text = path.read_text(encoding="utf-8")
    bad = []
    for span in spans(text):
        for p in repository_paths(span):
            if not ((root / p).exists() or (path.parent / p).exists()):
                bad.append(f"{path.name}: path {p}")
        for m in modules(span):
            if not resolves(m):
                bad.append(f"{path.name}: module {m}")
        for c in subcommands(span):
            if c not in commands:
                bad.append(f"{path.name}: subcommand rtmbench {c}")
    for target in re.findall(r"\]\(([^)\s#]+)", text):
        if not target.startswith(("http://", "https://", "mailto:")) and \
                not (path.parent / target).exists():
            bad.append(f"{path.name}: link {target}")
    return sorted(set(bad))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_name_a_document_gives_exists(doc):
    assert problems(doc) == []


def test_the_check_fails_when_a_named_thing_is_removed(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text("See `src/rtmbench/cli.py`, `src/rtmbench/gone.py`, `rtmbench.run.build.build`,"
                   " `rtmbench.run.nothing`, [the CI page](ci.md) and:\n\n```bash\n"
                   "rtmbench fetch --coco\nrtmbench teleport tiny\n```\n")
    found = problems(doc)
    assert found == ["page.md: link ci.md", "page.md: module rtmbench.run.nothing",
                     "page.md: path src/rtmbench/gone.py",
                     "page.md: subcommand rtmbench teleport"]


def test_docs_speak_to_users_not_about_how_the_project_is_made():
    words = re.compile(r"\(issue \d+\)|\bissue-\d+\b|\blent\b|\$OUT\b|device call|this task",
                       re.I)
    for doc in DOCS:
        assert not words.search(doc.read_text(encoding="utf-8")), doc.name
