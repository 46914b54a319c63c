from __future__ import annotations

import torch

from rtmbench.models import TestSettings, postprocess
from rtmbench.models.postprocess import grid_priors

STRIDES = (8, 16, 32)
NEG = -20.0  # sigmoid ~ 2e-9: below any score threshold


def _empty_outputs(h=64, w=96, num_classes=3):
    cls = tuple(torch.full((1, num_classes, h // s, w // s), NEG) for s in STRIDES)
    box = tuple(torch.full((1, 4, h // s, w // s), 4.0) for s in STRIDES)
    return cls, box


def test_priors_are_x_fastest_without_offset():
    p = grid_priors(2, 3, 8)
    assert p.tolist() == [[0, 0], [8, 0], [16, 0], [0, 8], [8, 8], [16, 8]]


def test_known_logits_and_distances_give_expected_boxes_after_rescale():
    cls, box = _empty_outputs()
    # stride-8 level, prior at row 2, col 3 -> point (24, 16); class 1 with score sigmoid(2)
    cls[0][0, 1, 2, 3] = 2.0
    box[0][0, :, 2, 3] = torch.tensor([4.0, 6.0, 10.0, 8.0])
    # resize scale (w 0.5, h 0.25): boxes are divided by it
    dets = postprocess(cls, box, STRIDES, (64, 96), [(0.5, 0.25)], TestSettings())[0]
    assert len(dets) == 1
    assert dets.labels.tolist() == [1]
    torch.testing.assert_close(dets.scores, torch.sigmoid(torch.tensor([2.0])))
    torch.testing.assert_close(dets.boxes, torch.tensor([[40.0, 40.0, 68.0, 96.0]]))


def test_boxes_clip_to_the_padded_input_not_the_resized_image():
    cls, box = _empty_outputs()
    cls[0][0, 0, 7, 11] = 3.0  # point (88, 56) near the bottom-right of a 64x96 input
    box[0][0, :, 7, 11] = torch.tensor([8.0, 8.0, 50.0, 50.0])
    dets = postprocess(cls, box, STRIDES, (64, 96), [(1.0, 1.0)], TestSettings())[0]
    torch.testing.assert_close(dets.boxes, torch.tensor([[80.0, 48.0, 96.0, 64.0]]))


def test_class_aware_nms_keeps_overlaps_of_different_classes_and_sorts_by_score():
    cls, box = _empty_outputs()
    # two priors one stride apart with heavily overlapping boxes
    for col, logit in ((3, 1.0), (4, 2.0)):
        cls[0][0, 0, 4, col] = logit
        box[0][0, :, 4, col] = torch.tensor([20.0, 20.0, 20.0, 20.0])
    cls[0][0, 2, 4, 3] = 0.5  # same box as the first, other class
    dets = postprocess(cls, box, STRIDES, (64, 96), [(1.0, 1.0)], TestSettings())[0]
    # IoU of the two class-0 boxes is 32/48 > 0.65 -> the weaker one is suppressed
    assert dets.labels.tolist() == [0, 2]
    assert dets.scores[0] > dets.scores[1]


def test_score_threshold_pre_nms_topk_and_max_per_img():
    cls, box = _empty_outputs()
    cls[0][0, 0] = torch.linspace(-1, 1, 8 * 12).reshape(8, 12)
    box[0][0] = 1.0  # tiny boxes, no overlaps
    settings = TestSettings(score_thr=0.5, nms_pre=10, max_per_img=4)
    dets = postprocess(cls, box, STRIDES, (64, 96), [(1.0, 1.0)], settings)[0]
    assert len(dets) == 4 and bool((dets.scores > 0.5).all())
    assert torch.equal(dets.scores, dets.scores.sort(descending=True).values)
    wider = postprocess(cls, box, STRIDES, (64, 96), [(1.0, 1.0)],
                        TestSettings(score_thr=0.5, nms_pre=10, max_per_img=300))[0]
    assert len(wider) == 10  # nms_pre caps the level's candidates


def test_zero_size_boxes_are_dropped_by_min_bbox_size():
    cls, box = _empty_outputs()
    cls[0][0, 0, 0, 0] = 3.0
    box[0][0, :, 0, 0] = torch.tensor([5.0, 0.0, 0.0, 3.0])  # x2 == x1 after clipping at 0
    dets = postprocess(cls, box, STRIDES, (64, 96), [(1.0, 1.0)], TestSettings())[0]
    assert len(dets) == 0


def test_empty_input_gives_empty_output():
    cls, box = _empty_outputs()
    dets = postprocess(cls, box, STRIDES, (64, 96), [(1.0, 1.0)], TestSettings())
    assert len(dets) == 1 and len(dets[0]) == 0
    assert dets[0].boxes.shape == (0, 4)


def test_batch_items_are_independent():
    cls, box = _empty_outputs()
    cls = tuple(torch.cat([c, c]) for c in cls)
    box = tuple(torch.cat([b, b]) for b in box)
    cls[0][1, 0, 1, 1] = 2.0
    dets = postprocess(cls, box, STRIDES, (64, 96), [(1.0, 1.0), (2.0, 2.0)], TestSettings())
    assert [len(d) for d in dets] == [0, 1]
    torch.testing.assert_close(dets[1].boxes, torch.tensor([[2.0, 2.0, 6.0, 6.0]]))
