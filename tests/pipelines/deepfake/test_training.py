"""Frame-model training on tiny synthetic records: a bright square marks the fakes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from podium.core.config import ParameterError
from podium.core.ensemble import logit, sigmoid
from podium.pipelines.deepfake.params import TrainingParams
from podium.pipelines.deepfake.train import predict_frame_models, train_frame_models

RUNTIME = {"device": "cpu", "precision": "fp32", "num_workers": 0, "channels_last": False}
SIZE = 32


def _record(rng: np.random.Generator, fake: bool, n: int = 3, masks: bool = True) -> dict:
    crops = rng.integers(0, 90, size=(n, SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.zeros((n, SIZE, SIZE), np.uint8)
    if fake:
        for i in range(n):
            y, x = rng.integers(4, SIZE - 16, size=2)
            crops[i, y : y + 12, x : x + 12] = 255
            mask[i, y : y + 12, x : x + 12] = 1
    return {
        "crops": crops,
        "masks": mask if fake and masks else None,
        "label": "FAKE" if fake else "REAL",
        "frame_indices": np.arange(n, dtype=np.int64),
        "confidences": np.ones(n, np.float32),
    }


def _data(n_videos: int = 8, n_crops: int = 3, seed: int = 0) -> tuple[dict, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    records, rows = {}, []
    for v in range(n_videos):
        fake = v % 2 == 1
        name = f"vid{v:02d}"
        records[name] = _record(rng, fake, n_crops)
        rows.append({"partition": name, "label": "FAKE" if fake else "REAL", "fold": (v // 2) % 2})
    return records, pd.DataFrame(rows)


def _store(records: dict) -> tuple[dict, pd.DataFrame]:
    """PartitionedDataset-style load functions and the face index (one row per crop)."""
    loaders = {p: (lambda r=r: r) for p, r in records.items()}
    index = pd.DataFrame(
        [{"partition": p, "crop": j} for p, r in records.items() for j in range(len(r["crops"]))]
    )
    return loaders, index


def _settings(**overrides) -> dict:
    settings = {
        "models": [{"name": "tiny", "architecture": "classifier", "backbone": "test_efficientnet"}],
        "image_size": SIZE,
        "epochs": 2,
        "batch_size": 8,
        "predict_batch_size": 16,
        "optimizer": {"name": "adam", "lr": 3e-3},
        "scheduler": {"name": "none"},
        "augment": [{"name": "HorizontalFlip", "p": 0.5}],
        "drop_rate": 0.0,
        "progress": False,
        "balance_classes": False,  # the synthetic videos are half FAKE already
    }
    settings.update(overrides)
    return settings


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine more threads only spin (5x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_thread):
    records, videos = _data()
    return (
        records,
        videos,
        train_frame_models(*_store(records), videos, _settings(), RUNTIME, seed=7),
    )


def test_outputs_shapes_and_keys(trained):
    records, videos, (state_dicts, history, oof) = trained
    assert set(state_dicts) == {"tiny/fold0", "tiny/fold1"}
    for state in state_dicts.values():
        assert all(t.device.type == "cpu" for t in state.values())
    assert list(history.columns[:6]) == [
        "model",
        "fold",
        "epoch",
        "train_loss",
        "val_loss",
        "val_log_loss",
    ]
    assert len(history) == 2 * 2 and set(history["epoch"]) == {1, 2}
    assert history[["train_loss", "val_loss", "val_log_loss"]].notna().all().all()
    assert set(oof) == {"tiny"} and set(oof["tiny"]) == set(videos["partition"])
    for partition, p in oof["tiny"].items():
        assert p.dtype == np.float32 and p.shape == (len(records[partition]["crops"]),)
        assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()


def test_out_of_fold_comes_from_the_model_that_did_not_see_the_video(trained):
    records, videos, (state_dicts, _, oof) = trained
    a, b = state_dicts["tiny/fold0"], state_dicts["tiny/fold1"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    for fold in (0, 1):
        own = {f"tiny/fold{fold}": state_dicts[f"tiny/fold{fold}"]}
        held_out = videos.loc[videos["fold"] == fold, "partition"]
        predicted = predict_frame_models(
            *_store({p: records[p] for p in held_out}), own, _settings(), RUNTIME
        )["tiny"]
        for p in held_out:
            np.testing.assert_allclose(oof["tiny"][p], predicted[p], atol=1e-5)


def test_predict_averages_fold_logits(trained):
    records, _, (state_dicts, _, _) = trained
    both = predict_frame_models(*_store(records), state_dicts, _settings(), RUNTIME)["tiny"]
    single = [
        predict_frame_models(*_store(records), {k: state_dicts[k]}, _settings(), RUNTIME)["tiny"]
        for k in ("tiny/fold0", "tiny/fold1")
    ]
    for p in records:
        manual = sigmoid((logit(single[0][p], 1e-12) + logit(single[1][p], 1e-12)) / 2)
        np.testing.assert_allclose(both[p], manual, atol=1e-4)


def test_same_seed_same_weights_and_predictions(trained):
    records, videos, (state_dicts, history, oof) = trained
    again = train_frame_models(*_store(records), videos, _settings(), RUNTIME, seed=7)
    for key, state in state_dicts.items():
        assert all(torch.equal(state[k], again[0][key][k]) for k in state)
    pd.testing.assert_frame_equal(history, again[1])
    for p in oof["tiny"]:
        np.testing.assert_array_equal(oof["tiny"][p], again[2]["tiny"][p])


def test_learns_an_obvious_signal():
    records, videos = _data(n_videos=12, n_crops=4, seed=1)
    settings = _settings(
        epochs=6, optimizer={"name": "adam", "lr": 1e-2}, augment=[], folds_to_train=[0]
    )
    _, history, oof = train_frame_models(*_store(records), videos, settings, RUNTIME, seed=0)
    assert set(oof["tiny"]) == set(videos.loc[videos["fold"] == 0, "partition"])
    losses = history["train_loss"].to_numpy()
    assert losses[-1] < losses[0]
    assert history["val_log_loss"].iloc[-1] < 0.693


def test_unet_multitask_has_a_mask_head_and_iou():
    records, videos = _data(n_videos=6, n_crops=2, seed=2)
    records["vid01"]["masks"] = None  # a fake whose original was unreadable: no seg loss
    settings = _settings(
        models=[
            {"name": "unet", "architecture": "unet_multitask", "backbone": "test_efficientnet"}
        ],
        epochs=1,
        augment=[{"name": "HorizontalFlip", "p": 0.5}, {"name": "GaussNoise", "p": 0.5}],
        loss_weights={"segmentation": 0.5},
        folds_to_train=[1],
    )
    state_dicts, history, oof = train_frame_models(
        *_store(records), videos, settings, RUNTIME, seed=3
    )
    assert set(state_dicts) == {"unet/fold1"}
    assert any(k.startswith("mask_head.") for k in state_dicts["unet/fold1"])
    assert "val_mask_iou" in history and history["val_mask_iou"].between(0, 1).all()
    predicted = predict_frame_models(*_store(records), state_dicts, settings, RUNTIME)["unet"]
    assert set(predicted) == set(records)
    held_out = videos.loc[videos["fold"] == 1, "partition"]
    for p in held_out:
        np.testing.assert_allclose(oof["unet"][p], predicted[p], atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "parameter"),
    [
        (
            {"models": [{"architecture": "classifier", "backbone": "efficientnet_b99"}]},
            "deepfake.training.models[0].backbone",
        ),
        ({"models": [{"architecture": "vit", "backbone": "resnet18"}]}, "architecture"),
        ({"augment": [{"name": "GaussianNoise"}]}, "deepfake.training.augment[0].name"),
        ({"augment": [{"name": "GaussNoise", "var_limit": 10}]}, "deepfake.training.augment[0]"),
        ({"optimizer": {"name": "adamx"}}, "deepfake.training.optimizer.name"),
        ({"optimizer": {"lr": -1.0}}, "deepfake.training.optimizer.lr"),
        ({"optimizer": {"momentum": 1.5}}, "deepfake.training.optimizer.momentum"),
        ({"optimizer": {"weight_decay": -1}}, "deepfake.training.optimizer.weight_decay"),
        ({"optimizer": {"learning_rate": 1e-3}}, "deepfake.training.optimizer"),
        ({"optimizer": "adamw"}, "deepfake.training.optimizer"),
        ({"lr": 1e-3}, "optimizer: {name, lr"),  # the old flat key: where it went
        ({"scheduler": {"name": "cosine_annealing"}}, "deepfake.training.scheduler.name"),
        ({"scheduler": {"warmup_epochs": 2}}, "deepfake.training.scheduler.warmup_epochs"),
        ({"scheduler": {"gamma": 0.5}}, "deepfake.training.scheduler"),
        ({"resume_from": "best"}, "deepfake.training.resume_from"),
        ({"folds_to_train": [5]}, "deepfake.training.folds_to_train"),
    ],
)
def test_bad_settings_name_the_parameter(overrides, parameter):
    records, videos = _data(n_videos=4, n_crops=1)
    with pytest.raises(ParameterError, match=r"deepfake\.training") as error:
        train_frame_models(*_store(records), videos, _settings(**overrides), RUNTIME, seed=0)
    assert parameter in str(error.value)


def test_defaults_are_valid_and_in_step_with_conf_base():
    import yaml

    from tests.conftest import REPO

    config = TrainingParams()
    assert config.models[0].architecture == "unet_multitask"
    conf = yaml.safe_load((REPO / "conf/base/parameters_deepfake.yml").read_text())
    block = conf["deepfake"]["training"]
    assert set(block) == set(TrainingParams.model_fields)
    assert TrainingParams.model_validate(block) == config
    assert set(TrainingParams.model_fields) >= {
        "models",
        "image_size",
        "epochs",
        "augment",
        "loss_weights",
    }
    from podium.core.augment import build_transforms

    build_transforms(list(config.augment), parameter="deepfake.training.augment")


def test_several_models_and_seeds():
    records, videos = _data(n_videos=4, n_crops=2, seed=4)
    models = [
        {"name": "a", "architecture": "classifier", "backbone": "test_efficientnet"},
        {
            "name": "b",
            "architecture": "classifier",
            "backbone": "test_efficientnet",
            "seed_offset": 1,
        },
        {"name": "u", "architecture": "unet_multitask", "backbone": "test_efficientnet"},
    ]
    settings = _settings(models=models, epochs=1)
    state_dicts, history, oof = train_frame_models(
        *_store(records), videos, settings, RUNTIME, seed=0
    )
    assert sorted(state_dicts) == [f"{m}/fold{k}" for m in "abu" for k in (0, 1)]
    a, b = state_dicts["a/fold0"], state_dicts["b/fold0"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert set(oof) == {"a", "b", "u"}
    assert history.loc[history["model"] == "a", "val_mask_iou"].isna().all()
    assert history.loc[history["model"] == "u", "val_mask_iou"].notna().all()
    predicted = predict_frame_models(*_store(records), state_dicts, settings, RUNTIME)
    assert set(predicted) == {"a", "b", "u"}


@pytest.mark.parametrize(
    ("optimizer", "scheduler"), [("sgd", "cosine"), ("adamw", "step"), ("adam", "plateau")]
)
def test_optimizers_and_schedulers_run(optimizer, scheduler):
    records, videos = _data(n_videos=4, n_crops=2, seed=5)
    settings = _settings(
        optimizer={"name": optimizer, "lr": 3e-3},
        scheduler={"name": scheduler, "decay_rate": 0.5},
        folds_to_train=[0],
    )
    _, history, _ = train_frame_models(*_store(records), videos, settings, RUNTIME, seed=0)
    assert len(history) == 2 and history["train_loss"].notna().all()
    if scheduler in ("cosine", "step"):
        assert history["lr"].iloc[1] < history["lr"].iloc[0]


def test_bad_videos_table_is_reported():
    records, videos = _data(n_videos=4, n_crops=1)
    with pytest.raises(KeyError, match="vid99"):
        train_frame_models(
            *_store(records),
            pd.concat([videos, pd.DataFrame([{"partition": "vid99", "label": "FAKE", "fold": 0}])]),
            _settings(),
            RUNTIME,
            seed=0,
        )
    with pytest.raises(ValueError, match="REAL or FAKE"):
        train_frame_models(
            *_store(records), videos.assign(label="fake"), _settings(), RUNTIME, seed=0
        )
    with pytest.raises(ValueError, match=">= 2"):
        train_frame_models(*_store(records), videos.assign(fold=0), _settings(), RUNTIME, seed=0)


def test_predict_needs_matching_settings(trained):
    records, _, (state_dicts, _, _) = trained
    other = _settings(models=[{"name": "x", "architecture": "classifier", "backbone": "resnet18"}])
    with pytest.raises(ParameterError, match="deepfake.training.models"):
        predict_frame_models(*_store(records), state_dicts, other, RUNTIME)


def test_unet_mask_stride_trims_the_decoder_not_the_mask_size():
    from podium.pipelines.deepfake.model import build_network

    x = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    full = build_network("unet_multitask", "test_efficientnet", mask_stride=1)
    quarter = build_network("unet_multitask", "test_efficientnet", mask_stride=4)
    assert len(quarter.blocks) < len(full.blocks)
    strides = quarter.encoder.feature_info.reduction()
    assert min(strides[i] for i in quarter.levels) >= 4
    narrow = build_network("unet_multitask", "test_efficientnet", mask_stride=4, decoder_channels=8)
    assert narrow.mask_head.in_channels == 8
    assert sum(p.numel() for p in narrow.blocks.parameters()) < sum(
        p.numel() for p in quarter.blocks.parameters()
    )
    for network in (full, quarter, narrow):
        out = network(x)
        assert out["mask"].shape == (2, 1, 64, 64) and out["logit"].shape == (2,)
    bad = _settings(
        models=[
            {"architecture": "unet_multitask", "backbone": "test_efficientnet", "mask_stride": 3}
        ]
    )
    with pytest.raises(ParameterError, match=r"models\[0\]\.mask_stride"):
        TrainingParams.model_validate(bad)


def test_class_balanced_weights_give_each_class_half_the_draws():
    from podium.pipelines.deepfake.train import _FrameDataset, _resize

    records = {
        f"v{i}": {"crops": np.zeros((n, 8, 8, 3), np.uint8)} for i, n in enumerate((4, 4, 4, 2))
    }
    loaders, index = _store(records)
    crop_labels = np.repeat([1.0, 1.0, 1.0, 0.0], [4, 4, 4, 2])  # 12 FAKE crops, 2 REAL
    dataset = _FrameDataset(loaders, index, crop_labels, _resize((8, 8)))
    weights = dataset.class_balanced_weights()
    assert weights[crop_labels == 1].sum() == pytest.approx(weights[crop_labels == 0].sum())
    assert weights[crop_labels == 0][0] == pytest.approx(6 * weights[crop_labels == 1][0])


def test_frames_are_read_lazily_one_record_at_a_time():
    """The dataset holds no crop: each item opens its video's record through its loader,
    at most ``cache_size`` stay open, and the tensors are the records' own crops and masks."""
    from podium.pipelines.deepfake.train import _FrameDataset, _resize

    records, _ = _data(n_videos=5, n_crops=3, seed=6)
    opened = []

    def loader(name):
        def load():
            opened.append(name)
            return records[name]

        return load

    loaders = {p: loader(p) for p in records}
    _, index = _store(records)
    labels = np.array([records[p]["label"] == "FAKE" for p in index["partition"]], np.float32)
    dataset = _FrameDataset(
        loaders, index, labels, _resize((SIZE, SIZE)), with_masks=True, cache_size=2
    )
    assert opened == [] and len(dataset) == 15
    for i, row in enumerate(index.itertuples()):
        item = dataset[i]
        record = records[row.partition]
        np.testing.assert_array_equal(
            item["image"].numpy().transpose(1, 2, 0), record["crops"][row.crop]
        )
        expected = record["masks"][row.crop] if record["masks"] is not None else 0
        assert (item["target"]["mask"][0].numpy() == expected).all()
        assert len(dataset._open) <= 2
    assert opened == list(records)  # read in order, each record opened once
    for i in (0, 14, 1):  # vid00 was evicted: opened again; vid04 is still open
        dataset[i]
    assert opened == [*records, "vid00"]


def test_a_video_missing_from_the_face_index_is_named():
    records, videos = _data(n_videos=4, n_crops=1)
    loaders, index = _store(records)
    with pytest.raises(ValueError, match=r"no crops in the face index.*vid02"):
        train_frame_models(
            loaders, index[index["partition"] != "vid02"], videos, _settings(), RUNTIME, seed=0
        )
