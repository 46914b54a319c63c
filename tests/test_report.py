from __future__ import annotations

import pytest

from rtmbench.errors import InputError
from rtmbench.judge.report import END, START, write_report
from tests.records_factory import records, write_run

README = f"# Title\n\nKeep me.\n\n{START}\nstale table\n{END}\n\n## After\nand me\n"


@pytest.fixture
def workspace(tmp_path):
    results = tmp_path / "results"
    write_run(results / "r1.jsonl", records("r1"))
    (tmp_path / "README.md").write_text(README)
    return tmp_path


def render(ws, *runs):
    """Only the runs given (the workspace is no git checkout: every run there would count as
    committed)."""
    return write_report(list(runs), results_dir=ws / "results", out_dir=ws / "reports",
                        readme=ws / "README.md", committed=False)


def snapshot(ws) -> dict[str, bytes]:
    files = sorted((ws / "reports").iterdir()) + [ws / "README.md"]
    return {p.name: p.read_bytes() for p in files}


def test_report_is_byte_identical_when_regenerated(workspace):
    render(workspace, "r1")
    first = snapshot(workspace)
    render(workspace, "r1")
    assert snapshot(workspace) == first
    assert set(first) == {"results.md", "ap_vs_latency.png", "ap_vs_latency.svg",
                          "complexity_vs_ap.png", "complexity_vs_ap.svg", "README.md"}


def test_seed_table_and_one_latency_table_per_machine(workspace):
    render(workspace, "r1")
    md = (workspace / "reports" / "results.md").read_text()
    assert ("| rtmdet-tiny | 4.8 → 4.896 ✅ | 8.1 → 8.089 ✅ | 40.9 → 40.90 (500 img) ⚪ | "
            "41.1 → *not in the runs* | 0.98 → *not run [1]* |") in md
    assert "latency, ms (tensorrt FP16, RTX 3090)" in md and "1. needs a CUDA GPU" in md
    assert "### Latency on Test CPU 9000 (2 cores), input 640×640, batch 1" in md
    assert "| model | torch/cpu/fp32 |\n|---|---|\n| rtmdet-tiny | 80.00 ⚪ |" in md
    assert "Not measured on this machine (no GPU): tensorrt/cuda/fp16 [1]." in md
    assert "Test CPU 9000 (2 cores), GPU: none" in md  # the environment of the run
    assert f"machine `{records('r1')[0].fingerprint.id}`" in md  # its fingerprint
    assert "## Gate verdict" in md and "rows pass" in md


def test_readme_block_replaced_idempotently_outside_untouched(workspace):
    render(workspace, "r1")
    text = (workspace / "README.md").read_text()
    before, after = README.split(START)[0], README.split(END)[1]
    assert text.startswith(before + START) and text.endswith(END + after)
    assert "stale table" not in text and "](reports/ap_vs_latency.svg)" in text
    render(workspace, "r1")
    assert (workspace / "README.md").read_text() == text


def test_plots_are_png_and_svg_and_not_empty(workspace):
    render(workspace, "r1")
    for stem in ("ap_vs_latency", "complexity_vs_ap"):
        png = (workspace / "reports" / f"{stem}.png").read_bytes()
        svg = (workspace / "reports" / f"{stem}.svg").read_text()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
        assert "<svg" in svg and "<path" in svg and "Date" not in svg


def test_later_run_takes_precedence_and_default_is_latest(workspace):
    newer = records("r2", ap=0.5)
    for r in newer:
        r.provenance = {**r.provenance, "date": "2027-01-01T00:00:00Z"}
    write_run(workspace / "results" / "r2.jsonl", newer)
    render(workspace)  # no run given: the most recent
    md = (workspace / "reports" / "results.md").read_text()
    assert "From run `r2`" in md and "50.00 (500 img)" in md
    write_report(["r2", "r1"], results_dir=workspace / "results", out_dir=workspace / "reports",
                 readme=workspace / "README.md", committed=False)
    assert "40.90 (500 img)" in (workspace / "reports" / "results.md").read_text()


def test_readme_without_markers_is_an_input_error(workspace):
    (workspace / "README.md").write_text("# no markers\n")
    with pytest.raises(InputError, match="results:start"):
        render(workspace, "r1")
    assert (workspace / "README.md").read_text() == "# no markers\n"


def test_a_not_run_never_hides_another_runs_measurement(workspace):
    """A CPU machine's run and a GPU machine's run combine into one table."""
    gpu_run = records("gpu", latency_status="measured", ratio=0.5)
    write_run(workspace / "results" / "gpu.jsonl", gpu_run)
    cpu_run = records("cpu", latency_status="not run")
    write_run(workspace / "results" / "cpu.jsonl", cpu_run)
    render(workspace, "gpu", "cpu")
    md = (workspace / "reports" / "results.md").read_text()
    assert "| rtmdet-tiny | 20.00 ⚪ |" in md  # 40 ms x 0.5 survives the later "not run"
    render(workspace, "cpu", "gpu")
    assert "| rtmdet-tiny | 20.00 ⚪ |" in (workspace / "reports" / "results.md").read_text()


def test_report_renders_the_real_smoke_records(smoke_run, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "smoke.jsonl").write_bytes(smoke_run.read_bytes())
    (tmp_path / "README.md").write_text(README)
    write_report(["smoke"], results_dir=results, out_dir=tmp_path / "reports",
                 readme=tmp_path / "README.md")
    md = (tmp_path / "reports" / "results.md").read_text()
    assert "| rtmdet-tiny | 4.8 → 4.896 ✅ | 8.1 → 8.089 ✅ |" in md
    assert "| model | torch/cpu/fp32 | onnxruntime/cpu/fp32 |" in md
    assert "input 320×320" in md and " · agr " in md  # the timed artifacts' accuracy
    assert "box AP (well-conditioned weights)" in md and "(8 img) ⚪ · golden agr 1.000" in md


def test_a_local_run_adds_to_the_committed_ones_and_leaves_tracked_files_alone(
        tmp_path, monkeypatch, capsys):
    """`rtmbench report RUN` after a user's run: the committed (GPU) results stay in the view,
    README.md and reports/ are untouched; --publish is what rewrites them."""
    import subprocess

    from rtmbench.cli import main

    monkeypatch.chdir(tmp_path)
    gpu_hw = {"cpu": "Server CPU", "cores": 16, "gpu": "NVIDIA H100 80GB HBM3"}
    gpu = records("gpu", ratio=0.05, hardware=gpu_hw)
    gpu = [r.model_copy(update={"device": "cuda", "precision": "fp16"}) if r.check == "latency"
           and r.backend == "torch" else r for r in gpu]
    write_run(tmp_path / "results" / "gpu.jsonl", gpu)
    (tmp_path / "README.md").write_text(README)
    for args in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t",
                                                 "commit", "-q", "-m", "published"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    write_run(tmp_path / "results" / "mine.jsonl", records("mine"))  # a local CPU run
    assert main(["report", "mine"]) == 0
    md = (tmp_path / "reports" / "local" / "results.md").read_text()
    assert "From runs `gpu`, `mine`" in md
    assert "### Latency on NVIDIA H100 80GB HBM3" in md and "### Latency on Test CPU 9000" in md
    assert (tmp_path / "README.md").read_text() == README
    assert not (tmp_path / "reports" / "results.md").exists()
    assert "--publish writes them" in capsys.readouterr().err
    assert main(["report", "--publish"]) == 0  # the committed runs only
    text = (tmp_path / "README.md").read_text()
    assert "From run `gpu`" in text and "Latency on NVIDIA H100" in text


def test_publish_with_a_readme_without_markers_writes_nothing(tmp_path):
    """The README is checked before any file is written: no half-done publish of reports/."""
    from rtmbench.errors import InputError
    from tests.records_factory import records, write_run

    write_run(tmp_path / "results" / "r.jsonl", records("r"))
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    with pytest.raises(InputError, match="no '<!-- results:start -->'"):
        write_report(["r"], results_dir=tmp_path / "results", out_dir=tmp_path / "reports",
                     readme=readme, committed=False)
    assert not (tmp_path / "reports").exists()
    assert readme.read_text() == "# no markers here\n"


def test_a_readme_that_is_not_utf8_is_an_input_error_and_nothing_is_written(workspace):
    damaged = README.replace("Keep me.", "Keep me.\udcff").encode("utf-8", "surrogateescape")
    (workspace / "README.md").write_bytes(damaged)
    with pytest.raises(InputError, match=r"README .*README.md.*not UTF-8"):
        render(workspace, "r1")
    assert (workspace / "README.md").read_bytes() == damaged
    assert not (workspace / "reports").exists()


def test_the_report_says_what_the_gate_says_of_the_users_run(smoke_run, tmp_path, capsys):
    """The report's verdict names its suite and, for the run the user added, gives the gate's
    own verdict on it (same plan, tolerances and judge) and the command that reproduces it."""
    from rtmbench.cli import main
    from rtmbench.judge.gate import run_gate

    out = tmp_path / "out"
    assert main(["report", str(smoke_run), "--only", "--out-dir", str(out)]) == 0
    text = (out / "results.md").read_text()
    assert "suite `reproduce`'s tolerances" in text
    line = next(x for x in text.splitlines() if x.startswith("- Your run"))
    assert f"`rtmbench gate {smoke_run.stem} --suite smoke`" in line
    capsys.readouterr()
    code = run_gate(str(smoke_run), suite="smoke")
    gate = capsys.readouterr().out
    passing = next(x for x in gate.splitlines() if "rows pass against the claims" in x)
    assert passing.split(" rows pass")[0] in line and f"(exit {code})" in line
