"""The CI recipe's commands (tools/ci_history.sh, docs/ci.md) against local git repositories
standing for the forge: a bare repository with main and the results branch; CI jobs are clones.
Runs are simulated from the smoke baseline (tests/history_sim.py); nothing is timed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.history_sim import simulated_history, write

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "ci_history.sh"
BRANCH = "rtmbench-results"

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("bash") is None,
                                reason="needs git and bash")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return env | {"RTMBENCH": f"{sys.executable} -m rtmbench",
                  "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
                  "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=_env(), check=True, capture_output=True,
                          text=True).stdout.strip()


def ci(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def forge(tmp_path) -> Path:
    """A bare repository with a main branch (the project), and no results branch yet."""
    bare = tmp_path / "forge.git"
    git(tmp_path, "init", "--quiet", "--bare", "-b", "main", str(bare))
    work = tmp_path / "seed"
    git(tmp_path, "init", "--quiet", "-b", "main", str(work))
    (work / "README.md").write_text("project\n")
    git(work, "add", "README.md")
    git(work, "-c", "user.name=dev", "-c", "user.email=dev@localhost", "commit", "--quiet",
        "-m", "project")
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "--quiet", "origin", "main")
    return bare


def clone(forge: Path, where: Path) -> Path:
    git(forge.parent, "clone", "--quiet", str(forge), str(where))
    return where


def test_history_branch_pull_request_gate_and_main_append(forge, tmp_path):
    runs = simulated_history([1.0] * 6 + [1.0, 2.0], seed=11)
    made = [write(r, tmp_path / "made") for r in runs]
    # main's jobs: each appends its run (the first creates the branch)
    main_job = clone(forge, tmp_path / "main-job")
    empty = ci(main_job, "fetch", "history")
    assert empty.returncode == 0 and "no branch rtmbench-results" in empty.stdout
    assert not list((main_job / "history").iterdir())
    for path in made[:6]:
        done = ci(main_job, "append", path)
        assert done.returncode == 0, done.stderr
        assert f"added {path.name}" in done.stdout
    log = git(forge, "log", "--format=%s", BRANCH).splitlines()
    assert log == [f"rtmbench: add run {p.stem}" for p in reversed(made[:6])]
    assert git(forge, "ls-tree", "--name-only", BRANCH).splitlines() == \
        sorted(p.name for p in made[:6])
    assert git(forge, "log", "--format=%s", "main").splitlines() == ["project"]  # untouched
    assert git(main_job, "status", "--porcelain") == ""  # checkout and index untouched
    # a pull request's job: a fresh clone fetches the history and gates its run against it
    pr_job = clone(forge, tmp_path / "pr-job")
    fetched = ci(pr_job, "fetch", "history")
    assert fetched.returncode == 0 and "6 run file(s)" in fetched.stdout
    same = ci(pr_job, "gate", made[6], "history")
    assert same.returncode == 0, same.stdout[-3000:] + same.stderr
    assert "6 of this machine" in same.stdout
    slower = ci(pr_job, "gate", made[7], "history")
    assert slower.returncode == 1, slower.stdout[-3000:]
    assert "REGRESSION: slower than the best level" in slower.stdout
    # append is idempotent, and never replaces a run file
    again = ci(main_job, "append", made[0])
    assert again.returncode == 0 and "already on branch" in again.stdout
    other = tmp_path / "other" / made[0].name
    other.parent.mkdir()
    other.write_text(made[1].read_text().replace(runs[1].run_id, runs[0].run_id))
    refused = ci(main_job, "append", other)
    assert refused.returncode == 2 and "never replaced" in refused.stderr
    assert len(git(forge, "log", "--format=%s", BRANCH).splitlines()) == 6


def test_a_job_with_a_stale_clone_appends_after_the_others(forge, tmp_path):
    runs = [write(r, tmp_path / "made") for r in simulated_history([1.0] * 3, seed=12)]
    a = clone(forge, tmp_path / "a")
    b = clone(forge, tmp_path / "b")
    assert ci(a, "append", runs[0]).returncode == 0
    assert ci(b, "append", runs[1]).returncode == 0  # b never fetched what a pushed
    assert ci(a, "append", runs[2]).returncode == 0
    assert git(forge, "ls-tree", "--name-only", BRANCH).splitlines() == \
        sorted(p.name for p in runs)


def test_bad_arguments_are_refused(forge, tmp_path):
    job = clone(forge, tmp_path / "job")
    assert ci(job, "append", tmp_path / "nope.jsonl").returncode == 2
    assert ci(job, "gate", tmp_path / "nope.jsonl", "history").returncode == 2
    assert ci(job, "frobnicate").returncode == 2
