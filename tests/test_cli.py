"""The command line as a newcomer meets it: fast help, help for every option, exit codes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from rtmbench.cli import build_parser, main


def test_help_imports_no_torch():
    code = ("import sys; from rtmbench.cli import build_parser; build_parser(); "
            "heavy = [m for m in ('torch', 'cv2', 'onnxruntime', 'matplotlib') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", sorted(_subparsers(build_parser())))
def test_every_option_has_help_text(command):
    sub = _subparsers(build_parser())[command]
    assert sub.description or sub.format_usage()
    missing = [a.option_strings or [a.dest] for a in sub._actions
               if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, f"rtmbench {command}: options without help: {missing}"


def test_run_help_lists_every_shipped_suite(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for name in ("reproduce", "smoke", "gate", "gpu"):
        assert name in out


def test_evaluate_checks_the_coco_path_before_any_download(tmp_path, capsys, monkeypatch):
    """A wrong --coco is said at once, before weights are fetched (no retries first)."""
    monkeypatch.setenv("RTMBENCH_MIRROR", "http://127.0.0.1:9/never")
    monkeypatch.setenv("RTMBENCH_CACHE", str(tmp_path / "cache"))
    code = main(["evaluate", "tiny", "--coco", str(tmp_path / "nonexistent"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and "nonexistent" in err and "127.0.0.1" not in err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_evaluate_and_latency_check_their_inputs_before_importing_torch(tmp_path):
    """'COCO is missing' or a bad flag is said at once, not after torch's seconds of import."""
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "annotations" / "instances_val2017.json").write_text("{}")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        (["evaluate", "tiny"], 3),                                       # no COCO given
        (["evaluate", "tiny", "--coco", str(tmp_path / "nowhere")], 3),
        (["evaluate", "huge", "--coco", str(coco)], 2),                  # no such model
        (["evaluate", "tiny", "--coco", str(coco), "--batch-size", "0"], 2),
        (["evaluate", "tiny", "--coco", str(coco), "--workers", "-1"], 2),
        (["evaluate", "tiny", "--coco", str(coco), "--limit", "0"], 2),
        (["evaluate", "tiny", "--coco", str(coco), "--device", "gpu"], 2),
        (["evaluate", "tiny", "--coco", str(coco), "--device", "cpu", "--precision", "fp16"],
         2),
        (["evaluate", "tiny", "--coco", str(coco), "--shard", "3/2"], 2),
        (["evaluate", "tiny", "--coco", str(coco), "--weights", "nope"], 2),
        (["evaluate", "tiny", "--coco", str(coco), "--test-cfg", "nope"], 2),
        (["evaluate", "tiny", "--coco", str(coco), "--out", str(a_file)], 2),
        (["evaluate", "tiny", "--coco", str(coco), "--checkpoint", str(tmp_path / "no.pth")], 2),
        (["latency", "huge"], 2),
        (["latency", "tiny", "--iterations", "0"], 2),
        (["latency", "tiny", "--input-size", "10", "64"], 2),
        (["latency", "tiny", "--weights", "nope"], 2),
        (["latency", "tiny", "--checkpoint", str(tmp_path / "no.pth")], 2),
        (["export", "tiny", "-o", str(a_file)], 2),                       # exists, no --force
        (["export", "tiny", "-o", str(tmp_path / "m.onnx"), "--weights", "nope"], 2),
        (["export", "tiny", "-o", str(tmp_path / "m.onnx"), "--batch", "0"], 2),
    ]
    code = ("import json, sys\n"
            "from rtmbench.cli import main\n"
            f"cases = {[argv for argv, _ in cases]!r}\n"
            "codes = [main(argv) for argv in cases]\n"
            "heavy = [m for m in ('torch', 'cv2', 'onnxruntime') if m in sys.modules]\n"
            "print(json.dumps({'codes': codes, 'heavy': heavy}))\n")
    env = {**{k: v for k, v in os.environ.items() if k != "RTMBENCH_COCO"},
           "RTMBENCH_OFFLINE": "1", "RTMBENCH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [expected for _, expected in cases], done.stderr
    assert result["heavy"] == [], done.stderr
    assert "Traceback" not in done.stderr


def test_the_inference_backends_named_for_help_are_the_backends():
    from rtmbench.cli import INFERENCE_BACKENDS
    from rtmbench.measure.backends import BACKENDS

    assert sorted(INFERENCE_BACKENDS) == sorted(BACKENDS)
