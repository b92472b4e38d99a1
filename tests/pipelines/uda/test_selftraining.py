"""The self-training components: EMA teacher, pseudo-label weights, ClassMix, MIC, distortion."""

from __future__ import annotations

import pytest
import torch
from timm.utils import ModelEmaV3
from torch import nn

from podium.pipelines.uda import selftraining as st

IGNORE = 255


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))


@torch.no_grad()
def _timm_rule(teacher: nn.Module, student: nn.Module, alpha: float, step: int) -> None:
    """podium's earlier teacher (``ema_rule: timm``): after optimizer step ``step`` (1, 2,
    ...), a = 0 at step 1 then min(1 - 1/step, alpha), BatchNorm buffers averaged too."""
    a = 0.0 if step <= 1 else min(1.0 - 1.0 / step, alpha)
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(a).add_(s, alpha=1.0 - a)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        if t.dtype.is_floating_point:
            t.mul_(a).add_(s, alpha=1.0 - a)
        else:
            t.copy_(s)


def test_the_timm_rule_is_modelemav3_as_podium_built_it():
    """``ema_rule: timm``: timm's ModelEmaV3 as train.py builds it, updated by fit after
    every optimizer step with the step count: alpha 0 after step 1 (the teacher becomes the
    student), then min(1 - 1/step, alpha), buffers averaged."""
    student = _net(1)
    ema = ModelEmaV3(_net(0), decay=0.7, use_warmup=True, warmup_gamma=1.0, warmup_power=1.0)
    reference = _net(0)
    generator = torch.Generator().manual_seed(4)
    assert [ema.get_decay(step) for step in (1, 2, 3)] == [0.0, 0.5, pytest.approx(2 / 3)]
    for step in range(1, 7):  # a: 0, 1/2, 2/3, then alpha = 0.7
        for p in student.parameters():
            p.data.add_(torch.randn(p.shape, generator=generator))
        student[1].running_mean.add_(1.0)
        student[1].num_batches_tracked.add_(1)
        ema.update(student, step=step)
        _timm_rule(reference, student, 0.7, step)
        for key, value in reference.state_dict().items():
            torch.testing.assert_close(ema.module.state_dict()[key], value)
    assert int(ema.module[1].num_batches_tracked) == 6  # integer buffers are copied


def test_pseudo_label_weights_one_share_per_batch_or_per_image():
    logits = torch.zeros(2, 3, 4, 5)
    logits[0, 1] = 10.0  # image 0: all pixels confidently class 1
    logits[1, 2, :2] = 10.0  # image 1: top half confidently class 2, bottom half uniform
    labels, weights = st.pseudo_labels(logits, threshold=0.9)
    assert (labels[0] == 1).all() and (labels[1, :2] == 2).all()
    # DAFormer: 30 of the batch's 40 pixels are confident, every pixel weighs 0.75
    torch.testing.assert_close(weights, torch.full((2, 4, 5), 0.75))
    _, per_image = st.pseudo_labels(logits, threshold=0.9, weight="image", inclusive=False)
    torch.testing.assert_close(per_image[0], torch.ones(4, 5))
    torch.testing.assert_close(per_image[1], torch.full((4, 5), 0.5))
    _, weights = st.pseudo_labels(
        logits, threshold=0.9, ignore_top=0.25, ignore_bottom=0.5, weight="image"
    )
    assert (weights[:, :1] == 0).all() and (weights[:, 2:] == 0).all()
    torch.testing.assert_close(weights[0, 1], torch.ones(5))


def test_a_pixel_exactly_at_the_threshold_is_confident_with_inclusive():
    logits = torch.zeros(1, 2, 2, 2)  # softmax of two equal logits: exactly 0.5 everywhere
    logits[0, 0, 0, 0] = 5.0  # one pixel clearly above
    assert torch.softmax(logits, 1)[0, :, 1, 1].tolist() == [0.5, 0.5]
    _, ge = st.pseudo_labels(logits, threshold=0.5)  # DAFormer: pseudo_prob.ge(threshold)
    _, gt = st.pseudo_labels(logits, threshold=0.5, inclusive=False)
    assert ge.unique().tolist() == [1.0] and gt.unique().tolist() == [0.25]


def test_class_mix_masks_cover_exactly_half_the_classes_present():
    labels = torch.full((3, 6, 6), IGNORE, dtype=torch.long)
    labels[0, :, :2], labels[0, :, 2:4], labels[0, :, 4:5] = 0, 3, 7  # 3 classes + ignore
    labels[1] = torch.arange(36).view(6, 6) % 4  # 4 classes
    generator = torch.Generator().manual_seed(0)
    masks = st.class_mix_masks(labels, IGNORE, generator)
    for i, n_classes in ((0, 3), (1, 4)):
        chosen = torch.unique(labels[i][masks[i]])
        assert len(chosen) == (n_classes + 1) // 2
        # every pixel of a chosen class is in the mask, nothing else is
        assert torch.equal(masks[i], torch.isin(labels[i], chosen))
        assert IGNORE not in chosen.tolist()
    assert not masks[2].any()  # only ignore pixels: nothing pasted
    mixed = st.mix(masks, torch.ones(3, 3, 6, 6), torch.zeros(3, 3, 6, 6))
    assert torch.equal(mixed[:, 0].bool(), masks)
    mixed_labels = st.mix(masks, labels, torch.full_like(labels, 9))
    assert torch.equal(mixed_labels[masks], labels[masks])
    assert (mixed_labels[~masks] == 9).all()


def test_mic_mask_hides_whole_patches_at_the_configured_ratio():
    generator = torch.Generator().manual_seed(1)
    mask = st.mic_mask((8, 3, 70, 100), patch_size=10, ratio=0.7, generator=generator)
    assert mask.shape == (8, 1, 70, 100)
    assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
    blocks = mask.unfold(2, 10, 10).unfold(3, 10, 10)  # (8, 1, 7, 10, 10, 10)
    assert torch.equal(blocks.amin(dim=(-1, -2)), blocks.amax(dim=(-1, -2)))  # constant patches
    assert 1 - mask.mean().item() == pytest.approx(0.7, abs=0.05)
    assert st.mic_mask((2, 3, 8, 8), 4, 0.0, generator).min() == 1.0
    assert st.mic_mask((2, 3, 8, 8), 4, 1.0, generator).max() == 0.0


def test_distort_is_the_identity_without_warp_and_ignores_pixels_pulled_from_outside():
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 16, 20)
    labels = torch.randint(0, 12, (2, 16, 20))
    weights = torch.rand(2, 16, 20)
    kwargs = dict(
        rotate_deg=0.0,
        scale=(1.0, 1.0),
        translate=0.0,
        elastic_alpha=0.0,
        elastic_sigma=8.0,
        ignore_index=IGNORE,
    )
    x, y, w = st.distort(images, labels, weights, generator, **kwargs)
    torch.testing.assert_close(x, images)
    assert torch.equal(y, labels)
    torch.testing.assert_close(w, weights)
    kwargs.update(scale=(0.5, 0.5))  # zoom out: the border comes from outside the frame
    x, y, w = st.distort(images, labels, weights, generator, **kwargs)
    assert (y[:, 0, :] == IGNORE).all() and (w[:, 0, :] == 0).all() and (x[:, :, 0] == 0).all()
    centre = y[:, 6:10, 8:12]
    assert (centre != IGNORE).all() and set(centre.unique().tolist()) <= set(range(12))


def test_photometric_changes_nothing_at_probability_zero_and_stays_in_range():
    generator = torch.Generator().manual_seed(3)
    images = torch.rand(4, 3, 12, 12)
    same = st.photometric(
        images, generator, jitter=0.5, jitter_p=0.0, blur_p=0.0, blur_sigma=(0.5, 1.0)
    )
    assert torch.equal(same, images)
    changed = st.photometric(
        images, generator, jitter=0.5, jitter_p=1.0, blur_p=1.0, blur_sigma=(0.5, 1.0)
    )
    assert changed.shape == images.shape and changed.min() >= 0 and changed.max() <= 1
    assert not torch.allclose(changed, images)


def test_weighted_cross_entropy_scales_with_the_weights_and_skips_ignored_pixels():
    logits = torch.randn(1, 3, 2, 2)
    labels = torch.tensor([[[0, 1], [2, IGNORE]]])
    full = st.weighted_cross_entropy(logits, labels, torch.ones(1, 2, 2), IGNORE)
    half = st.weighted_cross_entropy(logits, labels, torch.full((1, 2, 2), 0.5), IGNORE)
    assert half.item() == pytest.approx(full.item() / 2)
    per_pixel = nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum")
    assert full.item() == pytest.approx(per_pixel.item() / 4)  # mean over all 4 pixels
