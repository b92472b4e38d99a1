"""The mask pipeline's typed blocks: what each accepts, its errors, and a typo caught before
the first node of a real run."""

from __future__ import annotations

import time

import pytest

from podium.core.params import ParametersInvalid
from podium.pipelines.mask import params
from podium.pipelines.mask.data import crop_settings
from tests.conftest import assert_refused_at_the_door, data_files, kedro_run

FILE = "conf/base/parameters_mask.yml"


@pytest.mark.parametrize(
    ("model", "given", "path", "told"),
    [
        (params.MaskCropParams, {"methd": "face"}, "mask.crop.methd", "did you mean 'method'?"),
        (params.MaskCropParams, {"method": "middle"}, "mask.crop.method", "centre, face"),
        (params.MaskCropParams, {"face": {"margn": 0.1}}, "mask.crop.face.margn", "'margin'"),
        (params.MaskCropParams, {"face": {"downscale": 2}}, "mask.crop.face.downscale", "<= 1"),
        (params.MaskCropParams, {"output": {"height": 0}}, "mask.crop.output.height", ">= 1"),
        (params.MaskCropParams, {"window": 0}, "mask.crop.window", ">= 1"),
        (params.MaskFoldsParams, {"n_split": 5}, "mask.folds.n_split", "'n_splits'"),
        (params.MaskFoldsParams, {"n_splits": 1}, "mask.folds.n_splits", ">= 2"),
        (params.MaskModelParams, {"variant": "multi"}, "mask.model.variant", "'multihead'"),
        (params.MaskModelParams, {"backbones": []}, "mask.model.backbones", "at least 1"),
        (
            params.MaskModelParams,
            {"backbones": ["resnet18", "resnet10tt"]},
            "mask.model.backbones[1]",
            "resnet10t",
        ),
        (params.MaskModelParams, {"drop_rate": 1.5}, "mask.model.drop_rate", "<= 1"),
        (params.MaskModelParams, {"pretrained": "yes"}, "mask.model.pretrained", "valid boolean"),
        (params.MaskLossParams, {"name": "hinge"}, "mask.loss.name", "ce, focal, weighted_ce"),
        (params.MaskLossParams, {"gama": 1.0}, "mask.loss.gama", "'gamma'"),
        (params.MaskOptimizerParams, {"name": "adamm"}, "mask.optimizer.name", "adamw"),
        (params.MaskOptimizerParams, {"lrr": 0.1}, "mask.optimizer.lrr", "'lr'"),
        (params.MaskSchedulerParams, {"name": "onecycle"}, "mask.scheduler.name", "cosine"),
        (params.MaskTrainParams, {"epochs": 0}, "mask.train.epochs", ">= 1"),
        (params.MaskTrainParams, {"epochs": 2.5}, "mask.train.epochs", "valid integer"),
        (params.MaskTrainParams, {"resume_from": "earliest"}, "mask.train.resume_from", "latest"),
        (params.MaskResamplingParams, {"factor": 0}, "mask.resampling.factor", ">= 1"),
        (params.MaskEnsembleParams, {"submission_vote": "mean"}, "mask.ensemble", "hard, soft"),
        (params.MaskEnsembleParams, {"unusable": "stop"}, "mask.ensemble.unusable", "unusable_"),
        (params.MaskAugment, [{"name": "RandomBrightnes"}], "mask.augment[0].name", "Contrast"),
        (params.MaskPreprocess, [{"name": "Normalize", "meen": 0}], "mask.preprocess[0]", "mean"),
    ],
)
def test_each_block_names_the_bad_key_what_is_allowed_and_the_file(model, given, path, told):
    with pytest.raises(ParametersInvalid) as error:
        model.model_validate(given)
    text = str(error.value)
    assert error.value.parameter.startswith(path), text
    assert told in text and FILE in text


def test_every_problem_of_a_block_is_told_at_once():
    with pytest.raises(ParametersInvalid) as error:
        params.MaskTrainParams.model_validate({"epochz": 3, "batch_size": 0, "accumulate": True})
    assert [path for path, _ in error.value.problems] == [
        "mask.train.batch_size",
        "mask.train.accumulate",
        "mask.train.epochz",
    ]


def test_a_plain_dictionary_still_works_for_the_building_blocks():
    """A notebook passes dictionaries: they are validated at the building block's door."""
    settings = crop_settings({"method": "face", "face": {"margin": 0}})
    assert settings.margin == 0.0 and settings.centre == (400, 300)  # the rest: conf/base's
    with pytest.raises(ParametersInvalid, match=r"mask\.crop\.method"):
        crop_settings({"method": "middle"})


def test_a_typo_in_a_late_block_stops_the_run_before_the_first_node(project):
    """mask.ensemble is read only after training; its typo costs seconds, not a training."""
    before = data_files(project)
    started = time.monotonic()
    with pytest.raises(
        ParametersInvalid, match=r"mask\.ensemble\.submision_vote.*'submission_vote'"
    ):
        kedro_run(project, "mask", {"mask": {"ensemble": {"submision_vote": "hard"}}})
    assert time.monotonic() - started < 10
    assert_refused_at_the_door(project, before)


def test_a_key_the_chosen_option_does_not_use_is_not_logged():
    focal = params.MaskLossParams.model_validate({"name": "focal", "gamma": 1.5})
    plain = params.MaskLossParams.model_validate({"name": "ce", "gamma": 1.5})
    assert focal.as_logged() == {"name": "focal", "gamma": 1.5}
    assert plain.as_logged() == {"name": "ce"} and plain.as_configured()["gamma"] == 1.5
