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

from rtmbench.models import build_rtmdet
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
    ours = build_rtmdet(size)
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
