"""A user's runs land in results/local/ (git ignores it); `rtmbench publish RUN` moves one
beside the committed runs; `rtmbench report` adds the user's latest run to the committed ones;
run ids are found in results/ and results/local/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from rtmbench.cli import main
from rtmbench.judge.report import load_runs
from rtmbench.records import LOCAL, resolve_run
from rtmbench.spec.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]


def _copy_run(smoke_run: Path, folder: Path, run_id: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{run_id}.jsonl"
    shutil.copy(smoke_run, target)
    return target


def test_shipped_suites_write_where_git_ignores(tmp_path):
    for name in ("smoke", "reproduce", "gate", "gpu"):
        assert load_suite(name).results_dir == "results/local", name
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/local/x.jsonl"], cwd=ROOT)
    assert ignored.returncode == 0  # `git add .` never takes a user's run
    tracked = subprocess.run(["git", "check-ignore", "-q", "results/x.jsonl"], cwd=ROOT)
    assert tracked.returncode == 1  # published runs are committed


def test_run_ids_are_found_in_results_and_its_local_folder(smoke_run, tmp_path):
    results = tmp_path / "results"
    local = _copy_run(smoke_run, results / LOCAL.name, "mine")
    published = _copy_run(smoke_run, results, "theirs")
    assert resolve_run("mine", results) == local
    assert resolve_run("theirs", results) == published


def test_publish_copies_a_run_once_and_never_replaces(smoke_run, tmp_path, capsys):
    results = tmp_path / "results"
    _copy_run(smoke_run, results / LOCAL.name, "mine")
    assert main(["publish", "mine", "--results-dir", str(results)]) == 0
    assert (results / "mine.jsonl").read_bytes() == smoke_run.read_bytes()
    assert "report --publish" in capsys.readouterr().err
    assert main(["publish", "mine", "--results-dir", str(results)]) == 2
    assert "already published" in capsys.readouterr().err  # found at its published place
    (results / LOCAL.name / "mine.jsonl").rename(results / LOCAL.name / "again.jsonl")
    (results / "again.jsonl").write_text("")  # an unrelated file of that name
    assert main(["publish", str(results / LOCAL.name / "again.jsonl"),
                 "--results-dir", str(results)]) == 2
    assert "never replaced" in capsys.readouterr().err
    assert main(["publish", "nope", "--results-dir", str(results)]) == 2


def test_report_adds_the_users_latest_run(smoke_run, tmp_path, monkeypatch):
    results = tmp_path / "results"
    _copy_run(smoke_run, results, "committed")
    _copy_run(smoke_run, results / LOCAL.name, "older")
    newest = _copy_run(smoke_run, results / LOCAL.name, "newest")
    newest.write_text(newest.read_text().replace('"date": "', '"date": "2999-'))  # later
    runs = load_runs([], results)  # not a git checkout: every run file there counts as committed
    assert [r.run_id for r in runs][-1] == "newest"
    published = load_runs([], results, latest=False)
    assert "newest" not in [r.run_id for r in published]
