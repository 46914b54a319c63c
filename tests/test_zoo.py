from __future__ import annotations

import re

import pytest

from rtmbench.errors import InputError
from rtmbench.spec.zoo import load_zoo


def test_zoo_lists_five_sizes_with_seed_claims():
    zoo = load_zoo()
    assert zoo.sizes == ["tiny", "s", "m", "l", "x"]
    tiny = zoo.get("tiny")
    ap = {c.weights: float(c.value) for c in tiny.claims_for("box_ap")}
    assert ap == {"mmyolo": 40.9, "mmdet": 41.1}
    lat = [c for c in zoo.get("x").claims_for("latency") if c.hardware == "NVIDIA RTX 3090"]
    assert lat[0].decimals == 2 and str(lat[0].value) == "3.10"


def test_rtmdet_x_says_explicitly_that_mmyolo_published_no_checkpoint():
    weights = load_zoo().get("x").weights_by_id("mmyolo")
    assert weights.file is None and "no RTMDet-x checkpoint" in weights.unavailable


def test_file_names_carry_the_sha256_prefix():
    for size in load_zoo().sizes:
        for w in load_zoo().get(size).weights:
            if w.file:
                assert w.file.endswith(f"-{w.sha256}.pth")


def _broken(tmp_path, old, new):
    text = load_zoo().path.read_text()
    assert old in text
    path = tmp_path / "zoo.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_unknown_key_names_file_line_entry_and_field(tmp_path):
    path = _broken(tmp_path, "neck_num_csp_blocks: 2,", "neck_num_csp_block: 2,")
    with pytest.raises(InputError) as err:
        load_zoo(path)
    msg = str(err.value)
    assert str(path) in msg and "models[2] (rtmdet-m).architecture" in msg
    assert "neck_num_csp_block" in msg and "Fix:" in msg
    assert f"{path}:" in msg  # a line number follows the file name


def test_wrong_type_is_named(tmp_path):
    path = _broken(tmp_path, "max_per_img: 300", "max_per_img: many")
    with pytest.raises(InputError, match=r"defaults.test_cfg.max_per_img"):
        load_zoo(path)


def test_claim_source_must_exist(tmp_path):
    path = _broken(tmp_path, "source: mmdet-readme, weights: mmdet,",
                   "source: blog, weights: mmdet,")
    with pytest.raises(InputError, match="claim source 'blog'"):
        load_zoo(path)


def test_latency_claim_needs_its_conditions(tmp_path):
    path = _broken(tmp_path, "hardware: NVIDIA RTX 3090,\n         backend: tensorrt,",
                   "backend: tensorrt,")
    with pytest.raises(InputError, match="needs hardware"):
        load_zoo(path)


def test_seed_box_ap_claims_declare_the_pre_pr9494_test_settings():
    tiny = load_zoo().get("tiny")
    by_source = {c.source: c for c in tiny.claims_for("box_ap")}
    old = tiny.test_cfg_for(by_source["mmyolo-readme"])
    new = tiny.test_cfg_for(by_source["mmdet-readme"])
    assert (old.nms_pre, old.score_thr, old.nms_iou, old.max_per_img) == (1000, 0.05, 0.6, 100)
    assert (new.nms_pre, new.score_thr, new.nms_iou, new.max_per_img) == (30000, 0.001, 0.65, 300)


def test_unknown_test_cfg_variant_is_named(tmp_path):
    path = _broken(tmp_path, "test_cfg: pre-pr9494", "test_cfg: pre-pr9999")
    with pytest.raises(InputError, match="test_cfg 'pre-pr9999'"):
        load_zoo(path)


TINY_FILE = "rtmdet_tiny_syncbn_8xb32-300e_coco_20220902_112414-259f3241.pth"


@pytest.mark.parametrize("bad", [f"../../{TINY_FILE}", f"/etc/{TINY_FILE}", f"sub/{TINY_FILE}",
                                 f"sub\\\\{TINY_FILE}", f"..{TINY_FILE}"])
def test_weights_file_must_be_a_plain_name_that_stays_in_the_cache(tmp_path, bad):
    path = _broken(tmp_path, f"file: {TINY_FILE}", f"file: '{bad}'")
    with pytest.raises(InputError) as err:
        load_zoo(path)
    msg = str(err.value)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "'" + bad in text)
    assert f"{path}:{line}: models[0] (rtmdet-tiny).weights[0].file" in msg, msg
    assert "plain file name" in msg


def test_weights_may_give_a_size_and_hf_sources(tmp_path):
    path = _broken(tmp_path, f"file: {TINY_FILE}",
                   f"file: {TINY_FILE}\n        size: 1234\n        # hf below")
    text = path.read_text().replace(
        "urls: [https://download.openmmlab.com/mmyolo/v0/rtmdet/rtmdet_tiny_syncbn",
        "urls: ['hf://someone/rtmdet@v1/mmyolo', https://download.openmmlab.com/mmyolo/v0/rtmdet/"
        "rtmdet_tiny_syncbn", 1)
    path.write_text(text)
    weights = load_zoo(path).get("tiny").weights[0]
    assert weights.size == 1234 and weights.urls[0] == "hf://someone/rtmdet@v1/mmyolo"
    broken = tmp_path / "broken.yaml"  # load_zoo caches by path
    broken.write_text(text.replace("hf://someone/rtmdet@v1/mmyolo", "hf://someone/../x"))
    with pytest.raises(InputError, match=r"weights\[0\].urls.*hf://OWNER/REPO"):
        load_zoo(broken)


def test_an_unencoded_pr_ref_is_refused_not_misread_as_revision_refs():
    from rtmbench.spec.hfref import parse_hf

    assert parse_hf("hf://o/r@refs%2Fpr%2F1/x").revision == "refs/pr/1"
    with pytest.raises(ValueError, match=r"percent-encode its '/' \(@refs%2Fpr%2F1\)"):
        parse_hf("hf://o/r@refs/pr/1/x")


def test_hf_dataset_repositories_parse_and_model_repositories_still_do():
    from rtmbench.spec.hfref import parse_hf

    ref = parse_hf("hf://datasets/someone/coco-2017@v1/zips/val2017.zip", "val2017.zip")
    assert (ref.repo_type, ref.repo_id, ref.revision, ref.subdir) == (
        "dataset", "someone/coco-2017", "v1", "zips")
    assert ref.url("val2017.zip", "abc") == "hf://datasets/someone/coco-2017@abc/zips/val2017.zip"
    model = parse_hf("hf://someone/rtmdet@main/mmyolo")
    assert (model.repo_type, model.repo_id, model.subdir) == ("model", "someone/rtmdet", "mmyolo")
    assert model.url("a.pth") == "hf://someone/rtmdet@main/mmyolo/a.pth"
    for bad in ("hf://datasets/only-owner", "hf://datasets/o/../x", "hf://datasets//r"):
        with pytest.raises(ValueError, match="hf://datasets/OWNER/REPO"):
            parse_hf(bad)


@pytest.mark.parametrize("change, words", [
    ({"file": "../val2017.zip"}, "plain file name"),
    ({"file": "val2017.zip.part.0123456789ab"}, "bookkeeping"),
    ({"sha256": "4f7e2ccb"}, "should match pattern"),
    ({"size": 0}, "greater than 0"),
    ({"urls": []}, "at least 1 item"),
    ({"extract": ["../val2017/*.jpg"]}, "no '..'"),
    ({"extract": ["/val2017/*.jpg"]}, "relative path"),
    ({"extract": ["val2017\\*.jpg"]}, "relative path"),
    ({"members": {"val2017/a.jpg": "e" * 64}, "extract": ["annotations/*.json"]},
     "matches no 'extract' pattern"),
    ({"members": {"val2017/*.jpg": "e" * 64}}, "member 'val2017/*.jpg'"),
    ({"surprise": 1}, "Extra inputs are not permitted"),
])
def test_a_data_set_archive_is_validated_strictly(change, words):
    from pydantic import ValidationError

    from rtmbench.spec.zoo import Archive

    good = {"file": "val2017.zip", "size": 10, "sha256": "e" * 64,
            "urls": ["http://images.cocodataset.org/zips/val2017.zip"],
            "extract": ["val2017/*.jpg"]}
    Archive.model_validate(good)
    with pytest.raises(ValidationError, match=re.escape(words)):
        Archive.model_validate({**good, **change})


def test_member_patterns_never_cross_a_folder():
    from rtmbench.spec.zoo import member_matches

    assert member_matches("val2017/000000000139.jpg", "val2017/*.jpg")
    assert not member_matches("val2017/sub/x.jpg", "val2017/*.jpg")
    assert not member_matches("annotations/instances_train2017.json",
                              "annotations/instances_val2017.json")


# Every name that becomes part of a path (evaluation folders, run files, work directories) is
# one plain name: a zoo naming a model '../../x' would make `evaluate` write outside --out.
@pytest.mark.parametrize(("old", "new", "field"), [
    ("name: rtmdet-tiny", "name: ../../../../somewhere", "models[0] (../../../../somewhere).name"),
    ("name: rtmdet-tiny", "name: /tmp/abs", "models[0] (/tmp/abs).name"),
    ("size: tiny", "size: 'a/b'", "models[0] (rtmdet-tiny).size"),
    ("size: tiny", "size: '..'", "models[0] (rtmdet-tiny).size"),
    ("- id: mmyolo", "- id: '../w'", "models[0] (rtmdet-tiny).weights[0].id"),
])
def test_names_that_become_paths_must_be_plain_names(tmp_path, old, new, field):
    path = _broken(tmp_path, old, new)
    with pytest.raises(InputError) as err:
        load_zoo(path)
    msg = str(err.value)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if new in text)
    assert f"{path}:{line}: {field}" in msg, msg
    assert "plain name" in msg and "Fix:" in msg, msg


def test_evaluate_never_writes_outside_its_output_folder(tmp_path, capsys, monkeypatch):
    """results/eval/<model name> with the name "../../../escaped" was tmp_path/escaped."""
    from rtmbench.cli import main
    from rtmbench.data import make_synthetic_coco

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    coco = make_synthetic_coco(tmp_path / "coco", 1, seed=3)
    path = _broken(tmp_path, "name: rtmdet-tiny", "name: ../../../escaped")
    path.write_text(path.read_text().replace("input_size: [640, 640]", "input_size: [64, 64]"))
    code = main(["--zoo", str(path), "evaluate", "tiny", "--coco", str(coco), "--limit", "1",
                 "--random-weights", "--no-progress", "--workers", "0"])
    err = capsys.readouterr().err
    assert not (tmp_path / "escaped").exists()
    assert code == 2 and "plain name" in err and "Traceback" not in err, err
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(("data", "words"), [
    (b"collection: {name: x}\xff\n", ["not UTF-8", "byte 0xff"]),
    (b"collection: " + b"[" * 3000 + b"]" * 3000 + b"\n", ["nested too deeply"]),
    (b"collection: {name: x}\ncollection: {name: y}\n", ["line 2", "'collection' twice"]),
    (b"defaults:\n  num_classes: 80\n  num_classes: 81\n", ["line 3", "'num_classes' twice"]),
])
def test_a_damaged_zoo_file_is_named_never_a_traceback(tmp_path, capsys, data, words):
    """Not UTF-8, nested past Python's recursion limit, or a key given twice (YAML keeps the
    last silently): each is an error naming the file."""
    from rtmbench.cli import main

    path = tmp_path / "zoo.yaml"
    path.write_bytes(data)
    with pytest.raises(InputError) as err:
        load_zoo(path)
    message = str(err.value)
    assert str(path) in message and all(w in message for w in words), message
    assert main(["--zoo", str(path), "complexity", "tiny"]) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(("old", "new", "field"), [
    ("exp_on_reg: false", "exp_on_reg: 0", "architecture.exp_on_reg"),
    ("to_rgb: false", "to_rgb: 'no'", "defaults.pipeline.to_rgb"),
    ("num_classes: 80", "num_classes: true", "defaults.num_classes"),
    ("max_per_img: 300", "max_per_img: true", "defaults.test_cfg.max_per_img"),
])
def test_booleans_and_numbers_are_not_coerced_into_each_other(tmp_path, old, new, field):
    path = _broken(tmp_path, old, new)
    with pytest.raises(InputError) as err:
        load_zoo(path)
    message = str(err.value)
    assert field in message and "Fix:" in message, message
    assert "true or false" in message, message
