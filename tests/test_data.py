from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from rtmbench.data import (
    COCO_CATEGORIES,
    CocoDataset,
    DatasetError,
    TestPipeline,
    make_synthetic_coco,
    rescale_size,
    resolve_coco_root,
)
from rtmbench.spec.zoo import load_zoo


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return make_synthetic_coco(tmp_path_factory.mktemp("coco"), 5, seed=1)


def test_synthetic_dataset_loads_with_cocos_80_categories_sorted(coco):
    ds = CocoDataset(coco)
    assert ds.num_classes == 80
    assert ds.cat_ids == sorted(cid for cid, _ in COCO_CATEGORIES)
    assert ds.cat_id_to_label[1] == 0 and ds.cat_id_to_label[90] == 79
    assert ds.cat_id_to_label[13] == 11  # COCO's id 12 does not exist
    assert [im.id for im in ds.images] == sorted(im.id for im in ds.images)
    assert all(im.width != im.height for im in ds.images)
    assert len(ds.select(2)) == 2


def test_label_order_follows_ids_even_when_the_file_lists_them_shuffled(tmp_path, coco):
    data = json.loads((coco / "annotations/instances_val2017.json").read_text())
    data["categories"] = data["categories"][::-1]
    root = tmp_path / "c"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations/instances_val2017.json").write_text(json.dumps(data))
    (root / "val2017").symlink_to(coco / "val2017")
    assert CocoDataset(root).cat_ids[:3] == [1, 2, 3]


def test_mmcv_rescale_size_formula():
    # scale = min(640 / 333, 640 / 217); new size int(x * scale + 0.5)
    assert rescale_size(333, 217, (640, 640))[0] == (640, 417)
    assert rescale_size(217, 333, (640, 640))[0] == (417, 640)
    assert rescale_size(1000, 10, (640, 640))[0] == (640, 6)  # 6.4 + 0.5 -> 6


def test_pipeline_on_a_non_square_image_equals_hand_computed_reference(tmp_path):
    # a 300 x 200 (w x h) image of one BGR colour: resize keeps it constant, so every value
    # of the network input can be computed by hand.
    image = np.zeros((200, 300, 3), np.uint8)
    image[:] = (10, 100, 200)
    path = tmp_path / "im.png"  # lossless, so decoding returns exactly these pixels
    cv2.imwrite(str(path), image)
    entry = load_zoo().get("tiny")
    pipe = TestPipeline.for_model(entry)
    prepared = pipe.prepare(7, path)
    # scale = min(640/300, 640/200) = 2.1333..; new w = int(640.0 + .5), h = int(426.67 + .5)
    assert prepared.ori_hw == (200, 300)
    assert prepared.scale_factor == (640 / 300, 427 / 200)
    assert prepared.pixels.shape == (640, 640, 3)
    assert (prepared.pixels[:427] == (10, 100, 200)).all()
    assert (prepared.pixels[427:] == 114).all()
    x = pipe.normalize(torch.from_numpy(prepared.pixels)[None])
    assert x.shape == (1, 3, 640, 640) and x.dtype == torch.float32
    mean, std = (103.53, 116.28, 123.675), (57.375, 57.12, 58.395)  # BGR, the zoo's values
    for c, value in enumerate((10, 100, 200)):
        expected = (np.float32(value) - np.float32(mean[c])) / np.float32(std[c])
        assert torch.all(x[0, c, :427] == torch.tensor(expected))
        pad = (np.float32(114) - np.float32(mean[c])) / np.float32(std[c])
        assert torch.all(x[0, c, 427:] == torch.tensor(pad))


def test_pipeline_parameters_come_from_the_zoo_entry():
    entry = load_zoo().get("tiny")
    pipeline = entry.pipeline.model_copy(update={"pad_value": 0.0, "to_rgb": True,
                                                 "mean": (1.0, 2.0, 3.0), "std": (1.0, 1.0, 1.0)})
    pipe = TestPipeline((320, 320), pipeline)
    pixels = np.zeros((320, 320, 3), np.uint8)
    pixels[..., 0] = 50  # B
    x = pipe.normalize(torch.from_numpy(pixels)[None])
    assert x[0, 2, 0, 0] == 50 - 3.0  # B moved to the last channel, normalised with mean[2]
    assert x[0, 0, 0, 0] == -1.0


def test_resize_uses_cv2_bilinear_on_a_gradient(tmp_path):
    image = np.tile(np.arange(160, dtype=np.uint8), (90, 1))[..., None].repeat(3, axis=2)
    path = tmp_path / "g.png"
    cv2.imwrite(str(path), image)
    prepared = TestPipeline.for_model(load_zoo().get("tiny")).prepare(1, path)
    reference = cv2.resize(image, (640, 360), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(prepared.pixels[:360], reference)


def test_corrupt_image_error_names_the_file(tmp_path):
    bad = tmp_path / "000000000001.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetError, match="000000000001.jpg"):
        TestPipeline.decode(bad)


def test_malformed_annotation_file_error_names_the_file(tmp_path, coco):
    root = tmp_path / "c"
    (root / "annotations").mkdir(parents=True)
    ann = root / "annotations/instances_val2017.json"
    ann.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"instances_val2017.json is not valid JSON.*line 1"):
        CocoDataset(root)
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [],
                               "categories": []}))
    with pytest.raises(DatasetError, match=r"instances_val2017.json: images\[0\] lacks a valid "
                                           r"width, height"):
        CocoDataset(root)
    ann.write_text(json.dumps([1, 2]))
    with pytest.raises(DatasetError, match="must be an object with 'images'"):
        CocoDataset(root)


def test_missing_dataset_errors_say_what_is_expected(tmp_path, monkeypatch, coco):
    monkeypatch.delenv("RTMBENCH_COCO", raising=False)
    with pytest.raises(DatasetError, match=r"RTMBENCH_COCO is not set and no COCO was fetched: "
                                           r"run `rtmbench fetch --coco`.*--coco DIR"):
        resolve_coco_root(None)
    monkeypatch.setenv("RTMBENCH_COCO", str(coco))
    assert resolve_coco_root(None) == coco
    with pytest.raises(DatasetError, match="has no annotations/instances_val2017.json"):
        CocoDataset(tmp_path)
    root = tmp_path / "c"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations/instances_val2017.json").write_bytes(
        (coco / "annotations/instances_val2017.json").read_bytes())
    with pytest.raises(DatasetError, match="image directory .*val2017 does not exist"):
        CocoDataset(root)


def test_small_profile_is_unchanged_for_existing_callers(tmp_path):
    """The default profile's output is what every existing test and suite was written for."""
    import hashlib

    root = make_synthetic_coco(tmp_path / "small", 12, seed=3)
    digest = hashlib.sha256((root / "annotations/instances_val2017.json").read_bytes())
    assert digest.hexdigest() == \
        "40954bbdd61a1a1a6af6f3e0a945d5891e7b1c4cfccb2c872309118cdcf48627"


def test_coco_profile_has_val2017s_sizes_and_object_counts(tmp_path):
    from collections import Counter

    n = 150
    root = make_synthetic_coco(tmp_path / "c2", n, seed=0, profile="coco", workers=2)
    data = json.loads((root / "annotations/instances_val2017.json").read_text())
    sizes = Counter((im["width"], im["height"]) for im in data["images"])
    assert sizes.most_common(1)[0][0] == (640, 480)
    assert sum(max(wh) == 640 for wh in sizes.elements()) / n > 0.9
    assert sum(w < h for w, h in sizes.elements()) / n > 0.15  # portraits too
    assert 6.0 < len(data["annotations"]) / n < 9.0  # val2017: 7.36
    by_id = {im["id"]: im for im in data["images"]}
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        im = by_id[ann["image_id"]]
        assert 0 <= x and 0 <= y and x + w <= im["width"] and y + h <= im["height"]
    assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
    ds = CocoDataset(root)
    assert len(ds.images) == n and ds.num_classes == 80
    # The same files whatever the number of worker processes.
    one = make_synthetic_coco(tmp_path / "c1", 20, seed=0, profile="coco", workers=1)
    first = data["images"][0]["file_name"]
    assert (one / "val2017" / first).read_bytes() == (root / "val2017" / first).read_bytes()
    first_anns = [a for a in data["annotations"] if a["image_id"] == data["images"][0]["id"]]
    one_data = json.loads((one / "annotations/instances_val2017.json").read_text())
    assert one_data["images"] == data["images"][:20]
    assert [a for a in one_data["annotations"] if a["image_id"] == data["images"][0]["id"]] \
        == first_anns


def test_unknown_profile_is_refused(tmp_path):
    with pytest.raises(ValueError, match="profile"):
        make_synthetic_coco(tmp_path, 1, profile="imagenet")


@pytest.mark.parametrize("size", [(320, 192), (192, 320), (96, 64)])
def test_a_non_square_input_fits_every_image(size):
    """mmcv's rescale overflows one side of a non-square input; the pipeline fits it instead
    (export's probe batch and the accuracy images both go through it)."""
    from rtmbench.run.build import calibration_batch
    from rtmbench.spec.zoo import load_zoo

    batch = calibration_batch(load_zoo().get("tiny"), num_images=3, input_size=size)
    assert batch.shape == (3, 3, size[1], size[0])
