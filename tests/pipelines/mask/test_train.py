"""Cross-validated training on synthetic crops: every variant, the saved weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from podium.core.config import ParameterError
from podium.core.device import amp_settings
from podium.core.seeding import seed_everything
from podium.pipelines.mask.train import (
    Runtime,
    predict_with_saved_models,
    split_weights,
    train_cross_validated,
)

CPU = Runtime(torch.device("cpu"), amp_settings("cpu", "fp32"), 0, False, False)
SETTINGS = {
    "loss": {"name": "focal", "gamma": 2.0},
    "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.0},
    "scheduler": {"name": "cosine", "min_lr": 0.0},
    "deterministic": True,
    "train": {"epochs": 1, "batch_size": 8, "grad_clip": 1.0},
    "resampling": {"enabled": True, "factor": 2},
    "augment": [{"name": "HorizontalFlip", "p": 0.5}],
    "preprocess": [{"name": "Normalize"}, {"name": "ToTensorV2"}],
    "seed": 3,
    "runtime": CPU,
}


def _table(n_people: int = 4, photos: int = 3) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = n_people * photos
    person = np.repeat(np.arange(n_people), photos)
    table = pd.DataFrame(
        {
            "row": np.arange(n),
            "person": person,
            "fold": person % 2,
            "mask": np.tile([0, 1, 2], n_people),
            "gender": person % 2,
            "age_class": person % 3,
        }
    )
    table["class"] = table["mask"] * 6 + table["gender"] * 3 + table["age_class"]
    table["competition_class"] = table["class"]
    return rng.integers(0, 255, (n, 32, 24, 3), dtype=np.uint8), table


@pytest.mark.parametrize("variant", ["single18", "multihead", "separate"])
def test_every_variant_gives_out_of_fold_probabilities_and_reloadable_weights(variant):
    crops, table = _table()
    model = {"variant": variant, "backbones": ["resnet10t"], "pretrained": False, "drop_rate": 0.0}
    seed_everything(3)
    result = train_cross_validated(crops, table, model=model, **SETTINGS)

    oof = pd.concat(result.out_of_fold, ignore_index=True)
    assert sorted(oof["row"]) == list(range(len(table)))  # every row predicted exactly once
    probabilities = oof[[f"p{c}" for c in range(18)]].to_numpy()
    assert np.isfinite(probabilities).all() and np.allclose(probabilities.sum(1), 1)
    saved = split_weights(result.weights)
    assert set(saved) == {"resnet10t/fold0", "resnet10t/fold1"}
    nets = {"mask", "gender", "age"} if variant == "separate" else {"model"}
    assert set(saved["resnet10t/fold0"]) == nets
    assert len(result.history) == 2 * len(nets)

    # the saved weights reproduce the out-of-fold predictions of their fold
    fold0 = table[table["fold"] == 0]
    again = predict_with_saved_models(
        result.weights,
        crops[fold0["row"]],
        fold0[["row"]],
        model=model,
        preprocess=SETTINGS["preprocess"],
        batch_size=8,
        seed=3,
        runtime=CPU,
    )
    again = again[again["model"] == "resnet10t/fold0"].sort_values("row")
    before = oof[oof["model"] == "resnet10t/fold0"].sort_values("row")
    columns = [f"p{c}" for c in range(18)]
    assert np.allclose(again[columns].to_numpy(), before[columns].to_numpy(), atol=1e-5)


def test_same_seed_same_weights():
    crops, table = _table()
    model = {
        "variant": "multihead",
        "backbones": ["resnet10t"],
        "pretrained": False,
        "drop_rate": 0.0,
    }
    runs = []
    for _ in range(2):
        seed_everything(3, deterministic=True)
        runs.append(train_cross_validated(crops, table, model=model, **SETTINGS).weights)
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_an_unknown_augmentation_fails_before_training_naming_it():
    crops, table = _table()
    model = {
        "variant": "multihead",
        "backbones": ["resnet10t"],
        "pretrained": False,
        "drop_rate": 0.0,
    }
    settings = {**SETTINGS, "augment": [{"name": "HorizontalFlip"}, {"name": "Flipp"}]}
    with pytest.raises(ParameterError, match=r"mask\.augment\[1\]\.name"):
        train_cross_validated(crops, table, model=model, **settings)
