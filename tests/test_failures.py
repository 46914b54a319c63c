"""A real failure turns the gate red, never grey: a checkpoint whose sha256 does not match, an
unsafe pickle and a checkpoint of another size each give a "failed" record and `rtmbench gate`
exit 1 with the reason in the table; a run that lacks only prerequisites (no COCO, no GPU)
gives "not run" records and exit 0."""

from __future__ import annotations

import builtins
import hashlib
import textwrap
from pathlib import Path

import pytest
import torch

from rtmbench.cli import main
from rtmbench.records import read_run
from rtmbench.run.build import network
from rtmbench.spec.zoo import load_zoo

ROOT = Path(__file__).resolve().parents[1]


class Evil:
    def __reduce__(self):
        return (builtins.exec, ("raise SystemExit('pwned')",))


def _zoo(tmp_path: Path, file: str, sha8: str, folder: Path) -> Path:
    """The shipped zoo with tiny's MMDetection weights served from ``folder``."""
    mmdet = load_zoo().get("tiny").weights_by_id("mmdet")
    text = (ROOT / "zoo" / "rtmdet.yaml").read_text()
    assert f"[{mmdet.urls[0]}]" in text
    text = text.replace(f"[{mmdet.urls[0]}]", f"[{folder}]")
    text = text.replace(mmdet.file, file).replace(f"sha256: {mmdet.sha256}", f"sha256: {sha8}")
    path = tmp_path / "zoo.yaml"
    path.write_text(text)
    return path


def _suite(tmp_path: Path, box_ap: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: failures
        models: [tiny]
        checks:
          box_ap: {box_ap}
          latency:
            targets: [{{backends: [tensorrt], devices: [cuda], precisions: [fp16]}}]
            min_iterations: 1
            min_duration_s: 0
            warmup_s: 0
        results_dir: {tmp_path / "results"}
        """))
    return path


def _serve(tmp_path: Path, payload: dict, *, wrong_hash: bool = False) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    scratch = tmp_path / "scratch.pth"
    torch.save(payload, scratch)
    data = scratch.read_bytes()
    sha8 = "deadbeef" if wrong_hash else hashlib.sha256(data).hexdigest()[:8]
    name = f"rtmdet_tiny_test-{sha8}.pth"
    (folder / name).write_bytes(data)
    return _zoo(tmp_path, name, sha8, folder)


def _run_and_gate(tmp_path, capsys, zoo: Path, suite: Path) -> tuple[int, int, list, str]:
    run_code = main(["--zoo", str(zoo), "run", str(suite), "--run-id", "t", "--no-progress"])
    records = read_run(tmp_path / "results" / "t.jsonl").records
    capsys.readouterr()
    gate_code = main(["--zoo", str(zoo), "gate", "t", "--results-dir",
                      str(tmp_path / "results"), "--suite", str(suite)])
    return run_code, gate_code, records, capsys.readouterr().out


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RTMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RTMBENCH_MIRROR", raising=False)
    monkeypatch.delenv("RTMBENCH_OFFLINE", raising=False)


def _tiny_state() -> dict:
    return {"state_dict": network("tiny").state_dict(), "meta": {"mmdet_version": "3.3.0"}}


@pytest.mark.parametrize("case, payload, wrong_hash, words", [
    ("sha256 mismatch", _tiny_state, True, "sha256"),
    ("unsafe pickle", lambda: {**_tiny_state(), "meta": {"x": Evil()}}, False,
     "builtins.exec"),
    ("wrong size", lambda: {"state_dict": network("s").state_dict()}, False,
     "does not fit"),
])
def test_a_bad_checkpoint_is_a_failure_that_fails_the_gate(tmp_path, capsys, case, payload,
                                                          wrong_hash, words):
    zoo = _serve(tmp_path, payload(), wrong_hash=wrong_hash)
    suite = _suite(tmp_path, "{synthetic: 2, weights: mmdet, batch_size: 2, workers: 0}")
    run_code, gate_code, records, out = _run_and_gate(tmp_path, capsys, zoo, suite)
    box = next(r for r in records if r.check == "box_ap")
    assert box.status == "failed" and words in box.reason, (case, box.reason)
    trt = next(r for r in records if r.check == "latency")
    assert trt.status == "not run"  # no GPU here: a missing prerequisite, still grey
    assert run_code == 1 and gate_code == 1, out
    row = next(line for line in out.splitlines() if "box_ap" in line)
    assert "REGRESSION: failed" in row and words in row


def test_missing_prerequisites_only_are_not_run_and_pass(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RTMBENCH_COCO", raising=False)
    zoo = ROOT / "zoo" / "rtmdet.yaml"
    suite = _suite(tmp_path, "{dataset: '${RTMBENCH_COCO}', weights: mmdet}")
    run_code, gate_code, records, out = _run_and_gate(tmp_path, capsys, zoo, suite)
    assert {r.status for r in records} == {"not run"}
    reason = next(r for r in records if r.check == "box_ap").reason
    assert "RTMBENCH_COCO is not set" in reason and "`rtmbench fetch --coco`" in reason
    assert run_code == 0 and gate_code == 0, out
