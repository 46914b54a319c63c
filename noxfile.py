"""Sessions: reproduce (the main job), tests, parity (against MMDetection), lint."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

CONSTRAINTS = ("-c", "constraints.txt")


def install(session: nox.Session, extras: str = "onnx,dev") -> None:
    session.install(*CONSTRAINTS, "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """The fast test suite (slow and GPU tests are marked; GPU tests skip without a GPU)."""
    install(session)
    session.run("pytest", "-m", "not mmdet", *session.posargs)


@nox.session
def reproduce(session: nox.Session) -> None:
    """Reproduce the seed table on the embedded default: params and FLOPs for all five sizes."""
    install(session)
    session.run("rtmbench", "complexity", *session.posargs)


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
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "noxfile.py")
