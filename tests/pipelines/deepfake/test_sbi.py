"""Self-Blended Images in frame-model training (``deepfake.training.pseudo_fakes: sbi``): the
training set serves a pseudo-fake of each REAL crop, labelled FAKE with the mask of what it
changed, the same one for the same seed, epoch and index in any DataLoader worker;
``reals_only`` trains on REAL crops alone and still predicts every video."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from podium.core.config import ParameterError
from podium.core.seeding import seed_worker
from podium.faces import crop_face
from podium.faces.self_blend import load_predictor
from podium.faces.video import manipulation_masks
from podium.pipelines.deepfake import train
from podium.pipelines.deepfake.params import SelfBlendParams
from podium.pipelines.deepfake.train import _FrameDataset, _PseudoFakes, _resize
from podium.sample_data.faces import random_appearance, render_face
from tests.pipelines.deepfake.test_training import (  # noqa: F401 (one_thread: autouse)
    RUNTIME,
    _settings,
    _store,
    one_thread,
)

SIZE = 64
FRAME = (120, 160)
MARGIN = 0.5
EXTRACTION = {"margin": MARGIN, "crop_mode": "aspect", "mask_threshold": 8, "mask_blur": 1.0}


def _record(seed: int, fake: bool, n: int = 2) -> dict:
    """One video's record as the extraction writes it: drawn face crops with their
    detector boxes and settings; a FAKE's face carries a bright patch, its mask."""
    appearance = random_appearance(np.random.default_rng(seed))
    crops, boxes = [], []
    for i in range(n):
        frame = np.full((*FRAME, 3), 110 + 10 * i, np.uint8)
        box = render_face(frame, appearance, (80 + 2 * i, 60), 56)
        crops.append(crop_face(frame, box, MARGIN, (SIZE, SIZE)))
        boxes.append(box)
    crops = np.stack(crops)
    masks = np.zeros(crops.shape[:3], np.uint8)
    if fake:
        crops[:, 24:40, 24:40] = 250
        masks[:, 24:40, 24:40] = 1
    return {
        "crops": crops,
        "masks": masks if fake else None,
        "boxes": np.asarray(boxes, np.float32),
        "height": FRAME[0],
        "width": FRAME[1],
        "settings": EXTRACTION,
        "label": "FAKE" if fake else "REAL",
    }


def _videos(n: int = 8) -> tuple[dict, pd.DataFrame]:
    records, rows = {}, []
    for v in range(n):
        fake = v % 2 == 1
        name = f"vid{v:02d}"
        records[name] = _record(v, fake)
        rows.append({"partition": name, "label": "FAKE" if fake else "REAL", "fold": (v // 2) % 2})
    return records, pd.DataFrame(rows)


class _Epoch:
    """What the dataset reads the epoch from (the training loader's sampler)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch


def _dataset(records, seed=5, epoch=1, augment=None, with_masks=True, **sbi) -> _FrameDataset:
    loaders, index = _store(records)
    labels = np.array([records[p]["label"] == "FAKE" for p in index["partition"]], np.float32)
    pseudo = _PseudoFakes(np.flatnonzero(labels == 0), seed, SelfBlendParams(**sbi))
    pseudo.sampler = _Epoch(epoch)
    resize = _resize((SIZE, SIZE))
    return _FrameDataset(loaders, index, labels, resize, augment, with_masks, pseudo=pseudo)


@pytest.fixture(scope="module")
def records():
    load_predictor()  # once in this process: forked loader workers share it
    return _videos(4)[0]


def test_each_real_crop_has_a_pseudo_fake_labelled_fake_with_its_mask(records):
    dataset = _dataset(records)
    _, index = _store(records)
    stored = len(index)
    reals = [i for i, p in enumerate(index["partition"]) if records[p]["label"] == "REAL"]
    assert len(dataset) == stored + len(reals)
    plain = _FrameDataset(*_store(records), dataset.labels, _resize((SIZE, SIZE)), None, True)
    for i in range(stored):  # the stored crops are served as they are
        item, same = dataset[i], plain[i]
        assert torch.equal(item["image"], same["image"])
        assert torch.equal(item["target"]["mask"], same["target"]["mask"])
        assert item["target"]["label"] == same["target"]["label"]
    marked = 0
    for k, i in enumerate(range(stored, len(dataset))):
        row = index.iloc[reals[k]]
        source = records[row.partition]["crops"][row.crop]
        item = dataset[i]
        image = item["image"].numpy().transpose(1, 2, 0)
        assert item["target"]["label"].item() == 1.0
        assert item["target"]["mask_weight"].item() == 1.0
        mask = item["target"]["mask"][0].numpy()
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
        # the mask is what the blend changed, by the extraction's own rule for a fake
        expected = manipulation_masks(image[None], source[None], threshold=8, blur=1.0)[0]
        np.testing.assert_array_equal(mask, expected)
        marked += int(mask.sum())
        assert (image != source).any()
        # the blend stays on the face: the crop's border rows and columns are untouched
        np.testing.assert_array_equal(image[:6], source[:6])
        np.testing.assert_array_equal(image[:, :6], source[:, :6])
    assert marked > 50  # the subtlest blends (a ratio of 0.25) may change no pixel by 8 levels


def test_the_same_seed_epoch_and_index_give_the_same_tensor_in_any_worker(records):
    flips = [{"name": "HorizontalFlip", "p": 0.5}, {"name": "GaussNoise", "p": 0.5}]
    from podium.core.augment import build_transforms

    def tensors(dataset, workers: int, loader_seed: int) -> list[torch.Tensor]:
        loader = DataLoader(
            dataset,
            batch_size=3,
            num_workers=workers,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(loader_seed),
            multiprocessing_context="fork" if workers else None,
        )
        return [t for batch in loader for t in batch["image"]]

    def made(seed=5, epoch=1):
        return _dataset(records, seed, epoch, build_transforms(flips, parameter="augment"))

    one = tensors(made(), 0, 0)
    two = tensors(made(), 2, 1)  # other workers, other worker seeds: the same items
    assert len(one) == len(made()) and all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    stored = len(_store(records)[1])
    for other in (tensors(made(epoch=2), 0, 0), tensors(made(seed=6), 0, 0)):
        assert not any(torch.equal(a, b) for a, b in zip(one[stored:], other[stored:], strict=True))


def test_balanced_draws_give_the_pseudo_fakes_their_share_of_the_fake_half(records):
    dataset = _dataset(records)
    stored = len(dataset.labels)
    weights = dataset.class_balanced_weights()
    real = np.r_[dataset.labels == 0, np.zeros(len(dataset) - stored, bool)]
    assert weights[real].sum() == pytest.approx(0.5 * weights.sum())
    assert np.unique(weights[~real]).size == 1  # every FAKE item alike, pseudo or real
    shared = _dataset(records, fake_share=0.25).class_balanced_weights()
    assert shared[stored:].sum() == pytest.approx(0.25 * shared[~real].sum())
    assert shared[real].sum() == pytest.approx(shared[~real].sum())


@pytest.fixture(scope="module")
def videos():
    return _videos(8)


def _sbi_settings(**overrides) -> dict:
    unet = {"name": "u", "architecture": "unet_multitask", "backbone": "test_efficientnet"}
    base = {"models": [unet], "image_size": SIZE, "epochs": 1, "pseudo_fakes": "sbi"}
    return _settings(**{**base, "balance_classes": True, **overrides})


@pytest.mark.parametrize("reals_only", [True, False])
def test_reals_only_trains_on_real_crops_yet_predicts_every_video(
    videos, training_sets, reals_only
):
    records, table = videos
    settings = _sbi_settings(reals_only=reals_only)
    state_dicts, history, oof = train.train_frame_models(
        *_store(records), table, settings, RUNTIME, seed=1
    )
    assert set(state_dicts) == {"u/fold0", "u/fold1"} and len(history) == 2
    assert history[["train_loss", "val_loss", "val_mask_iou"]].notna().all().all()
    assert set(oof["u"]) == set(table["partition"])  # every video, FAKE ones too
    label_of = dict(zip(table["partition"], table["label"], strict=True))
    for fold, dataset in zip((0, 1), training_sets, strict=True):
        trained = {label_of[name] for name in dataset.names}
        assert trained == ({"REAL"} if reals_only else {"REAL", "FAKE"})
        assert not set(dataset.names) & set(table.loc[table["fold"] == fold, "partition"])
        reals = int((dataset.labels == 0).sum())
        assert len(dataset.pseudo) == reals and len(dataset) == len(dataset.labels) + reals
        assert dataset.pseudo.sampler.epoch == 1  # fit's epochs reach the pseudo-fakes' seeds


def test_reals_only_without_pseudo_fakes_is_a_parameter_error(videos):
    records, table = videos
    with pytest.raises(ParameterError, match=r"deepfake\.training\.reals_only") as error:
        train.train_frame_models(
            *_store(records), table, _settings(reals_only=True), RUNTIME, seed=0
        )
    assert "pseudo_fakes: sbi" in str(error.value)


def test_pseudo_fakes_need_real_crops_in_the_training_folds(videos):
    records, table = videos
    fakes_first = table.assign(fold=np.where(table["label"] == "REAL", 0, 1))
    with pytest.raises(ValueError, match=r"fold 0: .*no REAL crop"):
        train.train_frame_models(*_store(records), fakes_first, _sbi_settings(), RUNTIME, seed=0)
