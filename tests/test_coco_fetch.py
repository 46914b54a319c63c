"""`rtmbench fetch --coco` end to end on generated archives packed like COCO's own (val2017.zip,
annotations_trainval2017.zip), declared in a test zoo with their real sizes and hashes and
served from a loopback server or a folder: extraction, what is refused, resuming, a kill during
extraction, exit codes, offline; and the fetched set used by `evaluate` and a suite without
RTMBENCH_COCO. Nothing real is downloaded."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from rtmbench.cli import main
from rtmbench.data.synthetic import make_synthetic_coco
from rtmbench.errors import DatasetMissing
from rtmbench.spec.fetched_datasets import COMPLETE_MARKER
from tests.fetch_fixtures import SRC
from tests.http_server import LoopbackServer

ROOT = Path(__file__).resolve().parents[1]
VAL, ANN = "val2017.zip", "annotations_trainval2017.zip"
INSTANCES = "annotations/instances_val2017.json"


@dataclass
class Archives:
    files: dict[str, bytes]     # archive name -> bytes
    images: list[str]           # val2017/<name>.jpg members
    instances: bytes            # annotations/instances_val2017.json

    def sha(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()


def _zip(entries: list[tuple[str, bytes]], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            if name.endswith("/"):
                zf.writestr(zipfile.ZipInfo(name), b"")
            else:
                zf.writestr(name, data)
        for name, target in (links or {}).items():  # a Unix symbolic link entry
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def coco_archives(tmp_path_factory) -> Archives:
    """Three generated COCO-format images and their annotations, packed as COCO packs them;
    the annotations archive also holds files that must not be extracted."""
    root = make_synthetic_coco(tmp_path_factory.mktemp("coco-src"), 3, seed=0)
    images = sorted((root / "val2017").iterdir())
    instances = (root / INSTANCES).read_bytes()
    val = _zip([("val2017/", b"")] + [(f"val2017/{p.name}", p.read_bytes()) for p in images])
    ann = _zip([("annotations/", b""), ("annotations/instances_train2017.json", instances),
                (INSTANCES, instances), ("annotations/captions_val2017.json", b"{}")])
    return Archives({VAL: val, ANN: ann}, [f"val2017/{p.name}" for p in images], instances)


def write_zoo(tmp_path: Path, archives: Archives, sources: dict[str, list[str]],
              sha: dict[str, str] | None = None, member_sha: str | None = None,
              name: str = "zoo.yaml") -> Path:
    """The shipped zoo with its COCO entry replaced by one declaring ``archives``."""
    text = (ROOT / "zoo" / "rtmdet.yaml").read_text()
    text = text[:text.index("\ndatasets:")]
    sha = {**{n: archives.sha(n) for n in archives.files}, **(sha or {})}
    member = member_sha or hashlib.sha256(archives.instances).hexdigest()
    lines = ["", "datasets:", "  coco-val2017:", "    title: generated COCO-format data",
             "    url: https://example.invalid/coco", "    archives:"]
    for file, pattern in ((VAL, "val2017/*.jpg"), (ANN, INSTANCES)):
        lines += [f"      - file: {file}", f"        size: {len(archives.files[file])}",
                  f"        sha256: {sha[file]}", f"        urls: {json.dumps(sources[file])}",
                  f"        extract: [{pattern}]"]
        if file == ANN:
            lines += ["        members:", f"          {INSTANCES}: {member}"]
    path = tmp_path / name
    path.write_text(text + "\n".join(lines) + "\n")
    return path


def served(archives: Archives, srv: LoopbackServer) -> dict[str, list[str]]:
    return {VAL: [f"{srv.url}/zips/{VAL}"], ANN: [f"{srv.url}/annotations/{ANN}"]}


@pytest.fixture
def coco_server(coco_archives):
    with LoopbackServer(dict(coco_archives.files)) as srv:
        yield srv


def fetch(zoo: Path, *extra: str) -> int:
    return main(["--zoo", str(zoo), "fetch", "--coco", "--quiet", *extra])


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def nothing_extracted(cache: Path) -> bool:
    datasets = cache / "datasets"
    return not datasets.exists() or not any(
        p.name.startswith(("coco-val2017", ".coco-val2017")) and p.is_dir()
        for p in datasets.iterdir())


# ---------------------------------------------------------------- the good path

def test_fetch_extracts_only_the_selected_members_then_evaluate_and_a_suite_use_them(
        cache, coco_archives, coco_server, tmp_path, capsys):
    zoo = write_zoo(tmp_path, coco_archives, served(coco_archives, coco_server))
    assert fetch(zoo, "--json") == 0
    record = json.loads(capsys.readouterr().out)
    target = cache / "datasets" / "coco-val2017"
    assert record["path"] == str(target) and record["source"] == "extracted"
    assert record["members"] == {INSTANCES: hashlib.sha256(coco_archives.instances).hexdigest()}
    assert {a["file"]: a["sha256"] for a in record["archives"]} == {
        n: coco_archives.sha(n) for n in (VAL, ANN)}
    # only val2017/*.jpg and instances_val2017.json: no train or caption annotations
    assert tree(target) == sorted([COMPLETE_MARKER, INSTANCES, *coco_archives.images])
    assert (target / INSTANCES).read_bytes() == coco_archives.instances
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((target / INSTANCES).stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((target / "val2017").stat().st_mode) == 0o777 & ~umask
    requests = len(coco_server.requests)
    assert fetch(zoo) == 0  # done already: nothing downloaded or extracted again
    out = capsys.readouterr().out
    assert "already fetched and complete" in out and out.strip().endswith(str(target))
    assert len(coco_server.requests) == requests == 2

    # evaluate finds it without RTMBENCH_COCO (or --coco)
    assert "RTMBENCH_COCO" not in os.environ
    out_dir = tmp_path / "eval"
    assert main(["--zoo", str(zoo), "evaluate", "tiny", "--random-weights", "--limit", "2",
                 "--batch-size", "2", "--workers", "0", "--out", str(out_dir), "--json",
                 "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 2

    # and so does a suite whose box AP says dataset: ${RTMBENCH_COCO}
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: c\nmodels: [tiny]\nchecks:\n  box_ap: {{dataset: "
                     f"'${{RTMBENCH_COCO}}', weights: random-init, limit: 2, batch_size: 2, "
                     f"workers: 0}}\nresults_dir: {tmp_path / 'results'}\n")
    assert main(["--zoo", str(zoo), "run", str(suite), "--run-id", "c", "--no-progress"]) == 0
    from rtmbench.records import read_run

    (box,) = read_run(tmp_path / "results" / "c.jsonl").records
    assert box.status == "measured" and box.provenance["dataset"] == str(target)
    assert box.metrics["num_images"] == 2


@pytest.mark.parametrize("how", ["folder", "hf"])
def test_coco_mirror_folder_or_hf_dataset_repository(cache, coco_archives, tmp_path,
                                                     monkeypatch, capsys, how):
    with LoopbackServer() as dead:
        origin = served(coco_archives, dead)  # the official hosts, unreachable
    if how == "folder":
        folder = tmp_path / "mirror"
        folder.mkdir()
        for name, data in coco_archives.files.items():
            (folder / name).write_bytes(data)
        monkeypatch.setenv("RTMBENCH_COCO_MIRROR", str(folder))
        hub = None
    else:
        hub = LoopbackServer(dict(coco_archives.files)).start()
        hub.hub_commit = "0123456789abcdef0123456789abcdef01234567"
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("RTMBENCH_COCO_MIRROR", "hf://datasets/someone/coco-2017@main/zips")
    try:
        zoo = write_zoo(tmp_path, coco_archives, origin)
        assert fetch(zoo, "--json") == 0
    finally:
        if hub:
            hub.stop()
    record = json.loads(capsys.readouterr().out)
    assert {a["source"] for a in record["archives"]} == {"mirror"}
    if hub:
        assert record["archives"][0]["url"].startswith("hf://datasets/someone/coco-2017@0123")
        assert all(p.startswith("/datasets/someone/coco-2017/resolve/") for p, _ in hub.requests)
    assert (Path(record["path"]) / INSTANCES).read_bytes() == coco_archives.instances


def test_coco_dir_extracts_elsewhere_and_says_how_to_use_it(cache, coco_archives, coco_server,
                                                           tmp_path, capsys):
    zoo = write_zoo(tmp_path, coco_archives, served(coco_archives, coco_server))
    target = tmp_path / "my-coco"
    assert main(["--zoo", str(zoo), "fetch", "--coco-dir", str(target), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"export RTMBENCH_COCO={target}" in out and out.strip().endswith(str(target))
    assert (target / INSTANCES).is_file() and not (cache / "datasets" / "coco-val2017").exists()
    # a folder of someone else's is never written into
    other = tmp_path / "theirs"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["--zoo", str(zoo), "fetch", "--coco-dir", str(other), "--quiet"]) == 2
    assert "is not a data set rtmbench fetched" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------- what is refused

def test_a_wrong_or_truncated_archive_is_refused_and_nothing_extracted(
        cache, coco_archives, coco_server, tmp_path, capsys):
    zoo = write_zoo(tmp_path, coco_archives, served(coco_archives, coco_server))
    coco_server.wrong_body = coco_archives.files[VAL][:-1000]  # a truncated file, served whole
    assert fetch(zoo) == 2  # as for a checkpoint: a bad file
    err = capsys.readouterr().err
    assert "val2017.zip" in err and coco_archives.sha(VAL) in err and "RTMBENCH_COCO_MIRROR" in err
    assert nothing_extracted(cache) and not (cache / "datasets" / VAL).exists()


def test_a_member_whose_hash_differs_from_the_zoos_is_refused(cache, coco_archives,
                                                             coco_server, tmp_path, capsys):
    zoo = write_zoo(tmp_path, coco_archives, served(coco_archives, coco_server),
                    member_sha="e" * 64)
    assert fetch(zoo) == 2  # as for a checkpoint: a bad file
    assert f"member {INSTANCES} has sha256" in capsys.readouterr().err
    assert nothing_extracted(cache)


def test_an_interrupted_download_is_resumed_by_the_next_fetch(cache, coco_archives,
                                                             coco_server, tmp_path,
                                                             monkeypatch, capsys):
    monkeypatch.setenv("RTMBENCH_RETRIES", "0")
    zoo = write_zoo(tmp_path, coco_archives, served(coco_archives, coco_server))
    half = len(coco_archives.files[VAL]) // 2
    coco_server.drop_after, coco_server.drop_times = half, 1
    assert fetch(zoo) == 3  # not run: the source did not deliver
    err = capsys.readouterr().err
    assert "kept for resuming" in err and nothing_extracted(cache)
    assert fetch(zoo) == 0
    assert coco_server.requests_for(VAL)[-1]["Range"] == f"bytes={half}-"
    assert (cache / "datasets" / "coco-val2017" / INSTANCES).is_file()


UNSAFE = {
    "dotdot": ([("val2017/../../escape.jpg", b"x")], None, "has a '..' segment"),
    "absolute": ([("/tmp/escape.jpg", b"x")], None, "is an absolute path"),
    "symlink": ([], {"val2017/link.jpg": "/etc/passwd"}, "is a symbolic link"),
    "bomb": ([("val2017/bomb.jpg", bytes(4 << 20))], None, "more than 200x"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_an_unsafe_archive_is_refused_and_nothing_is_written(cache, coco_archives, tmp_path,
                                                            monkeypatch, capsys, case):
    extra, links, words = UNSAFE[case]
    good = [(m, b"jpeg") for m in coco_archives.images]
    files = dict(coco_archives.files)
    files[VAL] = _zip([("val2017/", b""), *good, *extra], links)
    evil = Archives(files, coco_archives.images, coco_archives.instances)
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    monkeypatch.chdir(tmp_path)
    zoo = write_zoo(tmp_path, evil, {VAL: [str(folder)], ANN: [str(folder)]})
    assert fetch(zoo) == 2  # as for a checkpoint: a bad file
    err = capsys.readouterr().err
    assert words in err and "Nothing was extracted" in err
    assert nothing_extracted(cache)
    assert not list(tmp_path.rglob("escape.jpg")) and not Path("/tmp/escape.jpg").exists()


def test_too_many_members_are_refused(cache, coco_archives, coco_server, tmp_path,
                                      monkeypatch, capsys):
    monkeypatch.setattr("rtmbench.sources.archive.MAX_MEMBERS", 3)
    zoo = write_zoo(tmp_path, coco_archives, served(coco_archives, coco_server))
    assert fetch(zoo) == 2  # as for a checkpoint: a bad file
    assert "entries, more than 3" in capsys.readouterr().err and nothing_extracted(cache)


# ---------------------------------------------------------------- a kill during extraction

def test_a_kill_during_extraction_never_leaves_a_set_that_is_used(cache, coco_archives,
                                                                 coco_server, tmp_path,
                                                                 capsys):
    zoo = write_zoo(tmp_path, coco_archives, served(coco_archives, coco_server))
    script = (
        "import os, signal, sys\n"
        "import rtmbench.sources.archive as archive\n"
        "real = archive._write_member\n"
        "def dying(*args, **kwargs):\n"
        "    real(*args, **kwargs)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 after the first member\n"
        "archive._write_member = dying\n"
        "from rtmbench.cli import main\n"
        f"sys.exit(main(['--zoo', {str(zoo)!r}, 'fetch', '--coco', '--quiet']))\n")
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": SRC},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    datasets = cache / "datasets"
    leftovers = [p.name for p in datasets.iterdir() if p.name.startswith(".coco-val2017.extract")]
    assert len(leftovers) == 1 and not (datasets / "coco-val2017").exists()
    from rtmbench.data.coco import resolve_coco_root

    with pytest.raises(DatasetMissing, match="rtmbench fetch --coco"):
        resolve_coco_root(None)  # the half-extracted set is never taken
    requests = len(coco_server.requests)
    assert fetch(zoo) == 0  # extracted again from the cached archives, leftovers removed
    assert len(coco_server.requests) == requests
    assert not [p for p in datasets.iterdir() if p.name.startswith(".coco-val2017")]
    assert resolve_coco_root(None) == datasets / "coco-val2017"


def test_a_folder_without_the_marker_is_not_a_fetched_coco(cache, coco_archives, tmp_path):
    from rtmbench.data.coco import resolve_coco_root
    from rtmbench.run.checks import BoxAPSpec, resolve_dataset

    target = cache / "datasets" / "coco-val2017"
    make_synthetic_coco(target, 1, seed=0)  # everything but the marker
    spec = BoxAPSpec(dataset="${RTMBENCH_COCO}")
    for find in (lambda: resolve_coco_root(None), lambda: resolve_dataset(spec, tmp_path)):
        with pytest.raises(DatasetMissing, match="RTMBENCH_COCO is not set and no COCO was "
                                                 "fetched: run `rtmbench fetch --coco`"):
            find()
    (target / COMPLETE_MARKER).symlink_to(target / INSTANCES)  # a link is no marker either
    with pytest.raises(DatasetMissing):
        resolve_coco_root(None)
    (target / COMPLETE_MARKER).unlink()
    (target / COMPLETE_MARKER).write_text("{}")
    assert resolve_coco_root(None) == target
    assert resolve_dataset(spec, tmp_path) == (target, str(target))
    # the latency check's accuracy images come from it too (real COCO: ground truth kept)
    from rtmbench.run.checks import CheckContext, LatencySpec, Unit, accuracy_images
    from rtmbench.spec.zoo import load_zoo

    latency = LatencySpec(targets=[{"backends": ["torch"], "devices": ["cpu"],
                                    "precisions": ["fp32"]}],
                          accuracy={"images": 1, "dataset": "${RTMBENCH_COCO}"})
    unit = Unit.of(load_zoo().get("tiny"), "latency", "torch", "cpu", "fp32",
                input_size=(320, 320), batch=1)
    images, described = accuracy_images(unit, latency, CheckContext(None, tmp_path, {}))
    assert described == str(target) and images.ground_truth is not None


# ---------------------------------------------------------------- exit codes, offline

def test_offline_never_connects_and_says_which_files_to_put_where(cache, coco_archives,
                                                                  coco_server, tmp_path,
                                                                  monkeypatch, capsys):
    monkeypatch.setenv("RTMBENCH_OFFLINE", "1")
    zoo = write_zoo(tmp_path, coco_archives, served(coco_archives, coco_server))
    assert fetch(zoo) == 3
    err = capsys.readouterr().err
    folder = cache / "datasets"
    for name in (VAL, ANN):
        data = coco_archives.files[name]
        assert f"{name} ({len(data):,} bytes, sha256 {coco_archives.sha(name)})" in err
    assert f"put them in {folder}" in err and "RTMBENCH_COCO_MIRROR" in err
    assert coco_server.requests == []
    for name, data in coco_archives.files.items():  # the user follows the advice
        (folder / name).write_bytes(data)
    assert fetch(zoo) == 0 and coco_server.requests == []
    assert (folder / "coco-val2017" / INSTANCES).is_file()


def test_unusable_input_is_exit_2(cache, coco_archives, coco_server, tmp_path, monkeypatch,
                                  capsys):
    zoo = write_zoo(tmp_path, coco_archives, served(coco_archives, coco_server),
                    sha={VAL: "4f7e2ccb"})  # not all 64 hex digits
    assert fetch(zoo) == 2
    err = capsys.readouterr().err
    assert f"{zoo}:" in err and "datasets.coco-val2017.archives[0].sha256" in err
    good = write_zoo(tmp_path, coco_archives, served(coco_archives, coco_server), name="z2.yaml")
    monkeypatch.setenv("RTMBENCH_COCO_MIRROR", "hf://datasets/only-owner")
    assert fetch(good) == 2
    assert "RTMBENCH_COCO_MIRROR" in capsys.readouterr().err
    assert coco_server.requests == [] and nothing_extracted(cache)
    no_coco = tmp_path / "no-coco.yaml"
    text = (ROOT / "zoo" / "rtmdet.yaml").read_text()
    no_coco.write_text(text[:text.index("\ndatasets:")])
    monkeypatch.delenv("RTMBENCH_COCO_MIRROR")
    assert fetch(no_coco) == 2
    assert "declares no data set 'coco-val2017'" in capsys.readouterr().err


def test_the_shipped_zoo_declares_coco_val2017_as_published():
    from rtmbench.spec.zoo import load_zoo

    coco = load_zoo().dataset("coco-val2017")
    val, ann = coco.archives
    assert (val.file, val.size, val.sha256) == (
        VAL, 815_585_330, "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05")
    assert (ann.file, ann.size, ann.sha256) == (
        ANN, 252_907_541, "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268")
    assert ann.members == {
        INSTANCES: "e8c7f7908f1d7278341fae127d0da654f102f11bd7b21d8aeefa635b8c810b6f"}
    assert val.urls == ["http://images.cocodataset.org/zips/val2017.zip",
                        "https://s3.amazonaws.com/images.cocodataset.org/zips/val2017.zip"]
    assert ann.urls[1] == ("https://s3.amazonaws.com/images.cocodataset.org/annotations/"
                           "annotations_trainval2017.zip")


def test_a_full_disk_while_extracting_deletes_the_half_made_folder(cache, coco_archives,
                                                                   coco_server, tmp_path,
                                                                   monkeypatch, capsys):
    import errno

    import rtmbench.sources.archive as archive

    real, written = archive._write_member, []

    def filling(*args, **kwargs):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(real(*args, **kwargs))
        return written[-1]

    monkeypatch.setattr(archive, "_write_member", filling)
    zoo = write_zoo(tmp_path, coco_archives, served(coco_archives, coco_server))
    assert fetch(zoo) == 2
    err = capsys.readouterr().err
    assert "is full (No space left on device)" in err and "was deleted" in err
    assert str(cache / "datasets") in err and "--coco-dir" in err
    assert written and nothing_extracted(cache)
    monkeypatch.setattr(archive, "_write_member", real)  # space again: from the cached archives
    assert fetch(zoo) == 0 and len(coco_server.requests) == 2


def test_members_of_two_archives_may_not_collide(coco_archives, tmp_path):
    from rtmbench.sources.archive import extract
    from rtmbench.sources.fetch_errors import DatasetArchiveError
    from rtmbench.spec.zoo import Archive

    path = tmp_path / VAL
    path.write_bytes(coco_archives.files[VAL])
    spec = Archive(file=VAL, size=len(coco_archives.files[VAL]), sha256=coco_archives.sha(VAL),
                   urls=["http://example.invalid/"], extract=["val2017/*.jpg"])
    staging = tmp_path / "staging"
    staging.mkdir()
    assert extract(path, spec, staging, progress=False).files == 3
    with pytest.raises(DatasetArchiveError, match="collides with a file another archive"):
        extract(path, spec, staging, progress=False)
