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


def test_a_published_run_is_in_the_next_published_table_before_it_is_committed(
        smoke_run, tmp_path, monkeypatch, capsys):
    """In a checkout the published table is made from the runs git tracks: publish stages the
    run (git add), so `report --publish` right after it renders it, and commits stay the
    user's to make."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("# x\n<!-- results:start -->\n<!-- results:end -->\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    _copy_run(smoke_run, tmp_path / "results" / LOCAL.name, "mine")
    assert main(["publish", "mine"]) == 0
    assert "and staged (git add)" in capsys.readouterr().err
    staged = subprocess.run(["git", "ls-files", "results"], cwd=tmp_path, check=True,
                            capture_output=True, text=True).stdout.split()
    assert staged == ["results/mine.jsonl"]
    assert main(["report", "--publish"]) == 0
    readme = (tmp_path / "README.md").read_text()
    assert "From run `mine`" in readme
    log = subprocess.run(["git", "log"], cwd=tmp_path, capture_output=True, text=True)
    assert log.returncode != 0  # nothing was committed for the user


def test_a_run_published_where_git_cannot_track_it_is_an_input_error(smoke_run, tmp_path,
                                                                      monkeypatch, capsys):
    """A --results-dir git ignores: the copy is made, and the user is told it will not be in
    the published table (exit 2), never a quiet success."""
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".gitignore").write_text("ignored/\n")
    _copy_run(smoke_run, tmp_path / "ignored" / LOCAL.name, "mine")
    assert main(["publish", "mine", "--results-dir", "ignored"]) == 2
    err = capsys.readouterr().err
    assert "`git add` failed" in err and "ignored" in err
    assert (tmp_path / "ignored" / "mine.jsonl").is_file()
