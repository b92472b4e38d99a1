"""The uda pipeline's typed blocks: what each accepts, its errors, the ablation grid's points,
and a typo caught before the first node of a real run."""

from __future__ import annotations

import copy
import pickle
import time

import pytest
import yaml
from kedro.config import OmegaConfigLoader

from podium.ablation.grid import load_grid
from podium.core.config import ParameterError
from podium.core.params import ParametersInvalid
from podium.hooks import check_typed_parameters
from podium.pipelines.uda import params
from podium.pipelines.uda.inference import inference_settings
from podium.pipelines.uda.model import build_network
from podium.pipelines.uda.pipeline import create_pipeline
from tests.conftest import REPO, assert_refused_at_the_door, data_files, kedro_run, soft_merged

FILE = "conf/base/parameters_uda.yml"
BASE = yaml.safe_load((REPO / FILE).read_text())["uda"]


def _parameters(env: str) -> dict:
    """The merged parameters of ``env`` as settings.py configures the loader."""
    loader = OmegaConfigLoader(
        conf_source=str(REPO / "conf"),
        base_env="base",
        default_run_env=env,
        merge_strategy={"parameters": "soft"},
    )
    return loader["parameters"]


@pytest.mark.parametrize("env", ["base", "full"])
def test_the_base_and_full_blocks_validate(env):
    parameters = _parameters(env)
    check_typed_parameters(parameters, {"uda": create_pipeline()})  # raises if one does not
    uda = parameters["uda"]
    members = params.ModelsParams.model_validate(uda["models"])
    assert list(members) == (["m1"] if env == "base" else ["m1", "m2"])
    training = params.TrainingParams.model_validate(uda["training"])
    assert training.iterations == (320 if env == "base" else 40000)
    assert training.optimizer.lr == (0.002 if env == "base" else 0.00006)
    inference = params.InferenceParams.model_validate(uda["inference"])
    assert inference_settings(inference, list(members))["ensemble"] == dict.fromkeys(members, 1.0)


def test_every_default_is_conf_base_s_value():
    """A key left out behaves as conf/base: each block's defaults equal conf/base's block,
    which sets every key (a member's encoder excepted: it has no default)."""
    for name, model in params.BLOCKS.items():
        if name == "models":
            continue
        assert model().as_dict() == model.model_validate(BASE[name]).as_dict(), name
        assert set(model.model_fields) == set(BASE[name]), name
    (member,) = BASE["models"].values()
    defaults = params.ModelParams(encoder=member["encoder"])
    assert defaults.as_dict() == params.ModelParams.model_validate(member).as_dict()
    assert set(params.ModelParams.model_fields) == set(member)
    assert params.ModelParams.model_fields["encoder"].is_required()


@pytest.mark.parametrize(
    ("model", "given", "path", "told"),
    [
        (params.DataParams, {"source_sise": [64, 64]}, "uda.data.source_sise", "'source_size'"),
        (params.DataParams, {"target_size": [4, 64]}, "uda.data.target_size[0]", ">= 8"),
        (params.DataParams, {"target_size": 64.0}, "uda.data.target_size", "valid tuple"),
        (params.DataParams, {"background": "clas"}, "uda.data.background", "class, ignore"),
        (
            params.ModelsParams,
            {"m1": {"encoder": "regnetx_002", "chanels": 8}},
            "uda.models.m1.chanels",
            "did you mean 'channels'?",
        ),
        (
            params.ModelsParams,
            {"m1": {"encoder": "regnetx_002"}, "m2": {"encoder": "regnetx_0002"}},
            "uda.models.m2.encoder",
            "regnetx_002",
        ),
        (
            params.ModelsParams,
            {"m1": {"encoder": "regnetx_002", "decoder": "unet"}},
            "uda.models.m1.decoder",
            "daformer, fpn, segformer",
        ),
        (
            params.ModelsParams,
            {"m1": {"encoder": "mit_b6", "decoder": "segformer"}},
            "uda.models.m1.encoder",
            "mit_b5",
        ),
        (
            params.ModelsParams,
            {"m1": {"encoder": "regnetx_002", "dropout": 1.5}},
            "uda.models.m1.dropout",
            "<= 1",
        ),
        (params.ModelsParams, {"m1": {"decoder": "fpn"}}, "uda.models.m1.encoder", "required"),
        (params.ModelsParams, {}, "uda.models", "expected {name: model block}"),
        (params.TrainingParams, {"regim": "source_only"}, "uda.training.regim", "'regime'"),
        (params.TrainingParams, {"regime": "selftraining"}, "uda.training.regime", "self_training"),
        (params.TrainingParams, {"ema_rule": "dacs"}, "uda.training.ema_rule", "daformer, timm"),
        (params.TrainingParams, {"ema_alpha": 1.5}, "uda.training.ema_alpha", "<= 1"),
        (params.TrainingParams, {"iterations": 330}, "uda.training.iterations", "multiple of"),
        (params.TrainingParams, {"batch_size": 2.5}, "uda.training.batch_size", "valid integer"),
        (params.TrainingParams, {"crop_size": [128, 4]}, "uda.training.crop_size[1]", ">= 8"),
        (params.TrainingParams, {"resume_from": "earliest"}, "uda.training.resume_from", "latest"),
        (
            params.TrainingParams,
            {"pseudo_label": {"treshold": 0.9}},
            "uda.training.pseudo_label.treshold",
            "'threshold'",
        ),
        (
            params.TrainingParams,
            {"pseudo_label": {"weight": "pixel"}},
            "uda.training.pseudo_label.weight",
            "batch, image",
        ),
        (
            params.TrainingParams,
            {"pseudo_label": {"teacher_augment": "no"}},
            "uda.training.pseudo_label.teacher_augment",
            "valid boolean",
        ),
        (
            params.TrainingParams,
            {"optimizer": {"name": "adamm"}},
            "uda.training.optimizer.name",
            "adamw",
        ),
        (params.TrainingParams, {"optimizer": {"lrr": 0.1}}, "uda.training.optimizer.lrr", "'lr'"),
        (
            params.TrainingParams,
            {"scheduler": {"name": "polly"}},
            "uda.training.scheduler.name",
            "did you mean 'poly'?",
        ),
        (
            params.TrainingParams,
            {"scheduler": {"warmup_epochs": 8}},
            "uda.training.scheduler.warmup_epochs",
            "8-epoch run",
        ),
        (
            params.TrainingParams,
            {"source_fisheye": {"max_angle": 70.0}},
            "uda.training.source_fisheye.max_angle",
            "'max_angle_deg'",
        ),
        (
            params.TrainingParams,
            {"source_fisheye": {"image_circle": 0}},
            "uda.training.source_fisheye.image_circle",
            ">= 0.05",
        ),
        (
            params.TrainingParams,
            {"rare_class_sampling": {"temperature": 0}},
            "uda.training.rare_class_sampling.temperature",
            ">= 1e-06",
        ),
        (
            params.TrainingParams,
            {"strong_augment": {"blur_sigma": [1.0, 0.5]}},
            "uda.training.strong_augment.blur_sigma",
            "low <= high",
        ),
        (
            params.TrainingParams,
            {"mic": {"mask_ration": 0.5}},
            "uda.training.mic.mask_ration",
            "'mask_ratio'",
        ),
        (
            params.TrainingParams,
            {"dual_branch": {"scale": [2, 1]}},
            "uda.training.dual_branch.scale",
            "low <= high",
        ),
        (
            params.TrainingParams,
            {"source_augment": [{"name": "HorizontalFlp"}]},
            "uda.training.source_augment[0].name",
            "HorizontalFlip",
        ),
        (params.InferenceParams, {"weight": "ema"}, "uda.inference.weight", "'weights'"),
        (params.InferenceParams, {"weights": "teacher"}, "uda.inference.weights", "ema, student"),
        (params.InferenceParams, {"scales": []}, "uda.inference.scales", "at least 1"),
        (params.InferenceParams, {"scales": [1.0, 0]}, "uda.inference.scales[1]", "> 0"),
        (params.InferenceParams, {"stride": [0, 64]}, "uda.inference.stride[0]", ">= 1"),
        (
            params.InferenceParams,
            {"ensemble": {"m1": 0.0}},
            "uda.inference.ensemble",
            "not all 0",
        ),
        (
            params.InferenceParams,
            {"background_threshold": 1.5},
            "uda.inference.background_threshold",
            "<= 1",
        ),
        (params.EvaluationParams, {"overlay": 4}, "uda.evaluation.overlay", "'overlays'"),
        (params.EvaluationParams, {"overlays": 0}, "uda.evaluation.overlays", ">= 1"),
        (params.EvaluationParams, {"background": "skip"}, "uda.evaluation.background", "count"),
    ],
)
def test_each_block_names_the_bad_key_what_is_allowed_and_the_file(model, given, path, told):
    block = BASE[model.block.removeprefix("uda.")]
    with pytest.raises(ParametersInvalid) as error:
        model.model_validate(given if model is params.ModelsParams else soft_merged(block, given))
    text = str(error.value)
    assert error.value.parameter == path, text
    assert told in text and FILE in text


def test_mit_encoders_and_the_segformer_decoder_are_members():
    members = params.ModelsParams.model_validate(
        {
            "m1": {"encoder": "mit_b0", "decoder": "segformer"},
            "m2": {"encoder": "mit_b5", "decoder": "daformer", "pretrained": True},
            "m3": {"encoder": "regnetx_002", "decoder": "segformer"},
        }
    )
    assert [(m.encoder, m.decoder) for m in members.values()] == [
        ("mit_b0", "segformer"),
        ("mit_b5", "daformer"),
        ("regnetx_002", "segformer"),
    ]
    assert set(params.MIT_ENCODERS) == {f"mit_b{i}" for i in range(6)}


def test_every_problem_is_told_at_once_under_its_member():
    with pytest.raises(ParametersInvalid) as error:
        params.ModelsParams.model_validate(
            {"m1": {"encoder": "regnetx_002", "channels": 0}, "m2": {"encoder": "nope_net"}}
        )
    assert [path for path, _ in error.value.problems] == [
        "uda.models.m1.channels",
        "uda.models.m2.encoder",
    ]


def test_the_ensemble_must_weigh_exactly_the_members():
    inference = params.InferenceParams.model_validate(
        soft_merged(BASE["inference"], {"ensemble": {"m1": 1.0, "m3": 1.0}})
    )
    with pytest.raises(ParameterError, match=r"uda\.inference\.ensemble.*'m3'.*m1, m2"):
        inference_settings(inference, ["m1", "m2"])
    with pytest.raises(ParameterError, match=r"uda\.inference\.ensemble.*missing.*m2"):
        inference_settings(soft_merged(BASE["inference"], {"ensemble": {"m1": 1.0}}), ["m1", "m2"])


def test_a_plain_dictionary_still_works_for_the_building_blocks():
    """A notebook passes dictionaries: they are validated at the building block's door, the
    rest filled in from conf/base; a typed block passes through as it is."""
    net = build_network({"encoder": "regnetx_002", "channels": 8}, 13, "uda.models.m1")
    assert net.decoder.classifier.in_channels == 8 and len(net.decoder.branches) == 3
    settings = inference_settings({"scales": [1.0, 0.5]}, ["m1"])
    assert settings["window"] == (128, 128) and settings["ensemble"] == {"m1": 1.0}
    assert params.TrainingParams.of({"iterations": 80}).iterations_per_epoch == 40
    typed = params.DataParams.model_validate({"source_size": 64})
    assert typed.source_size == (64, 64) and params.DataParams.of(typed) is typed


def test_the_blocks_training_processes_receive_pickle():
    """A member's spec and the training block travel to spawned DDP processes."""
    training = params.TrainingParams.model_validate(BASE["training"])
    members = params.ModelsParams.model_validate(BASE["models"])
    assert pickle.loads(pickle.dumps(training)) == training
    assert pickle.loads(pickle.dumps(members["m1"])) == members["m1"]


def test_the_checkpoint_digest_reads_the_block_as_the_configuration_wrote_it():
    """The settings a checkpoint folder is keyed by: every key of uda.training (with
    conf/base filled in) but resume_from, the optimizer and scheduler as written."""
    shaping = params.TrainingParams.model_validate(
        soft_merged(BASE["training"], {"resume_from": "latest"})
    ).shaping()
    expected = copy.deepcopy(BASE["training"])
    del expected["resume_from"]
    assert shaping == expected
    trimmed = {k: v for k, v in BASE["training"].items() if k != "mic"}
    assert params.TrainingParams.model_validate(trimmed).shaping() == expected


def _set(parameters: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = parameters
    for part in parents:
        node = node[part]
    assert leaf in node, dotted  # an override replaces a key the configuration has
    node[leaf] = value


@pytest.mark.parametrize("env", ["base", "full"])
def test_every_point_of_the_uda_ablation_grids_validates(env):
    grids = sorted((REPO / "conf" / "base" / "ablations").glob("uda_*.yml"))
    assert grids
    for path in grids:
        grid = load_grid(path)
        assert grid.pipeline == "uda"
        for point, overrides in grid.points.items():
            parameters = copy.deepcopy(_parameters(env))
            for key, value in {**grid.params, **overrides}.items():
                _set(parameters, key, value)
            try:
                check_typed_parameters(parameters, {"uda": create_pipeline()})
            except ParametersInvalid as error:  # pragma: no cover - the failure's message
                pytest.fail(f"{path.name}: point {point}: {error}")


def test_an_ablation_point_with_a_bad_value_is_caught():
    parameters = copy.deepcopy(_parameters("base"))
    _set(parameters, "uda.training.pseudo_label.weight", "pixel")
    with pytest.raises(ParametersInvalid, match=r"uda\.training\.pseudo_label\.weight"):
        check_typed_parameters(parameters, {"uda": create_pipeline()})


def test_a_typo_in_a_late_block_stops_the_run_before_the_first_node(project):
    """uda.evaluation is read only after training and prediction; its typo costs seconds."""
    before = data_files(project)
    started = time.monotonic()
    with pytest.raises(ParametersInvalid, match=r"uda\.evaluation\.overlay\b.*'overlays'"):
        kedro_run(project, "uda", {"uda": {"evaluation": {"overlay": 2}}})
    assert time.monotonic() - started < 10
    assert_refused_at_the_door(project, before)


def test_what_the_chosen_regime_and_decoder_never_run_is_not_logged():
    switches = {"mic": {"enabled": True}, "class_mix": {"enabled": True}, "ema_alpha": 0.9}
    source_only = params.TrainingParams.model_validate({"regime": "source_only", **switches})
    self_training = params.TrainingParams.model_validate({"regime": "self_training", **switches})
    assert source_only.as_logged() == {"regime": "source_only", "ema_alpha": 0.9}
    assert self_training.as_logged() == {"regime": "self_training", **switches}
    member = {"encoder": "regnetx_002", "dilations": [1, 6]}
    assert (
        "dilations"
        in params.ModelParams.model_validate({**member, "decoder": "daformer"}).as_logged()
    )
    assert (
        "dilations"
        not in params.ModelParams.model_validate({**member, "decoder": "fpn"}).as_logged()
    )
