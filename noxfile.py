"""Sessions: reproduce (the main job), gate (CI's regression gate), report, tests, parity
(against MMDetection), lint."""

from __future__ import annotations

from datetime import UTC, datetime

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

CONSTRAINTS = ("-c", "constraints.txt")
SMOKE_BASELINE = "suites/baselines/smoke.jsonl"


def install(session: nox.Session, extras: str = "onnx,dev") -> None:
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


def run_id(suite: str) -> str:
    return f"{datetime.now(UTC).strftime('%Y-%m-%dT%H-%M-%SZ')}-{suite}-nox"


@nox.session
def tests(session: nox.Session) -> None:
    """The fast test suite (slow and GPU tests are marked; GPU tests skip without a GPU)."""
    install(session)
    session.run("pytest", "-m", "not mmdet", *session.posargs)


@nox.session
def reproduce(session: nox.Session) -> None:
    """Run suites/reproduce.yaml (every column of the seed table, all five sizes), then render
    reports/results.md, the plots and the README table. `-- --resume ID` continues a run."""
    install(session)
    args = list(session.posargs) or ["--run-id", run_id("reproduce")]
    session.run("rtmbench", "run", "reproduce", *args)
    ref = args[args.index("--resume") + 1] if "--resume" in args else args[1]
    session.run("rtmbench", "report", ref)


@nox.session
def gate(session: nox.Session) -> None:
    """Run the smoke suite and gate it against the published claims and the shipped baseline."""
    install(session)
    rid = run_id("smoke")
    session.run("rtmbench", "run", "smoke", "--run-id", rid, "--no-progress")
    session.run("rtmbench", "gate", rid, "--baseline", SMOKE_BASELINE, "--suite", "smoke")


@nox.session
def report(session: nox.Session) -> None:
    """Render the report from the given runs (default: the latest under results/)."""
    install(session)
    session.run("rtmbench", "report", *session.posargs)


@nox.session
def parity(session: nox.Session) -> None:
    """Compare our RTMDet with MMDetection 3.3.0's own, all five sizes (mmcv's C ops stubbed)."""
    install(session)
    # mmdet and mmcv-lite without their dependency pins (mmcv has no wheels for current torch);
    # the few pure-Python packages mmdet imports at model-build time come next.
    session.install("--no-deps", "mmdet==3.3.0", "mmcv-lite==2.1.0")
    session.install("six", "terminaltables", "shapely", "scipy", "addict", "yapf", "termcolor")
    session.run("pytest", "-m", "mmdet", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, and the layering contracts (import-linter, [tool.importlinter] in pyproject)."""
    session.install("ruff", "import-linter>=2.1", "-e", ".", *CONSTRAINTS)
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("lint-imports")
