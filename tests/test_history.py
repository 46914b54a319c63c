"""`gate --history`: a run against the history of its machine, on simulated histories made from
the smoke baseline's own records (tests/history_sim.py: resampled samples, 3 % noise per
sample, seeded). Judged with the gate suite's tolerances (latency 25 %, alpha 0.01): the
default of `rtmbench gate`, whose plan is the smoke suite the runs record."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rtmbench.cli import DEFAULT_HISTORY_RUNS, main
from rtmbench.judge.gate import compare_history
from rtmbench.judge.history import DEFAULT_RUNS, History
from rtmbench.records import Status
from rtmbench.spec.suite import load_suite
from tests.history_sim import commit_of, simulated_history, simulated_run, write

GATE = load_suite("gate")


def _judge(runs, size: int = DEFAULT_RUNS):
    rows, found, _ = compare_history(runs[-1], History(Path("history"), runs[:-1]), None, GATE,
                                     None, size)
    return rows, found


def _gate(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["gate", *map(str, args)])
    return code, capsys.readouterr().out


def test_the_cli_default_is_the_judges():
    assert DEFAULT_HISTORY_RUNS == DEFAULT_RUNS


def test_an_unchanged_history_stays_green():
    """100 seeded histories of 20 runs and a 21st at the same level: green, and no step named.
    Measured: 100/100 green, 97/100 without a named step (two latency series each)."""
    green = quiet = 0
    for seed in range(100):
        rows, found = _judge(simulated_history([1.0] * 21, seed))
        green += not any(r.regression for r in rows)
        quiet += not found
    print(f"unchanged history: {green}/100 green, {quiet}/100 without a named step")
    assert green >= 95 and quiet >= 95


def test_a_drift_fails_the_history_while_every_run_passes_its_predecessor(tmp_path, capsys):
    """2 % slower per run over 15 runs (+35 % in all): each run is within the 25 % tolerance
    of the one before it, but not of the history's best level."""
    runs = simulated_history([1.02 ** i for i in range(16)], seed=1)
    folder = tmp_path / "results"
    paths = [write(r, folder) for r in runs]
    for before, after in zip(paths, paths[1:]):
        code, out = _gate(capsys, after, "--baseline", before)
        assert code == 0, out
    code, out = _gate(capsys, paths[-1], "--history", folder)
    assert code == 1, out
    # (over 40 seeds, 79 of the 80 latency rows were red; here torch's best level spans the
    # first 7 runs and its row is +24 %: onnxruntime's is red)
    assert "REGRESSION: slower than the best level of this machine's last 15 runs" in out
    assert "beyond ±25%" in out and "significant (Mann-Whitney U" in out


def _step_at(out: str, runs) -> list[int]:
    """The run indices the output names steps at (by their short commits)."""
    index = {r.commit[:7]: i for i, r in enumerate(runs)}
    return [index[c] for c in re.findall(r"from commit ([0-9a-f]{7})", out)]


def test_a_step_is_named_at_its_run_by_gate_and_report(tmp_path, capsys):
    runs = simulated_history([1.0] * 20 + [1.1] * 10, seed=2)
    folder = tmp_path / "results"
    paths = [write(r, folder) for r in runs]
    code, out = _gate(capsys, paths[-1], "--history", folder)
    assert code == 0, out  # +10 % is within the 25 % tolerance: named, not failed
    at = _step_at(out.split("Steps in this machine's history:")[1], runs)
    assert at and all(abs(i - 20) <= 1 for i in at), out
    assert re.search(r"latency onnxruntime/cpu/fp32 320x320: \+\d+\.\d % from commit", out)
    assert main(["report", "--history", str(folder), "--out-dir", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "history.md").read_text()
    at = _step_at(text, runs)
    assert at and all(abs(i - 20) <= 1 for i in at), text


def test_same_seed_same_verdicts(tmp_path, capsys):
    outs = []
    for name in ("a", "b"):
        runs = simulated_history([1.0] * 12 + [1.3] * 3, seed=5)
        folder = tmp_path / name
        paths = [write(r, folder) for r in runs]
        code, out = _gate(capsys, paths[-1], "--history", folder)
        outs.append((code, out.replace(str(folder), "DIR")))
    assert outs[0] == outs[1]


def test_another_machine_in_the_same_folder_never_takes_part(tmp_path, capsys):
    """Twice as slow on another CPU model: it must neither fail the run nor pass for its
    history."""
    rng_runs = simulated_history([2.0] * 12, seed=3, cpu="Other CPU 2000", tag="b")
    ours = simulated_history([1.0] * 13, seed=4, tag="a")
    folder = tmp_path / "results"
    for r in rng_runs + ours:
        write(r, folder)
    code, out = _gate(capsys, folder / f"{ours[-1].run_id}.jsonl", "--history", folder)
    assert code == 0, out
    assert "12 of this machine" in out and "12 run(s) of 1 other machine(s), never compared" \
        in out
    # a run of this CPU with only the other machine's runs: said, not silently green
    only = tmp_path / "only"
    for r in rng_runs:
        write(r, only)
    path = write(ours[-1], tmp_path / "candidate")
    code, out = _gate(capsys, path, "--history", only)
    assert code == 0, out
    assert "no comparable history or baseline" in out
    assert "row(s) without comparable history" in out
    # ... and with a baseline: judged against it, and the row says so
    base = write(ours[-2], tmp_path / "base")
    code, out = _gate(capsys, path, "--history", only, "--baseline", base)
    assert code == 0, out
    assert "no comparable history of this machine; against baseline" in out


def test_failed_and_contended_runs_never_enter_the_history():
    rng = __import__("random").Random(6)
    history = [simulated_run(i, 1.0, rng) for i in range(8)]
    # very fast, but contended; and failed ones: neither may set the level
    history += [simulated_run(8 + i, 0.5, rng, contended=True) for i in range(4)]
    history += [simulated_run(12 + i, 0.5, rng, status="failed") for i in range(2)]
    candidate = simulated_run(14, 1.0, rng)
    rows, _ = _judge(history + [candidate])
    latency = [r for r in rows if r.metric.startswith("latency")]
    assert latency and not any(r.regression for r in rows), [r.verdict for r in rows]
    assert all("last 8 runs" in r.verdict for r in latency)


def test_a_unit_the_machine_measured_and_this_run_did_not_run_is_red():
    rng = __import__("random").Random(7)
    history = [simulated_run(i, 1.0, rng) for i in range(5)]
    candidate = simulated_run(5, 1.0, rng)
    recs = [r if r.check != "latency" or r.backend != "onnxruntime" else
            r.model_copy(update={"status": Status.NOT_RUN, "reason": "onnxruntime is not installed",
                                 "metrics": {}}) for r in candidate.records]
    candidate = type(candidate)(candidate.run_id, candidate.path, recs)
    rows, _ = _judge(history + [candidate])
    red = [r for r in rows if r.regression]
    assert len(red) == 1 and "measured by the last run of this machine" in red[0].verdict


@pytest.mark.parametrize("args, words", [
    (["--history", "nowhere"], "history directory nowhere does not exist"),
    (["--history-runs", "0", "--history", "."], "--history-runs 0"),
])
def test_unusable_history_input(tmp_path, capsys, args, words):
    path = write(simulated_history([1.0], seed=0)[0], tmp_path)
    assert main(["gate", str(path), *args]) == 2
    assert words in capsys.readouterr().err


def test_a_corrupt_file_in_the_history_is_unusable_input(tmp_path, capsys):
    runs = simulated_history([1.0] * 3, seed=0)
    folder = tmp_path / "results"
    paths = [write(r, folder) for r in runs]
    (folder / "broken.jsonl").write_text('{"run": 1}\n')
    assert main(["gate", str(paths[-1]), "--history", str(folder)]) == 2
    assert "broken.jsonl" in capsys.readouterr().err


def test_steps_are_computed_from_the_commit_order(tmp_path):
    runs = simulated_history([1.0] * 6 + [1.5] * 6, seed=8)
    assert [r.commit for r in runs[:2]] == [commit_of(0), commit_of(1)]
    _, found = _judge(runs + [simulated_run(12, 1.5, __import__("random").Random(0))])
    assert {s.run.run_id for s in found if s.metric == "latency"} == {runs[6].run_id}


def test_the_history_report_draws_each_machine_apart_and_is_byte_stable(tmp_path):
    rng = __import__("random").Random(13)
    ours = [simulated_run(i, 1.0, rng) for i in range(6)]
    ours += [simulated_run(6, 1.0, rng, contended=True), simulated_run(7, 1.0, rng,
                                                                        status="failed")]
    theirs = simulated_history([2.0] * 4, seed=14, cpu="Other CPU 2000", tag="b")
    folder = tmp_path / "results"
    for r in ours + theirs:
        write(r, folder)
    outs = []
    for name in ("a", "b"):
        assert main(["report", "--history", str(folder), "--out-dir", str(tmp_path / name)]) == 0
        outs.append({p.name: p.read_bytes() for p in (tmp_path / name).iterdir()})
    assert outs[0] == outs[1]  # no dates, versions or salts in the files: the same bytes
    for run in (ours[0], theirs[0]):
        fp = run.fingerprint.id
        assert {f"history-{fp}-{m}.png" for m in ("latency", "box_ap", "agreement")} <= \
            set(outs[0])
    text = outs[0]["history.md"].decode()
    assert text.count("\n## ") == 2 and "Other CPU 2000" in text
    assert main(["report", "--history", str(tmp_path / "empty-nothing")]) == 2
