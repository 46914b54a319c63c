"""Parity with MMDetection 3.3.0's own RTMDet (run by `nox -s parity`; skipped without mmdet).

mmcv-lite lacks mmcv's compiled extension ``mmcv._ext``; building RTMDet and running its
tensor-mode forward call none of its ops, so a stand-in whose functions raise is enough.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from rtmbench.run.build import network
from tests.conftest import well_conditioned_state_dict

pytestmark = [
    pytest.mark.mmdet,
    pytest.mark.skipif(importlib.util.find_spec("mmdet") is None,
                       reason="MMDetection not installed (run `nox -s parity`)"),
]
SIZES = ["tiny", "s", "m", "l", "x"]


def _install_ext_stand_in() -> None:
    ext = types.ModuleType("mmcv._ext")

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def op(*_args, **_kwargs):
            raise RuntimeError(f"mmcv._ext.{name} is not available in this test")

        return op

    ext.__getattr__ = __getattr__
    sys.modules.setdefault("mmcv._ext", ext)


@pytest.fixture(scope="module")
def mmdet_builder():
    _install_ext_stand_in()
    import mmdet
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
    configs = Path(mmdet.__file__).parent / ".mim" / "configs" / "rtmdet"

    def build(size: str):
        cfg = Config.fromfile(str(configs / f"rtmdet_{size}_8xb32-300e_coco.py"))
        cfg.model.backbone.init_cfg = None  # no pretrained download
        return MODELS.build(cfg.model).eval()

    return build


@pytest.mark.parametrize("size", SIZES)
def test_same_keys_shapes_and_outputs_as_mmdetection(size, mmdet_builder):
    reference = mmdet_builder(size)
    ours = network(size)
    ref_shapes = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert our_shapes == ref_shapes

    weights = well_conditioned_state_dict(reference, seed=1)
    reference.load_state_dict(weights, strict=True)
    ours.load_state_dict(weights, strict=True)
    x = torch.randn(1, 3, 192, 256, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_cls, ref_box = reference(x, mode="tensor")
        our_cls, our_box = ours(x)
    for ref, got in zip(ref_cls + ref_box, our_cls + our_box):
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)


class _TorchvisionNms:
    """mmcv's compiled nms replaced by torchvision's: same greedy NMS, IoU with offset 0."""

    @staticmethod
    def nms(boxes, scores, iou_threshold, offset):
        from torchvision.ops import nms

        assert offset == 0
        return nms(boxes, scores, iou_threshold)


@pytest.mark.parametrize("candidates", ["few", "over-split-threshold"])
def test_postprocess_matches_mmdetection_predict_by_feat(candidates, mmdet_builder, monkeypatch):
    import importlib

    from rtmbench.models import TestSettings, postprocess
    from rtmbench.spec.zoo import load_zoo

    monkeypatch.setattr(importlib.import_module("mmcv.ops.nms"), "ext_module", _TorchvisionNms)
    head = mmdet_builder("tiny").bbox_head
    g = torch.Generator().manual_seed(3)
    hw, strides = (320, 416), (8, 16, 32)
    # "few": a realistic number of candidates; "over-split-threshold": > 10000 boxes, where
    # mmcv switches from the coordinate-offset trick to per-class NMS.
    mean = -13.0 if candidates == "few" else -5.0
    cls = tuple(torch.randn(1, 80, hw[0] // s, hw[1] // s, generator=g) * 2 + mean
                for s in strides)
    box = tuple(torch.rand(1, 4, hw[0] // s, hw[1] // s, generator=g) * 6 * s + 1
                for s in strides)
    scale = (0.65, 0.6)
    metas = [{"img_shape": hw, "scale_factor": scale, "ori_shape": (533, 640)}]
    with torch.no_grad():
        ref = head.predict_by_feat(cls, box, batch_img_metas=metas, cfg=head.test_cfg,
                                   rescale=True)[0]
        settings = TestSettings.from_test_cfg(load_zoo().get("tiny").test_cfg.model_dump())
        ours = postprocess(cls, box, strides, hw, [scale], settings)[0]
    assert len(ref.scores) > 50
    torch.testing.assert_close(ours.scores, ref.scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.boxes, ref.bboxes, rtol=1e-6, atol=1e-4)
    assert torch.equal(ours.labels, ref.labels)


@pytest.mark.parametrize("width,height", [(640, 480), (333, 500), (1280, 719), (97, 63)])
def test_test_pipeline_matches_mmdetection_transforms(width, height, mmdet_builder, tmp_path):
    """Decode, keep-ratio resize and pad equal MMDetection's RTMDet test_pipeline transforms."""
    import cv2
    import numpy as np
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets.transforms import Pad, Resize

    from rtmbench.data import TestPipeline
    from rtmbench.spec.zoo import load_zoo

    rng = np.random.default_rng(width * height)
    path = tmp_path / "image.jpg"
    cv2.imwrite(str(path), rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    ref = LoadImageFromFile()({"img_path": str(path)})
    ref = Resize(scale=(640, 640), keep_ratio=True)(ref)
    ref = Pad(size=(640, 640), pad_val=dict(img=(114, 114, 114)))(ref)

    ours = TestPipeline.for_model(load_zoo().get("tiny")).prepare(1, path)
    assert ours.pixels.shape == ref["img"].shape == (640, 640, 3)
    assert np.array_equal(ours.pixels, ref["img"])
    assert ours.scale_factor == pytest.approx(ref["scale_factor"], rel=0, abs=0)
    assert ref["img_shape"] == (640, 640)  # what post-processing clips to: the padded shape
