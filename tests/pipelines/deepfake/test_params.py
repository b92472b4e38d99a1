"""The deepfake and deepfake_inference typed blocks: conf/base and conf/full validate, each
block names a bad key or value with what is allowed and the file, the defaults are conf/base's,
the settings digests stay what they were, and a typo in a late block stops a real run before
its first node."""

from __future__ import annotations

import json
import time
import typing
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from podium.core.params import ParametersInvalid, RuntimeParams
from podium.core.resume import short_digest
from podium.faces.self_blend import LANDMARK_SOURCES
from podium.pipelines.deepfake import embeddings, scoring, splits
from podium.pipelines.deepfake import params as p
from podium.pipelines.deepfake.data import settings_key
from podium.pipelines.deepfake.model import ARCHITECTURES
from podium.pipelines.deepfake.train import shaping_settings
from tests.conftest import (
    REPO,
    TINY_DEEPFAKE,
    assert_refused_at_the_door,
    data_files,
    kedro_run,
    make_project,
)

FILE = "conf/base/parameters_deepfake.yml"
INFERENCE_FILE = "conf/base/parameters_deepfake_inference.yml"

#: Every block a node reads, by its parameter path.
BLOCKS = {
    "deepfake.extraction": p.ExtractionParams,
    "deepfake.diagnostics": p.DiagnosticsParams,
    "deepfake.split": p.SplitParams,
    "deepfake.embedding": p.EmbeddingParams,
    "deepfake.person_cluster": p.PersonClusterParams,
    "deepfake.training": p.TrainingParams,
    "deepfake.video_score": p.VideoScoreParams,
    "deepfake.stacking": p.StackingParams,
    "deepfake.calibration": p.CalibrationParams,
    "deepfake_inference": p.InferenceParams,
}


def _parameters(env: str) -> dict:
    loader = OmegaConfigLoader(
        conf_source=str(REPO / "conf"),
        base_env="base",
        default_run_env=env,
        merge_strategy={"parameters": "soft"},
    )
    return loader["parameters"]


def _at(parameters: dict, path: str):
    value = parameters
    for part in path.split("."):
        value = value[part]
    return value


@pytest.fixture(scope="module")
def base() -> dict:
    return _parameters("base")


@pytest.fixture(scope="module")
def full() -> dict:
    return _parameters("full")


# ------------------------------------------------------------------ the configuration


@pytest.mark.parametrize("env", ["base", "full"])
def test_conf_base_and_conf_full_blocks_validate(env):
    parameters = _parameters(env)
    for path, model in BLOCKS.items():
        written = _at(parameters, path)
        block = model.model_validate(written)
        assert model.block == path and isinstance(block, model)
        # a scorer keeps exactly what the YAML wrote (an integer stays one); MLflow logs it
        # less the keys that do not apply (an Adam's momentum)
        assert block.as_configured() == json.loads(json.dumps(written)), path
    RuntimeParams.model_validate(parameters["runtime"])


def test_conf_full_is_read_as_written(full):
    training = p.TrainingParams.model_validate(full["deepfake"]["training"])
    assert [m.name for m in training.models] == ["b4_s0", "b4_s1", "b7_s0", "b4_unet"]
    assert training.optimizer.lr == 3e-4 and training.optimizer.name == "adamw"  # soft merge
    assert len(training.augment) == 8 and training.image_hw() == (380, 380)
    extraction = p.ExtractionParams.model_validate(full["deepfake"]["extraction"])
    assert extraction.crop_mode == "isotropic_pad" and extraction.thresholds == [0.85, 0.95, 0.95]
    inference = p.InferenceParams.model_validate(full["deepfake_inference"])
    assert inference.thresholds == [0.7, 0.8, 0.8] and inference.videos_per_task == 8


def _same_where_written(default, written, path: str) -> None:
    """Every value conf/base writes equals the default, nested blocks key by key."""
    if isinstance(written, dict) and isinstance(default, dict):
        for key, value in written.items():
            assert key in default, f"{path}.{key} is not a key of the model"
            _same_where_written(default[key], value, f"{path}.{key}")
    else:
        assert default == written, f"{path}: the default {default!r} != conf/base's {written!r}"


def test_every_default_is_conf_base_value(base):
    """A key left out behaves as conf/base: the models' defaults are conf/base's values."""
    for path, model in BLOCKS.items():
        written = _at(base, path)
        _same_where_written(model().as_dict(), written, path)
        # where conf/base sets every key, the block read is exactly the defaults
        if set(written) == set(model.model_fields):
            assert model.model_validate(written) == model(), path
    # the blocks conf/base writes whole
    for path in ("deepfake.extraction", "deepfake.training", "deepfake.calibration"):
        assert set(_at(base, path)) == set(BLOCKS[path].model_fields), path


def test_the_choices_are_the_building_blocks_own():
    def choices(model, key):
        annotation = model.model_fields[key].annotation
        return set(typing.get_args(annotation))

    assert choices(p.SplitParams, "strategy") == set(splits.STRATEGIES)
    assert choices(p.PersonClusterParams, "method") == set(splits.CLUSTER_METHODS)
    assert choices(p.EmbeddingParams, "method") == set(embeddings.EMBED_METHODS)
    assert choices(p.VideoScoreParams, "rule") == set(scoring.SCORE_RULES)
    assert choices(p.ModelEntry, "architecture") == set(ARCHITECTURES)
    assert choices(p.SelfBlendParams, "landmarks") == set(LANDMARK_SOURCES)


# ------------------------------------------------------------------ the digests


def test_the_settings_digests_stay_what_they_were(base, full):
    """Cached faces and checkpoints are found again: the extraction settings digest and the
    checkpoint folders' digests of conf/base, conf/full and the tests' tiny configuration
    are the ones computed before the blocks were typed."""
    tiny = {**base["deepfake"]["extraction"], **TINY_DEEPFAKE["deepfake"]["extraction"]}
    for given, key in (
        (base["deepfake"]["extraction"], "c035aa0ff7"),
        (full["deepfake"]["extraction"], "db742578d2"),
        (tiny, "bdb96acd03"),
    ):
        assert settings_key(p.ExtractionParams.model_validate(given)) == key
        assert settings_key(given) == key  # a plain dict: the same digest
    assert settings_key({"n_frames": 4, "crop_size": 64, "margin": 0.5}) == "bdb96acd03"

    def digests(block):
        config = p.TrainingParams.model_validate(block)
        specs = [short_digest(m.as_dict()) for m in config.models]
        return short_digest(shaping_settings(config)), specs

    assert digests(base["deepfake"]["training"]) == ("6ace9fd095acc11e", ["296a9621c8e7faf8"])
    assert digests({}) == digests(base["deepfake"]["training"])
    assert digests(full["deepfake"]["training"]) == (
        "b7e417ae5eaada63",
        ["23a830b56af58389", "d774515a13d23aea", "eda26c26947ab8f0", "194ccc651220a152"],
    )
    tiny_training = {**base["deepfake"]["training"], **TINY_DEEPFAKE["deepfake"]["training"]}
    assert digests(tiny_training) == ("44b9d0beaf18d5cf", ["efa58f50ffd87f86"])
    partial = {"epochs": 2, "optimizer": {"lr": 0.01}, "scheduler": {"name": "step"}}
    assert digests(partial) == ("52ce449e884cbb32", ["296a9621c8e7faf8"])
    # the pseudo-fake keys, written at their defaults, leave the digests as they were
    none = {"pseudo_fakes": "none", "reals_only": False, "sbi": {"blur_kernels": [3, 9]}}
    assert digests({**partial, **none}) == digests(partial)


def test_pseudo_fakes_shape_the_checkpoints_and_their_block_is_logged_only_with_them():
    def settings_digest(block):
        return short_digest(shaping_settings(p.TrainingParams.model_validate(block)))

    sbi = {"pseudo_fakes": "sbi"}
    digests = {
        settings_digest({}),
        settings_digest(sbi),
        settings_digest({**sbi, "reals_only": True}),
        settings_digest({**sbi, "sbi": {"blend_ratios": [1.0]}}),
    }
    assert len(digests) == 4
    block = {"sbi": {"landmarks": "ellipse"}, "reals_only": False}
    assert p.TrainingParams.model_validate(block).as_logged() == {}
    on = p.TrainingParams.model_validate({**block, **sbi}).as_logged()
    assert on == {**block, **sbi}


def test_pair_mixup_shapes_the_checkpoints_only_when_on_and_is_logged_only_then():
    def settings_digest(block):
        return short_digest(shaping_settings(p.TrainingParams.model_validate(block)))

    off = {"pair_mixup": {"enabled": False, "alpha": 2.0, "share": 0.5, "min_iou": 0.8}}
    assert settings_digest(off) == settings_digest({})  # written but off: digests as before
    on = {"enabled": True}
    digests = {
        settings_digest({}),
        settings_digest({"pair_mixup": on}),
        settings_digest({"pair_mixup": {**on, "alpha": 1.0}}),
        settings_digest({"pair_mixup": {**on, "share": 0.5}}),
        settings_digest({"pair_mixup": {**on, "min_iou": 0.8}}),
    }
    assert len(digests) == 5
    assert p.TrainingParams.model_validate(off).as_logged() == {"pair_mixup": {"enabled": False}}
    logged = {"pair_mixup": {**off["pair_mixup"], **on}}
    assert p.TrainingParams.model_validate(logged).as_logged() == logged


def test_keys_the_chosen_method_or_architecture_never_reads_are_not_logged():
    embedding = {"size": 16, "crop_margin": 0.2, "batch_size": 8}
    assert p.EmbeddingParams.model_validate({"method": "pca", **embedding}).as_logged() == {
        "method": "pca", "size": 16
    }  # fmt: skip
    assert p.EmbeddingParams.model_validate({"method": "dlib", **embedding}).as_logged() == {
        "method": "dlib", "crop_margin": 0.2
    }  # fmt: skip
    tsne = {"eps": 0.5, "min_samples": 2, "pca_components": 4, "perplexity": 5.0}
    kmeans = p.PersonClusterParams.model_validate({"method": "kmeans", **tsne})
    assert kmeans.as_logged() == {"method": "kmeans"}
    dbscan = p.PersonClusterParams.model_validate(
        {"method": "tsne_dbscan", "n_clusters": 3, **tsne}
    )
    assert dbscan.as_logged() == {"method": "tsne_dbscan", **tsne}
    # each entry of the model list by its own architecture; the segmentation loss's settings
    # only when some entry has the segmentation branch
    unet = {"architecture": "unet_multitask", "backbone": "resnet10t", "mask_stride": 4}
    plain = {**unet, "architecture": "classifier"}
    losses = {"segmentation_loss": "dice", "loss_weights": {"segmentation": 2.0}}
    classifier = {k: v for k, v in plain.items() if k != "mask_stride"}
    both = p.TrainingParams.model_validate({"models": [plain, unet], **losses}).as_logged()
    assert both == {"models": [classifier, unet], **losses}
    alone = p.TrainingParams.model_validate({"models": [plain], **losses}).as_logged()
    assert alone == {"models": [classifier]}


def test_the_person_cluster_blocks_are_logged_only_for_the_person_cluster_split():
    from podium.hooks import logged_blocks

    blocks = {
        "params:deepfake.embedding": p.EmbeddingParams.model_validate({"method": "pca"}),
        "params:deepfake.person_cluster": p.PersonClusterParams.model_validate({"n_clusters": 4}),
    }
    for strategy, shown in (("folder", False), ("person_cluster", True)):
        split = p.SplitParams.model_validate({"strategy": strategy})
        logged = logged_blocks({"params:deepfake.split": split, **blocks})
        assert bool(logged["params:deepfake.embedding"]) is shown
        assert bool(logged["params:deepfake.person_cluster"]) is shown


# ------------------------------------------------------------------ the errors


@pytest.mark.parametrize(
    ("model", "given", "path", "told"),
    [
        (p.ExtractionParams, {"n_frame": 8}, "deepfake.extraction.n_frame", "'n_frames'"),
        (p.ExtractionParams, {"keep": "biggest"}, "deepfake.extraction.keep", "all, largest"),
        (p.ExtractionParams, {"downscale": 0}, "deepfake.extraction.downscale", "> 0"),
        (p.ExtractionParams, {"device": "gpu"}, "deepfake.extraction.device", "cuda:<k>"),
        (
            p.ExtractionParams,
            {"crop_mode": "isotropic_pad", "crop_size": [64, 48]},
            "deepfake.extraction.crop_size",
            "one integer",
        ),
        (p.ExtractionParams, {"thresholds": [0.6, 1.5, 0.7]}, "deepfake.extraction.thresholds[1]", "<= 1"),
        (p.DiagnosticsParams, {"iuo": 0.5}, "deepfake.diagnostics.iuo", "'iou'"),
        (p.DiagnosticsParams, {"iou": 1.5}, "deepfake.diagnostics.iou", "<= 1"),
        (p.SplitParams, {"n_fold": 3}, "deepfake.split.n_fold", "'n_folds'"),
        (p.SplitParams, {"n_folds": 1}, "deepfake.split.n_folds", ">= 2"),
        (p.SplitParams, {"strategy": "people"}, "deepfake.split.strategy", "person_cluster"),
        (p.EmbeddingParams, {"methd": "pca"}, "deepfake.embedding.methd", "'method'"),
        (p.EmbeddingParams, {"method": "arcface"}, "deepfake.embedding.method", "dlib, facenet"),
        (p.EmbeddingParams, {"inner_fraction": 0.05}, "deepfake.embedding.inner_fraction", ">= 0.1"),
        (p.PersonClusterParams, {"n_cluster": 6}, "deepfake.person_cluster.n_cluster", "'n_clusters'"),
        (p.PersonClusterParams, {"method": "tsne_dbscan"}, "deepfake.person_cluster.eps", "needs it"),
        (p.PersonClusterParams, {"n_clusters": 0}, "deepfake.person_cluster.n_clusters", ">= 1"),
        (p.TrainingParams, {"epoch": 3}, "deepfake.training.epoch", "'epochs'"),
        (p.TrainingParams, {"epochs": 0}, "deepfake.training.epochs", ">= 1"),
        (p.TrainingParams, {"lr": 0.1}, "deepfake.training.lr", "optimizer: {name, lr"),
        (
            p.TrainingParams,
            {"models": [{"architecture": "classifier", "backbone": "resnet10tt"}]},
            "deepfake.training.models[0].backbone",
            "resnet10t",
        ),
        (
            p.TrainingParams,
            {"models": [{"architecture": "classifer", "backbone": "resnet10t"}]},
            "deepfake.training.models[0].architecture",
            "'classifier'",
        ),
        (
            p.TrainingParams,
            {"models": [{"architecture": "classifier", "backbone": "resnet10t", "seed": 1}]},
            "deepfake.training.models[0].seed",
            "seed_offset",
        ),
        (
            p.TrainingParams,
            {"models": [{"name": "a", "architecture": "classifier", "backbone": "resnet10t"}] * 2},
            "deepfake.training.models[1].name",
            "used by another model",
        ),
        (p.TrainingParams, {"optimizer": {"lrr": 0.1}}, "deepfake.training.optimizer.lrr", "'lr'"),
        (p.TrainingParams, {"optimizer": {"name": "adamm"}}, "deepfake.training.optimizer.name", "adamw"),
        (p.TrainingParams, {"scheduler": {"name": "onecycle"}}, "deepfake.training.scheduler.name", "cosine"),
        (
            p.TrainingParams,
            {"epochs": 2, "scheduler": {"warmup_epochs": 2}},
            "deepfake.training.scheduler.warmup_epochs",
            "epochs",
        ),
        (p.TrainingParams, {"augment": [{"name": "HorizontalFlp"}]}, "deepfake.training.augment[0].name", "HorizontalFlip"),
        (p.TrainingParams, {"loss_weights": {"classificaton": 1.0}}, "deepfake.training.loss_weights.classificaton", "'classification'"),
        (p.TrainingParams, {"segmentation_loss": "focal"}, "deepfake.training.segmentation_loss", "bce, bce_dice, dice"),
        (p.TrainingParams, {"resume_from": "best"}, "deepfake.training.resume_from", "latest"),
        (p.TrainingParams, {"drop_rate": 1.5}, "deepfake.training.drop_rate", "<= 1"),
        (p.TrainingParams, {"pseudo_fakes": "blend"}, "deepfake.training.pseudo_fakes", "none, sbi"),
        (p.TrainingParams, {"pair_mixup": {"alpha": 0.0}}, "deepfake.training.pair_mixup.alpha", "> 0"),
        (p.TrainingParams, {"pair_mixup": {"share": 1.5}}, "deepfake.training.pair_mixup.share", "<= 1"),
        (p.TrainingParams, {"pair_mixup": {"enabled": "yes"}}, "deepfake.training.pair_mixup.enabled", "bool"),
        (p.TrainingParams, {"reals_only": True}, "deepfake.training.reals_only", "pseudo_fakes: sbi"),
        (p.TrainingParams, {"sbi": {"landmark": "dlib"}}, "deepfake.training.sbi.landmark", "'landmarks'"),
        (p.TrainingParams, {"sbi": {"landmarks": "mtcnn"}}, "deepfake.training.sbi.landmarks", "dlib, ellipse"),
        (p.TrainingParams, {"sbi": {"blur_kernels": [4, 25]}}, "deepfake.training.sbi.blur_kernels", "odd"),
        (p.TrainingParams, {"sbi": {"mask_size": [256, 192]}}, "deepfake.training.sbi.mask_size", "low <= high"),
        (p.TrainingParams, {"sbi": {"blend_ratios": []}}, "deepfake.training.sbi.blend_ratios", "at least 1"),
        (p.TrainingParams, {"sbi": {"blend_ratios": [0.0]}}, "deepfake.training.sbi.blend_ratios[0]", "> 0"),
        (p.TrainingParams, {"sbi": {"fake_share": 1.5}}, "deepfake.training.sbi.fake_share", "<= 1"),
        (p.VideoScoreParams, {"rul": "mean"}, "deepfake.video_score.rul", "'rule'"),
        (p.VideoScoreParams, {"rule": "max"}, "deepfake.video_score.rule", "confident_strategy"),
        (p.VideoScoreParams, {"band_low": 0.9}, "deepfake.video_score.band_high", ">= band_low"),
        (p.StackingParams, {"enable": True}, "deepfake.stacking.enable", "'enabled'"),
        (p.StackingParams, {"enabled": "yes"}, "deepfake.stacking.enabled", "valid boolean"),
        (p.StackingParams, {"lgbm": {"objective": "regression", "num_boost_round": 5}}, "deepfake.stacking.lgbm.objective", "remove it"),
        (p.CalibrationParams, {"factr": 0.5}, "deepfake.calibration.factr", "'factor'"),
        (p.CalibrationParams, {"factor": "fitted"}, "deepfake.calibration.factor", "fit"),
        (p.CalibrationParams, {"clip_low": 0.7}, "deepfake.calibration.clip_low", "<= 0.5"),
        (p.CalibrationParams, {"scale_bounds": [1.0, 0.5]}, "deepfake.calibration.scale_bounds", "low < high"),
        (p.CalibrationParams, {"target_prior": 1.0}, "deepfake.calibration.target_prior", "< 1"),
        (p.InferenceParams, {"videos_per_tsk": 2}, "deepfake_inference.videos_per_tsk", "'videos_per_task'"),
        (p.InferenceParams, {"device": "gpu"}, "deepfake_inference.device", "auto, cpu, cuda"),
        (p.InferenceParams, {"budget_action": "abort"}, "deepfake_inference.budget_action", "fail, warn"),
        (p.InferenceParams, {"fallback": 1.5}, "deepfake_inference.fallback", "<= 1"),
        (p.InferenceParams, {"model_run_id": " "}, "deepfake_inference.model_run_id", "run id"),
        (
            p.InferenceParams,
            {"instances": {"p3": {"price": 3.0}}},
            "deepfake_inference.instances.p3.price",
            "price_per_hour",
        ),
    ],
)  # fmt: skip
def test_each_block_names_the_bad_key_what_is_allowed_and_the_file(model, given, path, told):
    with pytest.raises(ParametersInvalid) as error:
        model.model_validate(given)
    text = str(error.value)
    assert any(where == path for where, _ in error.value.problems), text
    assert told in text, text
    assert (INFERENCE_FILE if path.startswith("deepfake_inference") else FILE) in text


def test_a_model_entry_is_named_by_the_rule_and_logged_as_written():
    entry = {"architecture": "classifier", "backbone": "resnet10t", "seed_offset": 2}
    training = p.TrainingParams.model_validate({"models": [entry]})
    assert training.models[0].name == "classifier_resnet10t_s2"
    assert training.as_configured() == {"models": [entry]}  # the name is filled in, not set
    with pytest.raises(ParametersInvalid, match=r"models\[0\]\.name"):
        p.TrainingParams.model_validate({"models": [{**entry, "name": "a/b"}]})
    with pytest.raises(ParametersInvalid, match=r"models\[0\]\.mask_stride"):
        p.TrainingParams.model_validate({"models": [{**entry, "mask_stride": True}]})


def test_the_inference_run_id_comes_from_the_command_line_too(base):
    """--params=deepfake_inference.model_run_id=<id> reaches the block (and the catalog)."""
    given = {**base["deepfake_inference"], "model_run_id": "0123abcd"}
    assert p.InferenceParams.model_validate(given).model_run_id == "0123abcd"
    assert p.InferenceParams.model_validate(base["deepfake_inference"]).model_run_id is None


def test_a_plain_dictionary_still_works_for_the_building_blocks():
    """Notebooks pass dictionaries: validated at the building block's door, the missing
    keys at conf/base's (the training) or the library's (the extraction) defaults."""
    from podium.faces.video import check_extraction_settings
    from podium.pipelines.deepfake.train import predict_frame_models

    assert check_extraction_settings({"crop_size": 96})["crop_size"] == (96, 96)
    with pytest.raises(ParametersInvalid, match=r"deepfake\.extraction\.keep"):
        check_extraction_settings({"keep": "biggest"})
    with pytest.raises(ParametersInvalid, match=r"deepfake\.training\.epochz"):
        predict_frame_models({}, None, {}, {"epochz": 1}, {"device": "cpu"})
    assert p.typed(p.SplitParams, {"n_folds": 5}) == p.SplitParams(n_folds=5)
    block = p.SplitParams()
    assert p.typed(p.SplitParams, block) is block


# ------------------------------------------------------------------ a real run


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    root = make_project(tmp_path / "project", TINY_DEEPFAKE, git=False)
    monkeypatch.chdir(root)
    return root


def test_a_typo_in_a_late_block_stops_the_run_before_the_first_node(project):
    """deepfake.calibration is read after extraction and training; its typo costs seconds."""
    before = data_files(project)
    started = time.monotonic()
    with pytest.raises(ParametersInvalid, match=r"deepfake\.calibration\.factr.*'factor'"):
        kedro_run(project, "deepfake", {"deepfake": {"calibration": {"factr": 0.5}}})
    assert time.monotonic() - started < 10
    assert_refused_at_the_door(project, before)


def test_the_confidence_band_is_logged_only_for_the_rules_that_use_it():
    from podium.pipelines.deepfake.params import VideoScoreParams

    band = {"band_low": 0.1, "band_high": 0.9}
    assert VideoScoreParams.model_validate({"rule": "mean", **band}).as_logged() == {"rule": "mean"}
    winner = VideoScoreParams.model_validate({"rule": "confident_strategy", **band})
    assert winner.as_logged() == {"rule": "confident_strategy", **band}


def test_a_fold_key_splits_back_into_its_model_and_fold_and_nothing_else_does():
    for model, fold in (("unet_r10t", 0), ("b7_seed1", 12), ("a/b", 3)):
        assert p.split_fold_key(p.fold_key(model, fold)) == (model, fold)
    for other in ("unet_r10t", "unet_r10t/fold", "unet_r10t/foldx", "/fold0", "m/f0", "fold0"):
        assert p.split_fold_key(other) is None, other
