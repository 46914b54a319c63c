"""Checkpoints: fetch against a loopback server, safe loading, both layouts, strict loading."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from rtmbench.cli import main
from rtmbench.run.build import network
from rtmbench.sources import (
    MMYOLO_TO_MMDET,
    CheckpointMismatchError,
    DownloadError,
    FetchSettings,
    HashMismatchError,
    OfflineError,
    UnsafeCheckpointError,
    detect_layout,
    fetch_file,
    fetch_weights,
    load_checkpoint,
    read_state_dict,
    to_mmdet,
    to_mmyolo,
)
from rtmbench.sources.fetch import parts_of
from rtmbench.spec.zoo import ResolvedModel, Weights, load_zoo
from tests.fetch_fixtures import FAST, SRC, make_blob
from tests.http_server import LoopbackServer


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) \
        if root.exists() else []


# ---------------------------------------------------------------- fetching

def test_good_download_then_cache_hit_is_hashed_again(cache, blob, server):
    name, data, sha = blob
    url = f"{server.url}/official/{name}"
    got = fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
    assert (got.source, got.url, got.sha256, got.size) == ("origin", url, sha, len(data))
    assert got.path.read_bytes() == data
    assert json.loads((cache / "hashes.json").read_text())[name] == sha  # all 64 digits kept
    sidecar = json.loads((cache / f"{name}.verified.json").read_text())
    assert sidecar["sha256"] == sha and sidecar["size"] == len(data)

    # Second call: no request; the file is hashed again (trust comes from a hash, not from
    # the sidecar), and the sidecar only lends its provenance (the URL) to matching bytes.
    import rtmbench.sources.fetch as fetch_mod
    calls = []
    real = fetch_mod.hash_cached
    fetch_mod.hash_cached = lambda p, what: calls.append(p) or real(p, what)
    try:
        again = fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
    finally:
        fetch_mod.hash_cached = real
    assert again.source == "cache" and again.url == url and again.sha256 == sha
    assert calls == [cache / name] and len(server.requests) == 1
    assert again.provenance() == {"file": name, "url": url, "sha256": sha, "size": len(data),
                                  "source": "cache"}


def test_dropped_connection_resumes_with_range(cache, blob, server):
    name, data, sha = blob
    server.drop_after = 100_000
    got = fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=FAST, progress=False)
    heads = server.requests_for(name)
    assert len(heads) == 2 and "Range" not in heads[0]
    assert heads[1]["Range"] == "bytes=100000-"
    assert got.sha256 == sha and got.path.read_bytes() == data


def test_interrupted_run_resumes_on_next_call(cache, blob, server):
    name, data, sha = blob
    server.drop_after, server.drop_times = 120_000, 5
    no_retry = FetchSettings(read_timeout=2.0, retries=0)
    with pytest.raises(DownloadError, match="connection closed after 120000 of 300000 bytes"):
        fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=no_retry, progress=False)
    (part,) = parts_of(cache / name)  # kept for resuming from the same source
    assert part.stat().st_size == 120_000 and not (cache / name).exists()
    server.drop_after = None
    got = fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=no_retry, progress=False)
    assert server.requests_for(name)[-1]["Range"] == "bytes=120000-"
    assert got.path.read_bytes() == data


def test_hash_mismatch_deletes_and_names_url_expected_actual(cache, blob, server):
    name, _, sha = blob
    server.wrong_body = b"not the checkpoint" * 1000
    actual = hashlib.sha256(server.wrong_body).hexdigest()
    url = f"{server.url}/{name}"
    with pytest.raises(HashMismatchError) as err:
        fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
    message = str(err.value)
    assert url in message and actual in message and f"expected {sha[:8]}" in message
    assert _leftovers(cache) == []


def test_recorded_full_hash_is_checked_on_later_pulls(cache, blob, server):
    name, data, sha = blob
    url = f"{server.url}/{name}"
    fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
    (cache / name).unlink()
    # Same first 8 hex digits is not enough once the full hash is known.
    forged = bytearray(data)
    forged[-1] ^= 0xFF
    server.wrong_body = bytes(forged)
    with pytest.raises(HashMismatchError, match=sha):  # the full 64-digit hash is expected
        fetch_file(name, sha[:8], [url], settings=FAST, progress=False)


def test_404_is_a_clear_error_without_retries(cache, blob, server):
    name, _, sha = blob
    server.status = 404
    url = f"{server.url}/{name}"
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
    assert url in str(err.value) and "RTMBENCH_MIRROR" in str(err.value)
    assert len(server.requests) == 1 and _leftovers(cache) == []


def test_stalled_server_times_out(cache, blob, server):
    name, _, sha = blob
    server.stall = 10.0  # the handler waits at most this long; the client gives up first
    quick = FetchSettings(connect_timeout=2.0, read_timeout=0.3, retries=1, backoff=0.01)
    with pytest.raises(DownloadError, match="stalled") as err:
        fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=quick, progress=False)
    assert "after 2 attempts" in str(err.value) and len(server.requests) == 2


def test_unreachable_host_is_a_clear_error(cache, blob):
    name, _, sha = blob
    with LoopbackServer() as srv:
        dead = srv.url  # a port that nothing listens on once the server has stopped
    with pytest.raises(DownloadError, match="Connection"):
        fetch_file(name, sha[:8], [f"{dead}/{name}"], settings=FAST, progress=False)


def test_offline_never_connects_and_says_where_to_put_the_file(cache, blob, server,
                                                               monkeypatch):
    name, data, sha = blob
    monkeypatch.setenv("RTMBENCH_OFFLINE", "1")
    url = f"{server.url}/{name}"
    with pytest.raises(OfflineError) as err:
        fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
    assert str(cache / name) in str(err.value) and url in str(err.value)
    assert server.requests == []
    (cache / name).write_bytes(data)  # the user follows the advice
    got = fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
    assert got.source == "cache" and got.sha256 == sha and server.requests == []


def test_local_mirror_folder_wins_over_origin(cache, blob, server, tmp_path, monkeypatch):
    name, data, sha = blob
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / name).write_bytes(data)
    monkeypatch.setenv("RTMBENCH_MIRROR", str(folder))
    got = fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=FAST, progress=False)
    assert (got.source, got.url) == ("mirror", str(folder / name))
    assert server.requests == []


def test_mirror_base_url_and_sources_in_order(cache, blob, server, monkeypatch):
    name, data, sha = blob
    with LoopbackServer() as broken:  # serves no files: every request is a 404
        monkeypatch.setenv("RTMBENCH_MIRROR", f"{broken.url}/mirror/")
        got = fetch_file(name, sha[:8], [f"{broken.url}/origin/{name}", f"{server.url}/base"],
                         settings=FAST, progress=False)
        assert [p for p, _ in broken.requests] == [f"/mirror/{name}", f"/origin/{name}"]
    assert (got.source, got.url) == ("origin", f"{server.url}/base/{name}")


def test_local_folder_listed_in_the_zoo(cache, blob, tmp_path):
    name, data, sha = blob
    (tmp_path / name).write_bytes(data)
    got = fetch_file(name, sha[:8], [f"file://{tmp_path}"], settings=FAST, progress=False)
    assert got.source == "local" and got.path.read_bytes() == data


def test_two_processes_fetch_one_file(cache, tmp_path):
    """The second process waits for the first one's download instead of starting its own. The
    server holds the first transfer until the second says it is waiting, so the two overlap
    however the machine schedules them (a fixed transfer time did not, on a busy machine)."""
    name, data, sha = make_blob(size=2_000_000, seed=3)
    with LoopbackServer({name: data}) as srv:
        srv.hold = threading.Event()
        go = tmp_path / "go"
        script = (
            "import json, sys, time, pathlib\n"
            "from rtmbench.sources import fetch_file, FetchSettings\n"
            f"pathlib.Path(sys.argv[1]).touch()\n"
            f"for _ in range(600):\n"
            f"    if pathlib.Path({str(go)!r}).exists(): break\n"
            f"    time.sleep(0.05)\n"
            f"got = fetch_file({name!r}, {sha[:8]!r}, [{srv.url + '/' + name!r}],"
            f" settings=FetchSettings(retries=0, read_timeout=600), progress=False)\n"
            "print(json.dumps(got.provenance()))\n")
        env = {**os.environ, "PYTHONPATH": SRC}
        ready = [tmp_path / f"ready{i}" for i in range(2)]
        procs = [subprocess.Popen([sys.executable, "-c", script, str(r)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for r in ready]
        errs: list[list[str]] = [[] for _ in procs]
        pumps = [threading.Thread(target=lambda p=p, e=e: e.extend(p.stderr), daemon=True)
                 for p, e in zip(procs, errs)]
        for t in pumps:
            t.start()
        try:
            for _ in range(1200):  # both imported and waiting: start them together
                if all(r.exists() for r in ready) or any(p.poll() is not None for p in procs):
                    break
                time.sleep(0.05)
            go.touch()
            deadline = time.monotonic() + 300  # under the clients' read timeout
            while (time.monotonic() < deadline and all(p.poll() is None for p in procs)
                   and not any("waiting for it" in "".join(e) for e in errs)):
                time.sleep(0.02)
            srv.hold.set()
            for p in procs:
                p.wait(timeout=300)
            for t in pumps:
                t.join(timeout=10)
            outs = [(p.stdout.read(), "".join(e)) for p, e in zip(procs, errs)]
        finally:
            srv.hold.set()
            for p in procs:
                if p.poll() is None:
                    p.kill()
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    results = [json.loads(o[0]) for o in outs]
    assert sorted(r["source"] for r in results) == ["cache", "origin"]
    assert all(r["sha256"] == sha for r in results)
    assert len(srv.requests_for(name)) == 1  # the second waited for the first
    assert any("waiting for it" in o[1] for o in outs)
    assert (cache / name).read_bytes() == data and not (cache / f"{name}.part").exists()


# ---------------------------------------------------------------- safe loading

class _RunsCode:
    """Unpickling this calls exec(): the marker file appears iff the code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = network("tiny")
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    return model.state_dict()


@pytest.fixture(scope="module")
def tiny_state():
    return _tiny_state()


def test_code_executing_pickle_is_refused_and_nothing_runs(tmp_path, tiny_state):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"meta": {"note": _RunsCode(marker)}, "state_dict": tiny_state}, path)
    with pytest.raises(UnsafeCheckpointError, match="builtins.exec") as err:
        load_checkpoint(network("tiny"), path)
    assert "--trust-checkpoint" in str(err.value)
    assert not marker.exists()
    # Trusting the file is explicit, and then the pickle does run (which is why it is opt-in).
    load_checkpoint(network("tiny"), path, trust=True)
    assert marker.read_text() == "pwned"


def test_openmmlab_meta_objects_are_dropped_without_being_called(tmp_path, tiny_state,
                                                                 monkeypatch):
    marker = tmp_path / "marker"
    fake = types.ModuleType("mmengine_fake_evil")

    def history_buffer(*args):  # pickled under an mmengine.* name; must never be called
        marker.write_text("called")

    history_buffer.__module__, history_buffer.__qualname__ = "mmengine.evil", "history_buffer"
    fake.history_buffer = history_buffer
    monkeypatch.setitem(sys.modules, "mmengine.evil", fake)

    class Hub:
        def __reduce__(self):
            return (history_buffer, (1, 2))

    from mmengine.config import ConfigDict

    path = tmp_path / "mmdet.pth"
    meta = {"mmdet_version": "3.3.0", "epoch": 300, "seed": np.int64(7),
            "cfg": ConfigDict(a=1), "dataset_meta": {"classes": tuple(f"c{i}" for i in range(80))}}
    torch.save({"meta": meta, "state_dict": tiny_state, "message_hub": Hub()}, path)
    model = network("tiny")
    info = load_checkpoint(model, path)
    assert not marker.exists()
    assert info["layout"] == "mmdet"
    assert info["meta"] == {"mmdet_version": "3.3.0", "epoch": 300, "num_classes": 80}
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_non_tensor_in_state_dict_is_refused(tmp_path, tiny_state):
    path = tmp_path / "odd.pth"
    torch.save({"state_dict": {**tiny_state, "extra": np.float64(1.0)}}, path)
    with pytest.raises(UnsafeCheckpointError, match="extra"):
        read_state_dict(path)


# ---------------------------------------------------------------- layouts and strict loading

def test_mmyolo_table_is_a_bijection_onto_the_same_tensors(tiny_state):
    mmyolo = to_mmyolo(tiny_state)
    assert len(mmyolo) == len(tiny_state)
    back = to_mmdet(mmyolo, "mmyolo")
    assert list(back) == list(tiny_state)
    assert all(back[k] is tiny_state[k] for k in tiny_state)
    assert detect_layout(list(mmyolo)) == "mmyolo" and detect_layout(list(tiny_state)) == "mmdet"
    # Every rename in the table is exercised by the model, on both sides.
    for yolo, det in MMYOLO_TO_MMDET:
        assert any(k.startswith(yolo) for k in mmyolo), yolo
        assert any(k.startswith(det) for k in tiny_state), det


def test_mmyolo_names_follow_mmyolo_source(tiny_state):
    mmyolo = to_mmyolo(tiny_state)
    # BaseYOLONeck/CSPNeXtPAFPN: the only reduce conv is at idx 2; MMDetection's second reduce
    # conv is the 1x1 ConvModule closing top_down_layers[0]; the head sits in head_module.
    same = {"neck.reduce_layers.2.conv.weight": "neck.reduce_layers.0.conv.weight",
            "neck.top_down_layers.0.1.conv.weight": "neck.reduce_layers.1.conv.weight",
            "neck.top_down_layers.0.0.main_conv.conv.weight":
                "neck.top_down_blocks.0.main_conv.conv.weight",
            "neck.top_down_layers.1.final_conv.bn.running_var":
                "neck.top_down_blocks.1.final_conv.bn.running_var",
            "neck.downsample_layers.1.conv.weight": "neck.downsamples.1.conv.weight",
            "neck.bottom_up_layers.0.blocks.0.conv1.conv.weight":
                "neck.bottom_up_blocks.0.blocks.0.conv1.conv.weight",
            "neck.out_layers.2.bn.bias": "neck.out_convs.2.bn.bias",
            "bbox_head.head_module.rtm_cls.0.weight": "bbox_head.rtm_cls.0.weight",
            "bbox_head.head_module.cls_convs.1.0.conv.weight":
                "bbox_head.cls_convs.1.0.conv.weight",
            "backbone.stage4.1.conv2.conv.weight": "backbone.stage4.1.conv2.conv.weight"}
    for yolo, det in same.items():
        assert mmyolo[yolo] is tiny_state[det]


@pytest.mark.parametrize("layout", ["mmdet", "mmyolo"])
@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_both_layouts_load_strictly(tmp_path, tiny_state, layout, fmt):
    state = tiny_state if layout == "mmdet" else to_mmyolo(tiny_state)
    path = tmp_path / f"ckpt.{fmt}"
    if fmt == "pth":
        torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": state}, path)
    else:
        from safetensors.torch import save_file
        # safetensors refuses tensors that share memory (the head's shared convs): copy them
        save_file({k: v.clone().contiguous() for k, v in state.items()}, str(path))
    model = network("tiny")
    info = load_checkpoint(model, path)
    assert info["layout"] == layout
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], tiny_state[k]) for k in tiny_state)


def test_legacy_tood_head_names_load_as_mmdet(tmp_path, tiny_state):
    legacy = {k.replace("bbox_head.rtm_", "bbox_head.tood_"): v for k, v in tiny_state.items()}
    assert any(".tood_cls." in k for k in legacy)
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": legacy}, path)
    model = network("tiny")
    assert load_checkpoint(model, path)["layout"] == "mmdet"
    assert torch.equal(model.state_dict()["bbox_head.rtm_reg.2.bias"],
                       tiny_state["bbox_head.rtm_reg.2.bias"])


def test_wrong_size_lists_keys_and_shapes(tmp_path, tiny_state):
    path = tmp_path / "tiny.pth"
    torch.save({"state_dict": tiny_state}, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(network("m"), path)
    message = str(err.value)
    assert "missing" in message and "shape mismatches" in message
    assert "backbone.stem.0.conv.weight: checkpoint [12, 3, 3, 3] vs model [24, 3, 3, 3]" in message


def test_not_an_rtmdet_checkpoint(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointMismatchError, match="cannot tell"):
        load_checkpoint(network("tiny"), path)


# ---------------------------------------------------------------- zoo and CLI end to end

def _served_tiny(tmp_path: Path, tiny_state) -> tuple[str, bytes, str]:
    """An MMYOLO-format tiny checkpoint named the OpenMMLab way (sha256 prefix in the name)."""
    raw = tmp_path / "raw.pth"
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": to_mmyolo(tiny_state)}, raw)
    data = raw.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    return f"rtmdet_tiny_syncbn_test-{sha[:8]}.pth", data, sha


def _zoo_with(tmp_path: Path, name: str, sha: str, url: str) -> Path:
    text = (Path(__file__).resolve().parents[1] / "zoo" / "rtmdet.yaml").read_text()
    tiny = load_zoo().get("tiny").weights[0]
    text = text.replace(tiny.file, name).replace(f"sha256: {tiny.sha256}", f"sha256: {sha[:8]}")
    text = text.replace(tiny.urls[0], f"{url}/{name}")
    path = tmp_path / "zoo.yaml"
    path.write_text(text)
    return path


def test_fetch_weights_then_load(cache, tmp_path, tiny_state):
    name, data, sha = _served_tiny(tmp_path, tiny_state)
    entry = load_zoo().get("tiny")
    weights = Weights(id="mmyolo", layout="mmyolo", file=name, sha256=sha[:8],
                      urls=["https://download.invalid/x/" + name])
    model_entry = ResolvedModel(entry.entry.model_copy(update={"weights": [weights]}),
                                load_zoo().defaults)
    with LoopbackServer({name: data}) as srv:
        os.environ["RTMBENCH_MIRROR"] = srv.url
        try:
            got = fetch_weights(model_entry, settings=FAST, progress=False)
        finally:
            del os.environ["RTMBENCH_MIRROR"]
    assert got.source == "mirror" and got.sha256 == sha
    info = load_checkpoint(network("tiny"), got.path)
    assert info == {"layout": "mmyolo", "sha256": sha, "meta": {"mmdet_version": "3.3.0"}}


def test_cli_fetch_tiny_from_loopback_mirror(cache, tmp_path, tiny_state, monkeypatch, capsys):
    name, data, sha = _served_tiny(tmp_path, tiny_state)
    with LoopbackServer({name: data}) as srv:
        zoo = _zoo_with(tmp_path, name, sha, "https://download.invalid/mmyolo")
        monkeypatch.setenv("RTMBENCH_MIRROR", srv.url)
        assert main(["--zoo", str(zoo), "fetch", "tiny", "--json", "--load"]) == 0
        first = json.loads(capsys.readouterr().out)
        assert main(["--zoo", str(zoo), "fetch", "tiny", "--json"]) == 0
        second = json.loads(capsys.readouterr().out)
    assert (first["source"], first["sha256"], first["loaded"]) == (
        "mirror", sha, {"layout": "mmyolo", "strict": True})
    assert second["source"] == "cache" and len(srv.requests) == 1
    monkeypatch.setenv("RTMBENCH_OFFLINE", "1")
    assert main(["--zoo", str(zoo), "fetch", "s"]) == 3  # not run: offline, not in the cache
    assert "RTMBENCH_OFFLINE=1" in capsys.readouterr().err


def test_server_without_range_support_restarts_from_zero(cache, blob, server):
    name, data, sha = blob
    server.drop_after, server.ranges = 100_000, False
    got = fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=FAST, progress=False)
    heads = server.requests_for(name)
    assert len(heads) == 2 and heads[1]["Range"] == "bytes=100000-"  # asked, got a 200
    assert got.path.read_bytes() == data


def test_cli_fetch_all_weights_skips_the_unpublished_ones(cache, monkeypatch, capsys):
    """`fetch --weights all`: every published checkpoint of a size, and a word on each that
    was never published (x has no MMYOLO checkpoint); offline, the first missing file stops
    it as "not run" (exit 3), naming the file."""
    monkeypatch.setenv("RTMBENCH_OFFLINE", "1")
    assert main(["fetch", "x", "--weights", "all", "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "rtmdet-x: no mmyolo weights were published" in err
    assert "rtmdet_x_8xb32-300e_coco_20220715_230555-cc79b9ae.pth" in err  # the mmdet file


# ---------------------------------------------------------------- files that are no checkpoint
def _cli_loading(command: str, checkpoint: Path, tmp_path: Path) -> list[str]:
    if command == "evaluate":
        coco = tmp_path / "coco"
        (coco / "annotations").mkdir(parents=True, exist_ok=True)
        (coco / "annotations" / "instances_val2017.json").write_text("{}")
        return ["evaluate", "tiny", "--coco", str(coco), "--checkpoint", str(checkpoint),
                "--out", str(tmp_path / "out"), "--no-progress"]
    if command == "export":
        return ["export", "tiny", "--checkpoint", str(checkpoint), "-o", str(tmp_path / "m.onnx")]
    return ["latency", "tiny", "--checkpoint", str(checkpoint), "--iterations", "1"]


@pytest.mark.parametrize("content", [b"", b"garbage, no checkpoint\n", b"PK\x03\x04 cut zip"])
@pytest.mark.parametrize("command", ["evaluate", "export", "latency"])
def test_an_empty_or_garbage_file_is_not_a_checkpoint_and_trust_changes_nothing(
        tmp_path, capsys, content, command):
    """No advice to trust a file that is no checkpoint at all; --trust-checkpoint is accepted
    by every command that loads one, and gives the same clear failure."""
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    for trust in ([], ["--trust-checkpoint"]):
        assert main(_cli_loading(command, path, tmp_path) + trust) == 2, (command, trust)
        err = capsys.readouterr().err
        assert "Traceback" not in err and "not a checkpoint" in err, err
        assert str(path) in err and "--trust-checkpoint" not in err, err
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "out").exists()


def test_a_legacy_pickle_checkpoint_loads_when_trusted_on_every_command(tmp_path, capsys,
                                                                         tiny_state):
    path = tmp_path / "legacy.pth"
    torch.save({"state_dict": tiny_state}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match="--trust-checkpoint"):
        load_checkpoint(network("tiny"), path)
    assert load_checkpoint(network("tiny"), path, trust=True)["layout"] == "mmdet"
    argv = _cli_loading("export", path, tmp_path) + ["--input-size", "64", "64"]
    assert main(argv) == 2 and "--trust-checkpoint" in capsys.readouterr().err
    assert main(argv + ["--trust-checkpoint"]) == 0
    assert "legacy.pth" in capsys.readouterr().out
