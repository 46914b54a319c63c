from __future__ import annotations

import pytest
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


def _random_outputs(seed: int, n: int = 3, h: int = 64, w: int = 96, num_classes: int = 80,
                    mean: float = -4.0):
    g = torch.Generator().manual_seed(seed)
    cls = tuple(torch.randn(n, num_classes, h // s, w // s, generator=g) * 2.0 + mean
                for s in STRIDES)
    box = tuple(torch.rand(n, 4, h // s, w // s, generator=g) * 40.0 + 1.0 for s in STRIDES)
    return cls, box


def _rows(d) -> list[tuple]:
    return [(s, label, *box) for s, label, box in zip(d.scores.tolist(), d.labels.tolist(),
                                                      d.boxes.tolist())]


SETTINGS = {"default": TestSettings(),  # 30000 / 0.001 / 0.65 / 300
            "pre-pr9494": TestSettings(score_thr=0.05, nms_pre=1000, iou_threshold=0.6,
                                       max_per_img=100),
            "tight": TestSettings(score_thr=0.01, nms_pre=50, iou_threshold=0.5, max_per_img=20)}


@pytest.mark.parametrize("name", list(SETTINGS))
@pytest.mark.parametrize("first_nms", [None, 7])
def test_batched_postprocess_equals_the_per_image_reference(name, first_nms):
    """The GPU path (whole batch, NMS on a growing score-ordered prefix) gives the reference's
    detections; first_nms=7 forces several prefix rounds."""
    from rtmbench.models import postprocess_batched

    settings = SETTINGS[name]
    for seed in range(3):
        cls, box = _random_outputs(seed)
        scales = [(0.5, 0.25), (1.0, 1.0), (0.8, 0.8)]
        want = postprocess(cls, box, STRIDES, (64, 96), scales, settings)
        stats: dict = {}
        got = postprocess_batched(cls, box, STRIDES, (64, 96), scales, settings,
                                  first_nms=first_nms, stats=stats)
        assert len(got) == len(want) == 3
        for g, r in zip(got, want):
            assert len(r) > 0
            torch.testing.assert_close(g.scores, r.scores, rtol=0, atol=0)  # in score order
            # the same detections, bit for bit; equal scores may come in either order
            assert sorted(_rows(g)) == sorted(_rows(r))
        assert stats["nms_calls"] >= 3 and stats["candidates"] >= stats["nms_boxes"] / \
            stats["nms_calls"]


def test_batched_postprocess_handles_images_without_candidates():
    from rtmbench.models import postprocess_batched

    cls, box = _random_outputs(0, n=2, mean=-30.0)  # nothing passes any threshold
    cls[0][1, 5, 3, 4] = 3.0  # but one candidate in the second image
    got = postprocess_batched(cls, box, STRIDES, (64, 96), [(1.0, 1.0)] * 2, TestSettings())
    assert [len(d) for d in got] == [0, 1] and got[1].labels.tolist() == [5]
    assert got[0].boxes.shape == (0, 4)


def test_nan_scores_take_no_place_from_passing_candidates():
    """topk ranks NaN above every number: the batched path must not let NaN pairs push out
    candidates above the threshold (the per-image reference drops them before sorting)."""
    from rtmbench.models import postprocess_batched

    cls, box = _random_outputs(1, n=2)
    cls[0][0, :, :4, :] = float("nan")
    settings = TestSettings(nms_pre=20)
    scales = [(1.0, 1.0)] * 2
    want = postprocess(cls, box, STRIDES, (64, 96), scales, settings)
    got = postprocess_batched(cls, box, STRIDES, (64, 96), scales, settings)
    for g, r in zip(got, want):
        assert len(r) > 0 and sorted(_rows(g)) == sorted(_rows(r))
