"""Mixup of aligned real-fake pairs (``deepfake.training.pair_mixup``): a FAKE training crop
is served as ``(1 - t) * real + t * fake`` of the pair augmented alike, labelled ``t ~
Beta(alpha, alpha)``, ``real`` its original's crop of the same frame and face resampled onto
the FAKE's cut; the same item for the same seed, epoch and index in any DataLoader worker; a
FAKE without its original is served unmixed."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch.utils.data import DataLoader

from podium.core.augment import build_transforms
from podium.core.seeding import seed_worker
from podium.faces import crop_face
from podium.pipelines.deepfake import train
from podium.pipelines.deepfake.data import face_rows
from podium.pipelines.deepfake.params import PairMixupParams, SelfBlendParams
from podium.pipelines.deepfake.train import (
    _aligned_original,
    _FrameDataset,
    _PairMixup,
    _PseudoFakes,
    _resize,
    original_partners,
)
from tests.pipelines.deepfake.test_training import (  # noqa: F401 (one_thread: autouse)
    RUNTIME,
    _settings,
    one_thread,
)

SIZE = 48
FRAME = (120, 160)
MARGIN = 0.3
FLIP = [{"name": "HorizontalFlip", "p": 0.5}]


def _frame(i: int, v: int) -> np.ndarray:
    """A smooth frame (resampling it twice stays close to resampling it once)."""
    y, x = np.mgrid[: FRAME[0], : FRAME[1]].astype(np.float64)
    phase = 0.7 * i + 1.3 * v
    channels = [
        120 + 60 * np.sin(x / 9 + phase) * np.cos(y / 11),
        110 + 70 * np.cos(x / 13 - phase) + 0.2 * y,
        90 + 0.5 * x + 40 * np.sin((x + y) / 15 + phase),
    ]
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)


def _record(frames, boxes, video, label, original=None, masks=None, mode="aspect") -> dict:
    size = (SIZE, SIZE)
    crops = np.stack(
        [crop_face(f, b, MARGIN, size, mode=mode) for f, b in zip(frames, boxes, strict=True)]
    )
    n = len(frames)
    return {
        "video": video,
        "folder": "part",
        "label": label,
        "original": original,
        "crops": crops,
        "masks": masks,
        "boxes": np.asarray(boxes, np.float32),
        "frame_indices": np.arange(n, dtype=np.int64) * 10,
        "sampled_indices": np.arange(n, dtype=np.int64) * 10,
        "confidences": np.ones(n, np.float32),
        "frames_total": 10 * n,
        "fps": 30.0,
        "height": FRAME[0],
        "width": FRAME[1],
        "settings": {"margin": MARGIN, "crop_mode": mode, "mask_threshold": 8, "mask_blur": 0.0},
    }


def _pair(v: int, n: int = 2, mode: str = "aspect", shift=(3.0, -2.0)) -> dict[str, dict]:
    """An original and its FAKE: the FAKE's face brightened, its own detection a little off
    the original's (as a face swap moves the detector's box)."""
    originals, fakes, boxes, fake_boxes, masks = [], [], [], [], []
    for i in range(n):
        frame = _frame(i, v)
        box = np.array([50 + 2 * i, 30, 102 + 2 * i, 92], np.float64)
        fake = frame.copy()
        fake[45:75, 62:90] = np.clip(fake[45:75, 62:90].astype(int) + 70, 0, 255)
        moved = box + [shift[0], shift[1], shift[0] + 2, shift[1] + 1]
        changed = np.zeros(FRAME, np.uint8)
        changed[45:75, 62:90] = 1
        originals.append(frame), fakes.append(fake), boxes.append(box), fake_boxes.append(moved)
        masks.append(
            crop_face(changed[..., None].repeat(3, -1), moved, MARGIN, (SIZE, SIZE))[..., 0]
        )
    real = _record(originals, boxes, f"orig{v}.mp4", "REAL", mode=mode)
    fake = _record(fakes, fake_boxes, f"fake{v}.mp4", "FAKE", f"orig{v}.mp4", np.stack(masks), mode)
    return {f"part/orig{v}": real, f"part/fake{v}": fake}


def _index(records: dict) -> tuple[dict, pd.DataFrame]:
    """The records' load functions and their face index, as the extraction writes it."""
    loaders = {p: (lambda r=r: r) for p, r in records.items()}
    return loaders, pd.concat([face_rows(p, r) for p, r in records.items()], ignore_index=True)


class _Epoch:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch


def _dataset(records, augment=None, seed=3, epoch=0, with_masks=False, pseudo=None, **mixup):
    loaders, index = _index(records)
    rows = index[["partition", "crop"]]
    labels = (index["label"] == "FAKE").to_numpy(np.float32)
    params = PairMixupParams(enabled=True, **mixup)
    partners = original_partners(index, rows, labels, np.zeros(len(rows)), params.min_iou)
    pair = _PairMixup(partners, seed, params)
    pair.sampler = _Epoch(epoch)
    transforms = None if augment is None else build_transforms(augment, parameter="augment")
    return _FrameDataset(
        loaders, rows, labels, _resize((SIZE, SIZE)), transforms, with_masks, 4, pseudo, pair
    )


@pytest.fixture(scope="module")
def records() -> dict:
    return {**_pair(0), **_pair(1)}


@pytest.mark.parametrize("mode", ["aspect", "isotropic_pad"])
def test_the_original_crop_is_resampled_onto_the_fakes_cut(mode):
    pair = _pair(0, n=1, mode=mode, shift=(5.0, -4.0))
    real, fake = pair["part/orig0"], pair["part/fake0"]
    truth = crop_face(_frame(0, 0), fake["boxes"][0], MARGIN, (SIZE, SIZE), mode=mode)
    aligned = _aligned_original(fake, 0, real, 0).astype(float)
    error = np.abs(aligned - truth).mean()
    unaligned = np.abs(real["crops"][0].astype(float) - truth).mean()
    assert error < 2.0 and unaligned > 4 * error, (error, unaligned)
    same = _aligned_original(real, 0, real, 0)  # the same cut: the crop itself
    np.testing.assert_array_equal(same, real["crops"][0])


def test_a_mixed_item_is_the_t_mix_of_the_pair_augmented_alike(records):
    dataset = _dataset(records, FLIP, with_masks=True)
    plain = _dataset(records, None, with_masks=True)
    loaders, index = _index(records)
    flips, mixed = set(), 0
    for epoch in range(6):
        dataset.mixup.sampler = _Epoch(epoch)
        for i, row in enumerate(index.itertuples()):
            item = dataset[i]
            label = float(item["target"]["label"])
            if row.label == "REAL":  # served as it is, flipped or not
                same = plain[i]["image"]
                assert label == 0.0
                assert torch.equal(item["image"], same) or torch.equal(item["image"], same.flip(2))
                continue
            mixed += 1
            assert 0.0 < label < 1.0
            k = int(dataset.mixup.partners[i])
            assert index.iloc[k]["video"] == row.original and index.iloc[k]["crop"] == row.crop
            fake = plain._sample(records[row.partition]["crops"][row.crop], 1.0, None)["image"]
            source = _aligned_original(
                records[row.partition], row.crop, records[index.iloc[k].partition], row.crop
            )
            real = plain._sample(source, 0.0, None)["image"]
            image = item["image"].double()
            matches = []
            for flipped in (False, True):  # one draw for both images: flipped together or not
                a, b = (real.flip(2), fake.flip(2)) if flipped else (real, fake)
                expected = (1 - label) * a.double() + label * b.double()
                matches.append(bool((image - expected).abs().max() <= 1.0))
            assert sum(matches) == 1, (i, epoch)
            flips.add(matches.index(True))
            # unet_multitask: the FAKE's mask, its weight t (a faint mix asks little of it)
            assert item["target"]["mask"].sum() > 0
            assert float(item["target"]["mask_weight"]) == pytest.approx(label)
    assert flips == {0, 1} and mixed == 6 * 4


def test_t_is_beta_half_half_distributed(records):
    dataset = _dataset(records)
    draws = []
    for epoch in range(250):
        dataset.mixup.sampler = _Epoch(epoch)
        draws += [float(dataset[i]["target"]["label"]) for i in (2, 3, 6, 7)]  # the FAKE crops
    draws = np.array(draws)
    assert stats.kstest(draws, stats.beta(0.5, 0.5).cdf).pvalue > 0.01
    assert stats.kstest(draws, "uniform").pvalue < 0.01  # U-shaped, not flat
    assert abs(draws.mean() - 0.5) < 0.05
    ends = ((draws < 0.1) | (draws > 0.9)).mean()
    middle = ((draws > 0.4) & (draws < 0.6)).mean()
    assert ends > 2.5 * middle  # ~0.41 against ~0.13


def test_share_of_mixed_draws(records):
    dataset = _dataset(records, share=0.25)
    labels = []
    for epoch in range(100):
        dataset.mixup.sampler = _Epoch(epoch)
        labels += [float(dataset[i]["target"]["label"]) for i in (2, 3, 6, 7)]
    assert np.mean(np.array(labels) < 1.0) == pytest.approx(0.25, abs=0.07)


def test_the_same_seed_epoch_and_index_give_the_same_tensor_in_any_worker(records):
    augment = [*FLIP, {"name": "GaussNoise", "p": 0.5}]

    def items(dataset, workers: int, loader_seed: int) -> list[tuple[torch.Tensor, float]]:
        loader = DataLoader(
            dataset,
            batch_size=3,
            num_workers=workers,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(loader_seed),
            multiprocessing_context="fork" if workers else None,
        )
        return [
            (image, float(label))
            for batch in loader
            for image, label in zip(batch["image"], batch["target"]["label"], strict=True)
        ]

    one = items(_dataset(records, augment), 0, 0)
    two = items(_dataset(records, augment), 2, 1)  # other workers and worker seeds
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(one, two, strict=True))
    fakes = [2, 3, 6, 7]
    for other in (items(_dataset(records, augment, epoch=1), 0, 0),
                  items(_dataset(records, augment, seed=4), 0, 0)):  # fmt: skip
        assert all(one[i][1] != other[i][1] for i in fakes)


def test_a_fake_without_its_original_is_served_unmixed(records):
    lone = {p: r for p, r in records.items() if p != "part/orig1"}
    dataset, plain = _dataset(lone), _dataset(lone, share=0.0)
    _, index = _index(lone)
    for i, row in enumerate(index.itertuples()):
        label = float(dataset[i]["target"]["label"])
        if row.partition == "part/fake1":
            assert dataset.mixup.partners[i] == -1 and label == 1.0
            assert torch.equal(dataset[i]["image"], plain[i]["image"])
        elif row.partition == "part/fake0":
            assert 0.0 < label < 1.0


def test_pairs_need_the_same_frame_an_overlapping_box_and_fold(records):
    _, index = _index(records)
    rows = index[["partition", "crop"]]
    labels = (index["label"] == "FAKE").to_numpy(np.float32)
    folds = np.zeros(len(rows))
    paired = original_partners(index, rows, labels, folds, 0.5)
    np.testing.assert_array_equal(paired, [-1, -1, 0, 1, -1, -1, 4, 5])
    later = index.assign(
        frame_index=np.where(index["crop"] == 1, index["frame_index"] + 1, index["frame_index"])
    )
    later.loc[later["label"] == "REAL", "frame_index"] = index["frame_index"]
    assert list(original_partners(later, rows, labels, folds, 0.5)[[2, 3]]) == [0, -1]
    assert (original_partners(index, rows, labels, folds, 0.99) == -1).all()  # boxes moved
    apart = np.array([0, 0, 1, 1, 0, 0, 0, 0])  # fake0 in another fold than its original
    assert list(original_partners(index, rows, labels, apart, 0.5)) == [-1] * 4 + [-1, -1, 4, 5]
    with pytest.raises(ValueError, match=r"pair_mixup.*frame_index"):
        original_partners(index.drop(columns="frame_index"), rows, labels, folds, 0.5)


def test_pair_mixup_with_pseudo_fakes_mixes_the_real_fakes_and_keeps_the_blends(records):
    _, index = _index(records)
    labels = (index["label"] == "FAKE").to_numpy(np.float32)
    reals = np.flatnonzero(labels == 0)

    def pseudo():
        made = _PseudoFakes(reals, 3, SelfBlendParams(landmarks="ellipse"))
        made.sampler = _Epoch(0)
        return made

    both = _dataset(records, FLIP, pseudo=pseudo())
    loaders = _index(records)[0]
    rows = index[["partition", "crop"]]
    transforms = build_transforms(FLIP, parameter="augment")
    sbi_only = _FrameDataset(
        loaders, rows, labels, _resize((SIZE, SIZE)), transforms, False, pseudo=pseudo()
    )
    assert len(both) == len(index) + len(reals)
    for i in range(len(index), len(both)):  # the pseudo-fakes are what sbi alone serves
        item, alone = both[i], sbi_only[i]
        assert float(item["target"]["label"]) == 1.0
        assert torch.equal(item["image"], alone["image"])
    for i in np.flatnonzero(labels == 1):
        assert 0.0 < float(both[i]["target"]["label"]) < 1.0


def test_training_with_pair_mixup(records, training_sets, caplog):
    data = {**records, **_pair(2), **_pair(3)}
    loaders, index = _index(data)
    lone = index["partition"] != "part/orig3"  # fake3's original has no faces: unmixed
    data.pop("part/orig3")
    videos = pd.DataFrame({"partition": list(data)})
    videos["label"] = np.where(videos["partition"].str.contains("fake"), "FAKE", "REAL")
    videos["fold"] = videos["partition"].str[-1].astype(int) % 2
    settings = _settings(image_size=SIZE, epochs=1, batch_size=4, pair_mixup={"enabled": True})
    with caplog.at_level(logging.INFO, logger=train.__name__):
        state_dicts, history, oof = train.train_frame_models(
            {p: loaders[p] for p in data}, index[lone], videos, settings, RUNTIME, seed=1
        )
    assert set(state_dicts) == {"tiny/fold0", "tiny/fold1"} and set(oof["tiny"]) == set(data)
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    assert "pair mixup: 2 of 8 FAKE crops have no aligned crop" in caplog.text
    for dataset in training_sets:
        assert dataset.mixup is not None and dataset.mixup.sampler.epoch == 1
        paired = dataset.mixup.partners >= 0
        assert (dataset.labels[paired] == 1.0).all()
        assert paired.sum() == 4 - 2 * ("part/fake3" in dataset.names)
        labels = [float(dataset[i]["target"]["label"]) for i in np.flatnonzero(paired)]
        assert all(0.0 < t < 1.0 for t in labels)


def test_conf_fulls_augmentations_give_both_images_of_a_pair_the_same_draws(records):
    """The heavy list (compression, noise, dropout, affine, ...) as the dataset applies it:
    an item whose FAKE and original crops are the same image is that image, augmented once."""
    import yaml

    from tests.conftest import REPO

    full = yaml.safe_load((REPO / "conf/full/parameters_deepfake.yml").read_text())
    augment = full["deepfake"]["training"]["augment"]
    same = {p: {**r, "crops": records["part/orig0"]["crops"]} for p, r in records.items()}
    for p in same:  # one cut for all: the aligned original is the FAKE's crop itself
        same[p]["boxes"] = records["part/orig0"]["boxes"]
    dataset, plain = _dataset(same, augment), _dataset(same, augment, share=0.0)
    for epoch in range(8):
        for d in (dataset, plain):
            d.mixup.sampler = _Epoch(epoch)
        for i in (2, 3, 6, 7):
            t = float(dataset[i]["target"]["label"])
            assert 0.0 < t < 1.0
            difference = (dataset[i]["image"].int() - plain[i]["image"].int()).abs()
            assert difference.max() <= 1  # (1 - t) * x + t * x, rounded
