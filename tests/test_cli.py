"""The command line as a newcomer meets it: fast help, help for every option, exit codes."""

from __future__ import annotations

import argparse
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


def test_the_inference_backends_named_for_help_are_the_backends():
    from rtmbench.cli import INFERENCE_BACKENDS
    from rtmbench.measure.backends import BACKENDS

    assert sorted(INFERENCE_BACKENDS) == sorted(BACKENDS)
