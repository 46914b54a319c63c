from __future__ import annotations

import pytest
import torch

from rtmbench.run.build import network
from rtmbench.spec.zoo import load_zoo
from tests.conftest import well_conditioned_state_dict

SIZES = ["tiny", "s", "m", "l", "x"]


def test_output_shapes_per_stride_non_square():
    model = network("tiny")
    with torch.no_grad():
        cls_scores, bbox_preds = model(torch.randn(2, 3, 480, 640))
    assert [tuple(t.shape) for t in cls_scores] == [(2, 80, 60, 80), (2, 80, 30, 40),
                                                     (2, 80, 15, 20)]
    assert [tuple(t.shape) for t in bbox_preds] == [(2, 4, 60, 80), (2, 4, 30, 40),
                                                     (2, 4, 15, 20)]


def test_num_classes_changes_only_the_classifier():
    model = network("tiny", num_classes=3)
    assert all(m.out_channels == 3 for m in model.bbox_head.rtm_cls)


def test_head_convs_are_shared_across_levels_but_listed_per_level():
    model = network("s")
    head = model.bbox_head
    assert head.cls_convs[2][1].conv is head.cls_convs[0][1].conv
    assert head.cls_convs[2][1].bn is not head.cls_convs[0][1].bn
    keys = model.state_dict().keys()
    assert "bbox_head.cls_convs.2.1.conv.weight" in keys
    assert "bbox_head.reg_convs.1.0.bn.running_var" in keys


def test_bn_eps_is_syncbn_default_not_cspnext_default():
    model = network("tiny")
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert eps == {1e-5}


def test_exp_on_reg_follows_the_configs():
    zoo = load_zoo()
    assert [zoo.get(s).architecture.exp_on_reg for s in SIZES] == [False, False, True, True, True]


def test_mmdet_layout_checkpoint_roundtrip(tmp_path):
    source = network("tiny")
    source.load_state_dict(well_conditioned_state_dict(source))
    path = tmp_path / "ckpt.pth"
    torch.save({"meta": {"epoch": 300}, "state_dict": source.state_dict()}, path)

    target = network("tiny")
    ckpt = torch.load(path, weights_only=True)
    target.load_state_dict(ckpt["state_dict"], strict=True)
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        a, b = source(x), target(x)
    for p, q in zip(a[0] + a[1], b[0] + b[1]):
        assert torch.equal(p, q)


def test_wrong_size_checkpoint_does_not_load_strictly():
    tiny, small = network("tiny"), network("s")
    with pytest.raises(RuntimeError, match="size mismatch"):
        small.load_state_dict(tiny.state_dict(), strict=True)


def test_parity_weights_would_expose_a_wrong_bn_eps():
    """The parity tests' weights must be able to fail: eps 1e-3 instead of 1e-5 shows."""
    model = network("tiny")
    model.load_state_dict(well_conditioned_state_dict(model))
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        before = model(x)[0][0].clone()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = 1e-3
        after = model(x)[0][0]
    assert (before - after).abs().max() > 1e-2
