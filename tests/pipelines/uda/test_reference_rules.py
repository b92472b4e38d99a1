"""uda against its references, each rule recomputed from its definition by plain loops.

- DAFormer's EMA teacher (``mmseg/models/uda/dacs.py``: ``_init_ema_weights``,
  ``_update_ema``): copied at iteration 0, from iteration i >= 1 every parameter becomes
  a * teacher + (1 - a) * student with a = min(1 - 1/(i + 1), alpha), buffers untouched,
  the teacher labelling in train mode with dropout and drop-path off.
- DAFormer's pseudo-label weight: the share of the batch's pixels whose top probability is
  >= the threshold, one scalar for every pixel of the batch.
- The Samsung challenge's scoring: class k's IoU is |P_k & G_k| / |P_k | G_k| of the mask
  P_k (prediction == k) against G_k (label == k) over every pixel, over the 12 classes, so a
  background (255) pixel given class k counts against k.
- The DACON baseline's resize to 960x540: PIL NEAREST, output pixel i from input pixel
  int((i + 0.5) * n_in / n_out) as PIL accumulates it (pixel centres).

Each reference runs on at least 1,000 random inputs; the worked examples are literal.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from podium.layouts.uda import IGNORE_INDEX, NUM_CLASSES, SUBMISSION_SIZE
from podium.pipelines.uda import background as bg
from podium.pipelines.uda import evaluate, train
from podium.pipelines.uda import selftraining as st
from podium.pipelines.uda.submission import (
    labelled_share,
    rle_encode,
    submission_rows,
    to_submission_size,
)

TRIALS = 1000


# ------------------------------------------------------------------ DAFormer's EMA teacher
def _reference_alpha(i: int, alpha: float) -> float:
    return min(1 - 1 / (i + 1), alpha)


def test_daformer_alpha_worked_examples():
    assert st.daformer_alpha(1, 0.999) == 0.5  # the first update: halfway to the student
    assert st.daformer_alpha(2, 0.999) == pytest.approx(2 / 3)
    assert st.daformer_alpha(9, 0.999) == pytest.approx(0.9)
    assert st.daformer_alpha(99, 0.999) == pytest.approx(0.99)
    assert st.daformer_alpha(999, 0.999) == pytest.approx(0.999)
    assert st.daformer_alpha(5000, 0.999) == 0.999  # capped at alpha from iteration 999 on
    assert st.daformer_alpha(100, 0.99) == 0.99  # uda's ema_alpha: capped from iteration 99
    rng = np.random.default_rng(0)
    for _ in range(TRIALS):
        i, alpha = int(rng.integers(1, 100_000)), float(rng.uniform(0, 1))
        assert st.daformer_alpha(i, alpha) == _reference_alpha(i, alpha)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.drop = nn.Dropout2d(0.5)
        self.head = nn.Conv2d(4, NUM_CLASSES + 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(torch.relu(self.norm(self.conv(x)))))


def test_the_daformer_teacher_equals_the_loop_rule_over_1000_iterations():
    """init_teacher at iteration 0, update_teacher at every later one, against the rule as
    plain loops over each parameter's scalars; buffers are never averaged."""
    torch.manual_seed(0)
    student, teacher = _Tiny(), _Tiny()  # different initial weights: iteration 0 copies
    generator = torch.Generator().manual_seed(1)

    def flat(net: nn.Module) -> list[float]:
        return [float(v) for p in net.parameters() for v in p.detach().flatten()]

    buffers_before = [b.clone() for b in teacher.buffers()]
    rng = np.random.default_rng(2)
    reference: list[float] = []
    for i in range(TRIALS + 1):
        alpha = float(rng.choice([0.99, 0.999, rng.uniform(0.5, 1.0)]))
        if i == 0:
            st.init_teacher(teacher, student)
            reference = flat(student)
        else:
            st.update_teacher(teacher, student, i, alpha)
            a = min(1 - 1 / (i + 1), alpha)
            reference = [a * t + (1 - a) * s for t, s in zip(reference, flat(student), strict=True)]
        np.testing.assert_allclose(flat(teacher), reference, rtol=1e-5, atol=1e-6)
        with torch.no_grad():  # the student moves on: one random step
            for p in student.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
            student.norm.running_mean.add_(1.0)
    for before, after in zip(buffers_before, teacher.buffers(), strict=True):
        assert torch.equal(before, after)  # BatchNorm buffers: not averaged


def _step_params(regime: str = "self_training", rule: str = "daformer") -> dict:
    return {
        "regime": regime,
        "ema_rule": rule,
        "ema_alpha": 0.999,
        "pseudo_label": {
            "threshold": 0.0, "start_iteration": 0, "ignore_top": 0.0, "ignore_bottom": 0.0,
            "teacher_augment": False, "weight": "batch", "inclusive": True,
        },
        "strong_augment": {"enabled": False},
        "dual_branch": {"enabled": False},
        "class_mix": {"enabled": False},
        "mic": {"enabled": False},
    }  # fmt: skip


def test_uda_step_moves_the_teacher_first_then_labels_in_train_mode_without_dropout():
    """As DAFormer's forward_train: the teacher is updated at the start of iteration i
    with alpha(i) from the student's weights after i optimizer steps, then labels the
    target batch with BatchNorm on the batch's statistics and dropout off. Its buffers,
    which nothing it labels depends on, are the student's (for its eval-mode use)."""
    torch.manual_seed(0)
    student = _Tiny()
    teacher = _Tiny()
    modes: list[tuple[bool, bool, bool]] = []
    seen_buffers: list[list[torch.Tensor]] = []

    def hook(module, _):
        modes.append((module.training, module.norm.training, module.drop.training))
        seen_buffers.append([b.clone() for b in module.buffers()])

    teacher.register_forward_pre_hook(hook)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
    generator = torch.Generator().manual_seed(0)
    batch = (
        torch.rand(2, 3, 8, 8),
        torch.randint(0, NUM_CLASSES + 1, (2, 8, 8)),
        torch.rand(2, 3, 8, 8),
    )
    t = _step_params()
    reference = None
    for i in range(6):
        before = {k: v.clone() for k, v in student.named_parameters()}
        buffers = [b.clone() for b in student.buffers()]
        if i == 0:
            reference = {k: v.clone() for k, v in before.items()}
        else:
            a = min(1 - 1 / (i + 1), 0.999)
            reference = {k: a * reference[k] + (1 - a) * before[k] for k in reference}
        loss, parts = train.uda_step(
            student, batch, i, teacher=teacher, t=t, generator=generator, channels_last=False
        )
        for k, v in teacher.named_parameters():  # updated before the teacher labelled
            torch.testing.assert_close(v, reference[k])
        for expected, got in zip(buffers, seen_buffers[-1], strict=True):
            assert torch.equal(expected, got)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert float(parts["pseudo_weight"]) == 1.0  # threshold 0: every pixel, >=
    assert modes == [(True, True, False)] * 6  # train mode, BatchNorm training, dropout off


def test_the_two_rules_differ_from_step_one():
    """After the first optimizer step podium's timm rule has copied the student (alpha 0),
    DAFormer's teacher is halfway between the initial weights and the student."""
    torch.manual_seed(0)
    student = _Tiny()
    initial = {k: v.clone() for k, v in student.named_parameters()}
    teacher = _Tiny()
    st.init_teacher(teacher, student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    st.update_teacher(teacher, student, 1, 0.999)
    for k, v in teacher.named_parameters():
        torch.testing.assert_close(v, initial[k] + 0.5)  # timm's teacher: initial[k] + 1


# ------------------------------------------------------------------ the pseudo-label weight
def _reference_weight(probabilities: torch.Tensor, threshold: float) -> float:
    """DAFormer: sum(pseudo_prob >= threshold) / size, over the batch, by loops."""
    n, c, h, w = probabilities.shape
    p = probabilities.tolist()
    confident = 0
    for i in range(n):
        for y in range(h):
            for x in range(w):
                top = max(p[i][k][y][x] for k in range(c))
                confident += top >= threshold
    return confident / (n * h * w)


def test_the_batch_weight_equals_daformers_share_on_1000_random_batches():
    rng = np.random.default_rng(3)
    for trial in range(TRIALS):
        n, c, h, w = (int(v) for v in rng.integers(1, 5, 4))
        logits = torch.from_numpy(rng.normal(0, 3, (n, c + 1, h, w))).float()
        probabilities = torch.softmax(logits, dim=1)
        if trial % 2:  # a threshold equal to a pixel's confidence: the >= tie
            threshold = float(probabilities.max(dim=1).values.flatten()[0])
        else:
            threshold = float(rng.uniform(0.2, 1.0))
        labels, weights = st.pseudo_labels(logits, threshold)
        expected = _reference_weight(probabilities, threshold)
        assert torch.equal(weights, torch.full((n, h, w), expected, dtype=torch.float32))
        assert torch.equal(labels, probabilities.argmax(dim=1))


# ------------------------------------------------------------------ the competition's mIoU
def _reference_iou(prediction: np.ndarray, label: np.ndarray, ignore_background: bool):
    """Per-class IoU of the masks prediction == k and label == k over every pixel (the
    competition), or skipping background-labelled pixels (podium before), by loops."""
    inter, union = [0] * NUM_CLASSES, [0] * NUM_CLASSES
    for p, g in zip(prediction.ravel().tolist(), label.ravel().tolist(), strict=True):
        if ignore_background and g == IGNORE_INDEX:
            continue
        for k in range(NUM_CLASSES):
            inter[k] += p == k and g == k
            union[k] += p == k or g == k
    return [i / u if u else math.nan for i, u in zip(inter, union, strict=True)]


def test_a_background_pixel_given_a_class_counts_against_it():
    label = np.array([[0, 0, 255], [1, 1, 255]], np.uint8)  # a fisheye corner on the right
    prediction = np.array([[0, 0, 0], [1, 1, 255]], np.uint8)  # the corner called road
    counted = evaluate.class_iou(prediction, label)["iou"].to_numpy()
    ignored = evaluate.class_iou(prediction, label, background="ignore")["iou"].to_numpy()
    assert counted[0] == pytest.approx(2 / 3) and counted[1] == 1.0  # road loses a pixel
    assert ignored[0] == 1.0 and ignored[1] == 1.0  # podium before: flattered
    assert np.isnan(counted[2:]).all()
    # a labelled pixel predicted background misses its class either way
    missed = evaluate.class_iou(np.array([[255, 0]], np.uint8), np.array([[0, 0]], np.uint8))
    assert missed["iou"][0] == 0.5


def test_scoring_equals_the_mask_iou_over_every_pixel_on_1000_random_maps():
    rng = np.random.default_rng(4)
    for trial in range(TRIALS):
        shape = (int(rng.integers(1, 9)), int(rng.integers(1, 9)))
        values = np.array([*range(NUM_CLASSES), IGNORE_INDEX])
        pool = rng.choice(values, size=int(rng.integers(1, 6)), replace=False)
        label = rng.choice(pool, shape).astype(np.uint8)
        prediction = rng.choice(pool, shape).astype(np.uint8)
        for ignore in (False, True):
            table = evaluate.streamed_class_iou(
                [(prediction, label)], "ignore" if ignore else "count"
            )
            np.testing.assert_allclose(
                table["iou"].to_numpy(), _reference_iou(prediction, label, ignore), rtol=1e-12
            )
        if trial < 50:  # a split scored image by image pools the pixels of all its images
            other = rng.choice(pool, shape).astype(np.uint8)
            table = evaluate.streamed_class_iou([(prediction, label), (other, label)])
            joined = _reference_iou(
                np.concatenate([prediction, other]), np.concatenate([label, label]), False
            )
            np.testing.assert_allclose(table["iou"].to_numpy(), joined, rtol=1e-12)


# ------------------------------------------------------------------ 960x540, PIL NEAREST
def _reference_indices(n_in: int, n_out: int) -> list[int]:
    """PIL NEAREST's source index of each output pixel: the input pixel under its centre,
    (i + 0.5) * n_in / n_out, accumulated in double precision as PIL does."""
    if n_in == n_out:
        return list(range(n_in))
    step = n_in / n_out
    position, out = step * 0.5, []
    for _ in range(n_out):
        out.append(int(position))
        position += step
    return out


def test_the_submission_resize_takes_pixel_centres_as_pil_nearest():
    def rows(h: int) -> np.ndarray:  # a map whose every row holds its row index
        return to_submission_size(np.repeat(np.arange(h)[:, None] % 256, 4, 1).astype(np.uint8))

    # the real target, 1920x1080: rows and columns 1, 3, 5 (floor indexing took 0, 2, 4)
    target = (np.arange(1080)[:, None] % 251 + np.zeros((1, 1920), int)).astype(np.uint8)
    assert to_submission_size(target)[:3, 0].tolist() == [1, 3, 5]
    columns = (np.zeros((1080, 1), int) + np.arange(1920)[None] % 251).astype(np.uint8)
    assert to_submission_size(columns)[0, :3].tolist() == [1, 3, 5]
    assert _reference_indices(1080, 540)[:3] == [1, 3, 5]
    # the source size, 2048x1024: columns 1, 3, 5, ... and rows 0, 2, 4, ...
    assert _reference_indices(2048, 960)[:4] == [1, 3, 5, 7]
    assert _reference_indices(1024, 540)[:4] == [0, 2, 4, 6]
    assert rows(1024)[:4, 0].tolist() == [0, 2, 4, 6]
    # the sample, 320x180: every pixel three times
    assert _reference_indices(180, 540)[:7] == [0, 0, 0, 1, 1, 1, 2]
    sample = np.arange(180 * 320).reshape(180, 320) % 12
    np.testing.assert_array_equal(
        to_submission_size(sample.astype(np.uint8)), np.repeat(np.repeat(sample, 3, 0), 3, 1)
    )
    # background (255) stays background
    assert set(np.unique(to_submission_size(np.full((4, 4), 255, np.uint8)))) == {255}


def test_the_resize_equals_the_pixel_centre_rule_on_1000_random_sizes():
    width, height = SUBMISSION_SIZE
    rng = np.random.default_rng(5)
    for _ in range(TRIALS):
        h, w = int(rng.integers(1, 1200)), int(rng.integers(1, 2100))
        class_map = rng.integers(0, 256, (h, w), dtype=np.uint8)
        r, c = _reference_indices(h, height), _reference_indices(w, width)
        np.testing.assert_array_equal(to_submission_size(class_map), class_map[np.ix_(r, c)])
    # and PIL itself, as the DACON baseline calls it
    m = rng.integers(0, 13, (1080, 1920), dtype=np.uint8)
    baseline = np.array(Image.fromarray(m).resize((960, 540), Image.NEAREST))
    np.testing.assert_array_equal(to_submission_size(m), baseline)


# ------------------------------------------------------------------ background in and out
def test_background_is_class_12_in_training_and_255_in_the_class_maps():
    label = np.array([[0, 255], [11, 255]], np.uint8)
    assert bg.training_label(label, "class").tolist() == [[0, 12], [11, 12]]
    assert bg.training_label(label, "ignore").tolist() == label.tolist()
    assert bg.num_outputs("class") == 13 and bg.num_outputs("ignore") == 12
    p = torch.zeros(13, 1, 3)
    p[12, 0, 0], p[3, 0, 1], p[5, 0, 2] = 0.9, 0.6, 0.4  # background, road-ish, unsure
    p[0, 0, 2] = 0.35
    assert bg.class_map(p, "class").tolist() == [[255, 3, 5]]
    q = p[:12]
    assert bg.class_map(q, "ignore", 0.5).tolist() == [[255, 3, 255]]  # tops 0, 0.6, 0.4
    assert bg.class_map(q, "ignore", 0.0).tolist() == [[0, 3, 5]]  # podium before: never


def test_the_submission_leaves_background_out_of_every_mask():
    class_map = np.array([[0, 0, 255], [1, 255, 255]], np.uint8)
    rows = submission_rows([(f"T_class_{k}", k) for k in range(NUM_CLASSES)], class_map)
    assert rows["mask_rle"][0] == "1 2" and rows["mask_rle"][1] == "4 1"
    assert (rows["mask_rle"][2:] == "-1").all()
    assert labelled_share(rows["mask_rle"], class_map.shape) == 0.5
    full = np.zeros((2, 3), np.uint8)
    assert labelled_share([rle_encode(full == 0)], full.shape) == 1.0
