"""Checkpoint sources under hostile conditions: proxies, CA bundles, hf:// repositories on a
loopback Hub, links planted in the cache, parts from another source, trickling and oversize
servers, unwritable caches, stale locks. Every server is on 127.0.0.1; nothing leaves the
machine (proxy variables are set by each test, never inherited)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtmbench.cli import main
from rtmbench.sources import DownloadError, FetchSettings, HashMismatchError, fetch_file
from rtmbench.sources.fetch import part_for, parts_of
from rtmbench.sources.fetch_errors import (
    CacheNotWritable,
    CheckpointError,
    OfflineError,
    SizeLimitError,
    UnsafeCachePath,
)
from tests.fetch_fixtures import FAST
from tests.http_server import LoopbackProxy, LoopbackServer

ONCE = dataclasses.replace(FAST, retries=0)
COMMIT = "0123456789abcdef0123456789abcdef01234567"






@pytest.fixture
def hub(blob, monkeypatch):
    """A loopback Hugging Face Hub serving the blob at any OWNER/REPO@REVISION/PATH."""
    name, data, _ = blob
    with LoopbackServer({name: data}) as srv:
        srv.hub_commit = COMMIT
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        yield srv


def _wait_for(condition, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.02)


# ---------------------------------------------------------------- 1. proxies, CA bundles

def test_fetch_goes_through_the_proxy_from_the_environment(cache, blob, server, monkeypatch):
    name, data, sha = blob
    url = f"{server.url}/{name}"
    with LoopbackProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        got = fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
        assert proxy.requests == [("GET", url)]  # the proxy saw it, in absolute form
        assert got.path.read_bytes() == data and got.url == url
        # NO_PROXY is honoured: the same host is then reached directly.
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        (cache / name).unlink()
        fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
        assert len(proxy.requests) == 1 and len(server.requests) == 2


def test_a_dead_proxy_is_a_clear_error(cache, blob, server, monkeypatch):
    name, _, sha = blob
    with LoopbackProxy() as proxy:
        dead = proxy.url
    monkeypatch.setenv("HTTP_PROXY", dead)
    with pytest.raises(DownloadError, match="HTTP_PROXY") as err:
        fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=ONCE, progress=False)
    assert server.requests == [] and "Traceback" not in str(err.value)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (openssl's command line), as a private CA."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True, timeout=60)
    return str(cert), str(key)


def test_https_through_a_proxy_with_a_custom_ca_bundle(cache, blob, certificate, monkeypatch):
    name, data, sha = blob
    with LoopbackServer({name: data}, tls=certificate) as srv, LoopbackProxy() as proxy:
        url = f"{srv.url}/{name}"
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("RTMBENCH_RETRIES", "0")
        with pytest.raises(DownloadError, match="not trusted") as err:  # the system's CAs
            fetch_file(name, sha[:8], [url], progress=False)
        assert "RTMBENCH_CA_BUNDLE" in str(err.value) and srv.requests == []
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", certificate[0])  # as requests users have it
        got = fetch_file(name, sha[:8], [url], progress=False)
    assert got.path.read_bytes() == data
    port = url.split(":")[2].split("/")[0]
    assert proxy.requests == [("CONNECT", f"127.0.0.1:{port}")] * 2  # tunnelled, twice
    assert len(srv.requests) == 1


# ---------------------------------------------------------------- 2. hf:// sources

def test_hf_mirror_on_a_loopback_hub(cache, blob, hub, monkeypatch, tmp_path):
    name, data, sha = blob
    monkeypatch.setenv("RTMBENCH_MIRROR", "hf://someone/rtmdet-weights@main/mmyolo")
    got = fetch_file(name, sha[:8], ["https://download.invalid/" + name], settings=FAST,
                     progress=False)
    assert got.source == "mirror"
    assert got.url == f"hf://someone/rtmdet-weights@{COMMIT}/mmyolo/{name}"
    assert got.path.read_bytes() == data and got.sha256 == sha
    resolve = f"/someone/rtmdet-weights/resolve/main/mmyolo/{name}"
    assert [(m, p) for m, p, _ in hub.log] == [("HEAD", resolve), ("GET", resolve)]
    # huggingface_hub kept its own copy; rtmbench's is a verified copy, not a link into it.
    assert not got.path.is_symlink() and any((tmp_path / "hf-cache").rglob(name))
    assert json.loads((cache / f"{name}.verified.json").read_text())["url"] == got.url


def test_hf_wrong_file_is_refused_by_its_hash(cache, blob, hub, monkeypatch):
    name, _, sha = blob
    hub.wrong_body = b"not the checkpoint" * 5000
    actual = hashlib.sha256(hub.wrong_body).hexdigest()
    with pytest.raises(HashMismatchError) as err:
        fetch_file(name, sha[:8], ["hf://someone/repo"], settings=FAST, progress=False)
    message = str(err.value)
    assert f"hf://someone/repo@{COMMIT}/{name}" in message and actual in message
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == []
    assert len(hub.requests) == 1  # downloaded now, so not downloaded again


def test_hf_cache_is_not_trusted_a_damaged_copy_is_downloaded_again(cache, blob, hub,
                                                                   tmp_path):
    name, data, sha = blob
    fetch_file(name, sha[:8], ["hf://someone/repo"], settings=FAST, progress=False)
    blobs = [p for p in (tmp_path / "hf-cache").rglob("*") if p.parent.name == "blobs"]
    assert len(blobs) == 1
    blobs[0].write_bytes(b"tampered" * 100)  # someone changes huggingface_hub's cache
    for leftover in cache.glob(name + "*"):
        leftover.unlink()
    got = fetch_file(name, sha[:8], ["hf://someone/repo"], settings=FAST, progress=False)
    assert got.path.read_bytes() == data
    assert len(hub.requests) == 2 and blobs[0].read_bytes() == data  # forced, and repaired


def test_hf_private_repo_needs_hf_token(cache, blob, hub, monkeypatch):
    name, data, sha = blob
    hub.hub_token = "hf_secret"
    with pytest.raises(DownloadError, match="HF_TOKEN") as err:
        fetch_file(name, sha[:8], ["hf://someone/private"], settings=FAST, progress=False)
    assert "hf://someone/private" in str(err.value)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    got = fetch_file(name, sha[:8], ["hf://someone/private"], settings=FAST, progress=False)
    assert got.path.read_bytes() == data
    sent = {k.lower(): v for k, v in hub.log[-1][2].items()}
    assert sent["authorization"] == "Bearer hf_secret"


@pytest.mark.parametrize("variable", ["RTMBENCH_OFFLINE", "HF_HUB_OFFLINE"])
def test_hf_offline_never_connects_but_uses_a_verified_copy_of_hf_cache(cache, blob, hub,
                                                                        monkeypatch, variable):
    name, data, sha = blob
    monkeypatch.setenv(variable, "1")
    with pytest.raises(DownloadError, match="not in huggingface_hub's cache"):
        fetch_file(name, sha[:8], ["hf://someone/repo"], settings=FAST, progress=False)
    assert hub.log == []
    monkeypatch.delenv(variable)
    fetch_file(name, sha[:8], ["hf://someone/repo"], settings=FAST, progress=False)
    for leftover in cache.glob(name + "*"):
        leftover.unlink()
    requests = len(hub.log)
    monkeypatch.setenv(variable, "1")
    got = fetch_file(name, sha[:8], ["hf://someone/repo"], settings=FAST, progress=False)
    assert got.path.read_bytes() == data and got.url == f"hf://someone/repo@{COMMIT}/{name}"
    assert len(hub.log) == requests


def test_hf_through_a_proxy(cache, blob, hub, monkeypatch):
    name, data, sha = blob
    with LoopbackProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setattr("huggingface_hub.utils._http._GLOBAL_CLIENT", None)  # new env
        got = fetch_file(name, sha[:8], ["hf://someone/repo"], settings=FAST, progress=False)
        monkeypatch.setattr("huggingface_hub.utils._http._GLOBAL_CLIENT", None)
    assert got.path.read_bytes() == data
    assert [m for m, _ in proxy.requests] == ["HEAD", "GET"]
    assert all(t.startswith(f"{hub.url}/someone/repo/resolve/") for _, t in proxy.requests)


def test_cli_fetch_json_and_records_name_the_hf_source(cache, hub, tmp_path, monkeypatch,
                                                      capsys):
    from rtmbench.spec.zoo import load_zoo
    from tests.test_checkpoints import _served_tiny, _tiny_state

    name, data, sha = _served_tiny(tmp_path, _tiny_state())
    hub.files[name] = data
    tiny = load_zoo().get("tiny").weights[0]
    text = load_zoo().path.read_text().replace(tiny.urls[0], "hf://openmmlab/rtmdet@v1")
    text = text.replace(tiny.file, name).replace(f"sha256: {tiny.sha256}", f"sha256: {sha[:8]}")
    zoo = tmp_path / "zoo.yaml"
    zoo.write_text(text)
    assert main(["--zoo", str(zoo), "fetch", "tiny", "--json", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["source"], record["url"]) == ("origin", f"hf://openmmlab/rtmdet@{COMMIT}/"
                                                           f"{name}")
    from rtmbench.run.build import build

    built = build("tiny", progress=False, zoo_path=zoo)  # what a record's checkpoint holds
    assert built.provenance["url"] == record["url"] and built.provenance["source"] == "cache"
    assert built.provenance["sha256"] == sha


# ---------------------------------------------------------------- 3. links in the cache

def _outside(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"another user's file")
    return victim


@pytest.mark.parametrize("planted", ["{name}.part", "{name}.lock", "{name}",
                                     "hashes.json.lock", "hashes.json", "{name}.verified.json",
                                     "{part}", "{part}.source"])
def test_symlinks_planted_in_the_cache_are_never_followed(cache, blob, server, tmp_path,
                                                          planted):
    name, _, sha = blob
    victim = _outside(tmp_path)
    cache.mkdir(parents=True)
    part = part_for(cache / name, f"{server.url}/{name}").name
    link = cache / planted.format(name=name, part=part)
    link.symlink_to(victim)
    with pytest.raises(UnsafeCachePath) as err:
        fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=FAST, progress=False)
    assert str(link) in str(err.value) and "symbolic link" in str(err.value)
    assert victim.read_bytes() == b"another user's file" and link.is_symlink()
    assert server.requests == []


def test_a_part_hard_linked_to_another_file_is_refused(cache, blob, server, tmp_path):
    name, _, sha = blob
    victim = _outside(tmp_path)
    cache.mkdir(parents=True)
    os.link(victim, cache / f"{name}.part")
    (cache / f"{name}.part.source").write_text(f"{server.url}/{name}")  # "resume" it
    with pytest.raises(UnsafeCachePath, match="hard link"):
        fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=FAST, progress=False)
    assert victim.read_bytes() == b"another user's file"


@pytest.mark.parametrize("file", ["../escape.pth", "/tmp/escape.pth", "a/b.pth", ".."])
def test_file_names_cannot_leave_the_cache(cache, server, file):
    with pytest.raises(CheckpointError, match="plain file name"):
        fetch_file(file, "00000000", [f"{server.url}/x"], settings=FAST, progress=False)
    assert server.requests == []


# ---------------------------------------------------------------- 4. a part from another source

def test_a_part_is_never_resumed_from_another_source_and_survives_it(cache, blob, server):
    name, data, sha = blob
    with LoopbackServer({name: b"X" * len(data)}) as bad:  # serves other bytes, then hangs up
        bad.drop_after, bad.drop_times = 100_000, 5
        bad_url = f"{bad.url}/{name}"
        with pytest.raises(DownloadError) as err:
            fetch_file(name, sha[:8], [bad_url], settings=ONCE, progress=False)
    (bad_part,) = parts_of(cache / name)
    assert bad_part == part_for(cache / name, bad_url) and bad_part.stat().st_size == 100_000
    assert (cache / f"{bad_part.name}.source").read_text() == bad_url
    assert f"{bad_part.name} (100,000 bytes from {bad_url})" in str(err.value)
    # The good source starts from zero in its own part instead of appending to the bad
    # source's bytes; once the file is verified no part of it is left.
    got = fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=ONCE, progress=False)
    assert got.path.read_bytes() == data and "Range" not in server.requests[0][1]
    assert parts_of(cache / name) == [] and not list(cache.glob("*.source"))


def test_within_one_fetch_the_next_source_starts_over_and_blame_stays_put(cache, blob,
                                                                          server):
    name, data, sha = blob
    with LoopbackServer({name: b"X" * len(data)}) as bad:
        bad.drop_after, bad.drop_times = 100_000, 5
        got = fetch_file(name, sha[:8], [f"{bad.url}/{name}", f"{server.url}/{name}"],
                         settings=ONCE, progress=False)
    assert got.url == f"{server.url}/{name}" and "Range" not in server.requests[0][1]
    # Bad bytes that do complete are blamed on the source that sent them, not on the next.
    (cache / name).unlink()
    (cache / f"{name}.verified.json").unlink()
    (cache / "hashes.json").unlink()
    with LoopbackServer({name: b"X" * len(data)}) as bad:
        bad.drop_after, bad.drop_times = 100_000, 1
        with pytest.raises(DownloadError):
            fetch_file(name, sha[:8], [f"{bad.url}/{name}"], settings=ONCE, progress=False)
        server.status = 404
        with pytest.raises(HashMismatchError) as err:
            fetch_file(name, sha[:8], [f"{bad.url}/{name}", f"{server.url}/{name}"],
                       settings=ONCE, progress=False)
        assert bad.requests_for(name)[-1]["Range"] == "bytes=100000-"  # its own part
    message = str(err.value)
    assert f"{bad.url}/{name} gave sha256" in message
    assert f"{server.url}/{name} gave" not in message


# ---------------------------------------------------------------- 5. deadline and size cap

def test_a_trickling_server_hits_the_overall_deadline(cache, blob, server, monkeypatch):
    name, data, sha = blob
    server.trickle = 0.02  # 50 bytes/s: never stalls long enough for the read timeout
    monkeypatch.setenv("RTMBENCH_DOWNLOAD_DEADLINE", "1.0")
    settings = dataclasses.replace(FAST, deadline=FetchSettings.from_env().deadline)
    assert settings.deadline == 1.0
    with pytest.raises(DownloadError, match="RTMBENCH_DOWNLOAD_DEADLINE=1s") as err:
        fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=settings, progress=False)
    (part,) = parts_of(cache / name)
    kept = part.stat().st_size
    assert 0 < kept < 1000 and "resumes them from this source" in str(err.value)
    assert ".." not in str(err.value)  # one full stop, not "deadline.."
    assert len(server.requests) == 1  # the deadline covers retries: no second attempt


@pytest.mark.parametrize("send_length", [True, False])
def test_an_oversize_body_is_cut_off_early(cache, blob, server, send_length):
    name, data, sha = blob
    server.oversize, server.send_length = 64 << 20, send_length  # 64 MiB for a 300 kB file
    with pytest.raises(SizeLimitError) as err:
        fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=FAST, progress=False,
                   size=len(data))  # the zoo's size
    message = str(err.value)
    assert f"{server.url}/{name}" in message and f"{len(data):,} bytes" in message
    assert ("announces" if send_length else "sent more than") in message
    assert not (cache / f"{name}.part").exists()
    _wait_for(lambda: server.sent)
    assert server.sent and server.sent[0] < 32 << 20  # stopped long before the end
    assert len(server.requests) == 1  # not retried


def test_an_oversize_file_on_the_hub_is_cut_off_too(cache, blob, hub):
    name, data, sha = blob
    hub.oversize = 64 << 20
    with pytest.raises(SizeLimitError, match=f"hf://someone/repo/{name} announces"):
        fetch_file(name, sha[:8], ["hf://someone/repo"], settings=FAST, progress=False,
                   size=len(data))
    _wait_for(lambda: hub.sent)
    assert hub.sent and hub.sent[0] < 32 << 20


def test_the_size_cap_applies_without_a_zoo_size(cache, blob, server, monkeypatch):
    name, data, sha = blob
    monkeypatch.setenv("RTMBENCH_MAX_DOWNLOAD_BYTES", "100000")
    settings = dataclasses.replace(FAST, max_bytes=FetchSettings.from_env().max_bytes)
    server.send_length = False
    with pytest.raises(SizeLimitError, match="RTMBENCH_MAX_DOWNLOAD_BYTES=100000"):
        fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=settings, progress=False)


# ---------------------------------------------------------------- 7. unwritable caches

def test_a_cache_under_a_regular_file_is_a_clear_error(tmp_path, blob, server, monkeypatch,
                                                       capsys):
    name, _, sha = blob
    (tmp_path / "file").write_text("not a directory")
    root = tmp_path / "file" / "cache"
    with pytest.raises(CacheNotWritable) as err:
        fetch_file(name, sha[:8], [f"{server.url}/{name}"], cache=root, settings=FAST,
                   progress=False)
    assert str(root) in str(err.value) and "RTMBENCH_CACHE" in str(err.value)
    assert CacheNotWritable.outcome == "failed"
    monkeypatch.setenv("RTMBENCH_CACHE", str(root))
    monkeypatch.setenv("RTMBENCH_MIRROR", server.url)
    assert main(["fetch", "tiny", "--quiet"]) == 2
    out = capsys.readouterr().err
    assert f"the rtmbench cache {root}" in out and "Traceback" not in out


def _read_only(folder: Path):
    """Make ``folder`` unwritable for this process; returns how to undo it. Root ignores
    permission bits, so as root the immutable attribute (chattr +i) is used, if it works."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if shutil.which("chattr") and subprocess.run(["chattr", "+i", str(folder)],
                                                 capture_output=True).returncode == 0:
        return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)
    pytest.skip("running as root, where permission bits do not bite, and chattr +i is not "
                "available here; the cache-under-a-file test covers the error")


def test_a_read_only_cache_is_a_clear_error(tmp_path, blob, server, monkeypatch, capsys):
    name, _, sha = blob
    root = tmp_path / "ro"
    root.mkdir()
    undo = _read_only(root)
    try:
        with pytest.raises(CacheNotWritable, match="RTMBENCH_CACHE") as err:
            fetch_file(name, sha[:8], [f"{server.url}/{name}"], cache=root, settings=FAST,
                       progress=False)
        assert str(root) in str(err.value) and server.requests == []  # before any download
        monkeypatch.setenv("RTMBENCH_CACHE", str(root))
        monkeypatch.setenv("RTMBENCH_MIRROR", server.url)
        assert main(["fetch", "tiny", "--quiet"]) == 2
        out = capsys.readouterr().err
        assert f"the rtmbench cache {root}" in out and "Traceback" not in out
    finally:
        undo()


# ---------------------------------------------------------------- 10. stale locks

def test_a_lock_left_by_a_killed_process_neither_blocks_nor_piles_up(cache, blob, server,
                                                                     capsys):
    name, data, sha = blob
    cache.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from filelock import FileLock\n"
         f"FileLock({str(cache / (name + '.lock'))!r}).acquire(); print('held', flush=True)\n"
         "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (cache / f"{name}.lock").exists()  # the killed holder left its lock file
    got = fetch_file(name, sha[:8], [f"{server.url}/{name}"],
                     settings=dataclasses.replace(FAST, lock_timeout=5.0), progress=False)
    assert got.path.read_bytes() == data
    assert "waiting" not in capsys.readouterr().err
    for _ in range(3):
        (cache / name).unlink()
        fetch_file(name, sha[:8], [f"{server.url}/{name}"], settings=FAST, progress=False)
    assert sorted(p.name for p in cache.glob("*.lock")) == sorted(
        [f"{name}.lock", "hashes.json.lock"])


def test_offline_hf_and_http_sources_together(cache, blob, server, hub, monkeypatch):
    name, _, sha = blob
    monkeypatch.setenv("RTMBENCH_OFFLINE", "1")
    with pytest.raises(OfflineError, match="RTMBENCH_OFFLINE=1"):
        fetch_file(name, sha[:8], ["hf://someone/repo", f"{server.url}/{name}"], settings=FAST,
                   progress=False)
    assert server.requests == [] and hub.log == []


def test_a_ca_bundle_that_is_not_a_file_is_a_settings_error_not_an_unreachable_source(
        cache, monkeypatch):
    """A stale REQUESTS_CA_BUNDLE would make every HTTPS source grey ('not run'): it is an
    error naming the variable, before anything is fetched."""
    from rtmbench.errors import InputError
    from rtmbench.spec.settings import load_settings

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cache / "gone.pem"))
    with pytest.raises(InputError, match=r"CA_BUNDLE=.*gone\.pem.*does not exist") as err:
        load_settings()
    assert err.value.outcome == "failed"


def test_unsetting_the_ca_bundle_gives_huggingface_hub_its_own_client_back(tmp_path,
                                                                          certificate):
    from huggingface_hub.utils import _http

    from rtmbench.sources import hf
    from rtmbench.sources.download import FetchSettings

    try:
        hf._configure_client(FetchSettings(ca_bundle=certificate[0]))
        assert _http._GLOBAL_CLIENT_FACTORY is not _http.default_client_factory
        hf._configure_client(FetchSettings(ca_bundle=None))
        assert _http._GLOBAL_CLIENT_FACTORY is _http.default_client_factory
    finally:
        hf._configure_client(FetchSettings(ca_bundle=None))


# ---------------------------------------------------------------- 11. parts kept per source

def test_a_mirrors_part_survives_the_next_source_and_resumes_from_its_own(cache, blob,
                                                                          monkeypatch):
    """A mirror's partial download is not lost when the next source is tried: each source
    keeps its own part and resumes it; all are deleted once the file is verified."""
    name, data, sha = blob
    with LoopbackServer({name: data}) as mirror, LoopbackServer({name: data}) as origin:
        mirror.drop_after, mirror.drop_times = 100_000, 1
        origin.drop_after, origin.drop_times = 50_000, 1
        monkeypatch.setenv("RTMBENCH_MIRROR", mirror.url)
        origin_url = f"{origin.url}/{name}"
        with pytest.raises(DownloadError) as err:
            fetch_file(name, sha[:8], [origin_url], settings=ONCE, progress=False)
        assert "resumes" not in str(err.value) or "kept" in str(err.value)
        sizes = {p.name: p.stat().st_size for p in parts_of(cache / name)}
        assert sizes == {part_for(cache / name, f"{mirror.url}/{name}").name: 100_000,
                         part_for(cache / name, origin_url).name: 50_000}
        got = fetch_file(name, sha[:8], [origin_url], settings=ONCE, progress=False)
        assert got.source == "mirror" and got.path.read_bytes() == data
        assert mirror.requests_for(name)[-1]["Range"] == "bytes=100000-"  # not from zero
        assert len(origin.requests) == 1  # the mirror finished: the origin was not asked again
    assert parts_of(cache / name) == [] and sorted(
        p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [
        name, f"{name}.verified.json", "hashes.json"]


def test_a_part_left_by_an_older_rtmbench_is_resumed_from_the_source_it_names(cache, blob,
                                                                             server):
    name, data, sha = blob
    url = f"{server.url}/{name}"
    cache.mkdir(parents=True)
    (cache / f"{name}.part").write_bytes(data[:120_000])
    (cache / f"{name}.part.source").write_text(url)
    got = fetch_file(name, sha[:8], [url], settings=ONCE, progress=False)
    assert got.path.read_bytes() == data
    assert server.requests_for(name)[0]["Range"] == "bytes=120000-"
    assert not (cache / f"{name}.part").exists() and not (cache / f"{name}.part.source").exists()


# ---------------------------------------------------------------- 12. trust comes from a hash

def _tamper_in_place(path: Path) -> None:
    """Change one byte, then restore the mtime, as someone covering their tracks would."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


def test_a_byte_changed_in_place_with_its_mtime_restored_is_refused(cache, blob, server,
                                                                    monkeypatch, capsys):
    name, _, sha = blob
    url = f"{server.url}/{name}"
    fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
    _tamper_in_place(cache / name)
    with pytest.raises(HashMismatchError, match="changed since it was verified") as err:
        fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
    assert str(cache / name) in str(err.value) and len(server.requests) == 1


def test_a_planted_sidecar_and_hashes_json_cannot_vouch_for_a_modified_file(cache, blob,
                                                                          server):
    name, data, sha = blob
    url = f"{server.url}/{name}"
    fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
    target = cache / name
    _tamper_in_place(target)
    st = target.stat()
    forged = {"file": name, "sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
              "source": "origin", "url": url}
    (cache / f"{name}.verified.json").write_text(json.dumps(forged))
    (cache / "hashes.json").write_text(json.dumps({name: sha}))
    with pytest.raises(HashMismatchError):
        fetch_file(name, sha[:8], [url], settings=FAST, progress=False)


def test_loading_hashes_the_bytes_it_loads_never_a_sidecar(cache, tmp_path):
    """The sha256 a record carries is that of the bytes loaded; a fetched file changed in the
    cache before it is loaded is refused."""
    from rtmbench.run.build import network
    from rtmbench.sources import load_checkpoint
    from tests.test_checkpoints import _served_tiny, _tiny_state

    name, data, sha = _served_tiny(tmp_path, _tiny_state())
    path = cache / name
    cache.mkdir(parents=True)
    path.write_bytes(data)
    forged = "f" * 64
    st = path.stat()
    (cache / f"{name}.verified.json").write_text(json.dumps(
        {"file": name, "sha256": forged, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
    info = load_checkpoint(network("tiny"), path)
    assert info["sha256"] == sha
    with pytest.raises(HashMismatchError, match="changed in the cache since"):
        load_checkpoint(network("tiny"), path, sha256=forged)


def test_a_symlinked_sidecar_of_a_cached_file_is_never_read(cache, blob, server, tmp_path):
    name, data, sha = blob
    url = f"{server.url}/{name}"
    fetch_file(name, sha[:8], [url], settings=FAST, progress=False)
    elsewhere = tmp_path / "forged.json"
    elsewhere.write_text(json.dumps({"sha256": sha, "url": "https://forged.invalid/x"}))
    sidecar = cache / f"{name}.verified.json"
    sidecar.unlink()
    sidecar.symlink_to(elsewhere)
    with pytest.raises(UnsafeCachePath, match="symbolic link"):
        fetch_file(name, sha[:8], [url], settings=FAST, progress=False)


# ---------------------------------------------------------------- 13. a full disk

class _FillingDisk:
    """A file whose disk fills up after ``room`` bytes (writes then fail with ENOSPC)."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = min(len(data), self.room)
        self.room -= n
        return self.f.write(bytes(data[:n]))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


@pytest.mark.parametrize("where", ["http", "folder"])
def test_a_full_disk_deletes_the_part_being_written_and_says_so(cache, blob, server, tmp_path,
                                                                monkeypatch, where):
    import builtins

    import rtmbench.sources.download as download_module

    name, data, sha = blob

    def filling_open(file, mode="r", *args, **kwargs):
        f = builtins.open(file, mode, *args, **kwargs)
        return _FillingDisk(f, 70_000) if "w" in mode else f

    monkeypatch.setattr(download_module, "open", filling_open, raising=False)
    if where == "folder":
        (tmp_path / "folder").mkdir()
        (tmp_path / "folder" / name).write_bytes(data)
        url = str(tmp_path / "folder")
    else:
        url = f"{server.url}/{name}"
    with pytest.raises(CacheNotWritable) as err:
        fetch_file(name, sha[:8], [url], settings=ONCE, progress=False)
    message = str(err.value)
    assert str(cache) in message and "RTMBENCH_CACHE" in message
    assert "No space left on device" in message and "was deleted to free its space" in message
    assert parts_of(cache / name) == [] and not list(cache.glob("*.source"))


# ---------------------------------------------------------------- 14. where to turn

@pytest.mark.parametrize("case", ["http", "folder", "hf", "offline"])
def test_when_every_source_fails_the_message_points_to_mirrors_and_the_guide(
        cache, blob, server, hub, tmp_path, monkeypatch, case):
    name, _, sha = blob
    urls = {"http": [f"{server.url}/missing/{name}"], "folder": [str(tmp_path / "empty")],
            "hf": ["hf://someone/empty-repo"], "offline": [f"{server.url}/{name}"]}[case]
    server.status = 404
    hub.files.clear()
    (tmp_path / "empty").mkdir()
    if case == "offline":
        monkeypatch.setenv("RTMBENCH_OFFLINE", "1")
    with pytest.raises(DownloadError) as err:  # OfflineError is one
        fetch_file(name, sha[:8], urls, settings=ONCE, progress=False)
    message = str(err.value)
    assert "RTMBENCH_MIRROR" in message
    assert 'docs/reproducing.md, section "Checkpoints and mirrors"' in message
    assert ".." not in message.replace("../", "")


def test_an_hf_dataset_repository_is_fetched_as_a_dataset(cache, blob, hub, monkeypatch):
    name, data, sha = blob
    monkeypatch.setenv("RTMBENCH_MIRROR", "hf://datasets/someone/coco-2017@main/zips")
    got = fetch_file(name, sha[:8], ["https://download.invalid/" + name], settings=FAST,
                     progress=False)
    assert got.url == f"hf://datasets/someone/coco-2017@{COMMIT}/zips/{name}"
    assert got.path.read_bytes() == data
    resolve = f"/datasets/someone/coco-2017/resolve/main/zips/{name}"
    assert [(m, p) for m, p, _ in hub.log] == [("HEAD", resolve), ("GET", resolve)]


def test_an_empty_setting_counts_as_unset(monkeypatch):
    """`RTMBENCH_OFFLINE= rtmbench ...` is how a shell unsets a variable for one command."""
    from rtmbench.spec.settings import Settings

    monkeypatch.setenv("RTMBENCH_OFFLINE", "")
    monkeypatch.setenv("RTMBENCH_RETRIES", "")
    settings = Settings()
    assert settings.offline is False and settings.retries == 3
    monkeypatch.setenv("RTMBENCH_OFFLINE", "perhaps")
    with pytest.raises(ValueError):
        Settings()
