"""The sample generators' typed blocks (``sample_data.<competition>``): conf/base and
conf/full validate, their defaults are conf/base's, a bad key or value is refused naming its
full path, what is allowed and the file, at a generator's own door as before the first node
of a real run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kedro.config import OmegaConfigLoader

from podium.core.params import ParametersInvalid
from podium.hooks import check_typed_parameters
from podium.pipelines.sample_data import create_pipeline
from podium.pipelines.sample_data.params import (
    DeepfakeSampleParams,
    MaskSampleParams,
    MonetSampleParams,
    UdaSampleParams,
)
from podium.sample_data.deepfake import generate_deepfake_sample
from podium.sample_data.mask import generate_mask_sample
from podium.sample_data.monet import generate_monet_sample
from podium.sample_data.uda import generate_uda_sample
from podium.settings import CONFIG_LOADER_ARGS
from tests.conftest import (
    TINY_SAMPLE,
    assert_refused_at_the_door,
    data_files,
    kedro_run,
    make_project,
)

REPO = Path(__file__).resolve().parents[2]
FILE = "conf/base/parameters_sample_data.yml"
MODELS = {
    "deepfake": DeepfakeSampleParams,
    "mask": MaskSampleParams,
    "uda": UdaSampleParams,
    "monet": MonetSampleParams,
}


def parameters(env: str) -> dict[str, Any]:
    """The project's parameters for ``env``, merged as podium's settings merge them."""
    loader = OmegaConfigLoader(
        conf_source=str(REPO / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env}
    )
    return loader["parameters"]


@pytest.mark.parametrize("env", ["base", "full"])
def test_the_project_configuration_validates(env):
    params = parameters(env)
    check_typed_parameters(params, {"sample_data": create_pipeline()})  # raises if not
    for competition, model in MODELS.items():
        model.model_validate(params["sample_data"][competition])
    assert isinstance(params["sample_data"]["seed"], int)


@pytest.mark.parametrize("competition", sorted(MODELS))
def test_the_defaults_are_conf_base(competition):
    """A key left out behaves as conf/base (which sets every key of every block)."""
    block = parameters("base")["sample_data"][competition]
    assert MODELS[competition]().as_dict() == block


def test_the_models_are_what_the_generators_take():
    """Every generator node's block is typed, so Kedro and podium check it at startup."""
    from kedro.validation.type_extractor import TypeExtractor

    found = TypeExtractor({"sample_data": create_pipeline()}).extract_types_from_pipelines()
    typed = {key: getattr(kind, "__args__", (kind,))[0] for key, kind in found.items()}
    assert typed == {f"sample_data.{c}": model for c, model in MODELS.items()}


@pytest.mark.parametrize(
    ("model", "given", "path", "told"),
    [
        (DeepfakeSampleParams, {"n_videos": 3}, "sample_data.deepfake.n_videos", "'n_test_videos'"),
        (DeepfakeSampleParams, {"difficulty": 2.0}, "sample_data.deepfake.difficulty", "<= 1"),
        (DeepfakeSampleParams, {"width": 161}, "sample_data.deepfake.width", "even"),
        (DeepfakeSampleParams, {"height": 32}, "sample_data.deepfake.height", ">= 64"),
        (DeepfakeSampleParams, {"n_parts": 0}, "sample_data.deepfake.n_parts", ">= 1"),
        (DeepfakeSampleParams, {"n_parts": 1.5}, "sample_data.deepfake.n_parts", "valid integer"),
        (DeepfakeSampleParams, {"preset": "veryfst"}, "sample_data.deepfake.preset", "'veryfast'"),
        (DeepfakeSampleParams, {"seconds": 0.01}, "sample_data.deepfake.seconds", "one frame"),
        (
            DeepfakeSampleParams,
            {"test_actors": 0},
            "sample_data.deepfake.test_actors",
            "n_test_videos",
        ),
        (
            DeepfakeSampleParams,
            {"face_height": [0.5, 0.2]},
            "sample_data.deepfake.face_height",
            "low",
        ),
        (
            DeepfakeSampleParams,
            {"face_height": [0.01, 0.2]},
            "sample_data.deepfake.face_height[0]",
            ">=",
        ),
        (
            DeepfakeSampleParams,
            {"full_size": {"fpss": 3}},
            "sample_data.deepfake.full_size.fpss",
            "'fps'",
        ),
        (
            DeepfakeSampleParams,
            {"full_size": {"width": 1919}},
            "sample_data.deepfake.full_size.width",
            "even",
        ),
        (MaskSampleParams, {"n_peple": 3}, "sample_data.mask.n_peple", "'n_people'"),
        (MaskSampleParams, {"old_share": 1.5}, "sample_data.mask.old_share", "<= 1"),
        (
            MaskSampleParams,
            {"young_share": 0.6, "old_share": 0.5},
            "sample_data.mask.old_share",
            "young_share + fifties_share",
        ),
        (
            MaskSampleParams,
            {"png_share": 0.6, "jpeg_share": 0.5},
            "sample_data.mask.jpeg_share",
            "png_share + jpeg_share",
        ),
        (MaskSampleParams, {"width": 8}, "sample_data.mask.width", ">= 32"),
        (MaskSampleParams, {"min_age": 30}, "sample_data.mask.min_age", "<= 29"),
        (MaskSampleParams, {"jpeg_quality": [80, 101]}, "sample_data.mask.jpeg_quality[1]", "100"),
        (MaskSampleParams, {"light": [1.2, 0.9]}, "sample_data.mask.light", "low <= high"),
        (MaskSampleParams, {"race": "South Asian"}, "sample_data.mask.race", "one word"),
        (UdaSampleParams, {"n_imgs": 3}, "sample_data.uda.n_imgs", "n_train_source"),
        (UdaSampleParams, {"n_test": 0}, "sample_data.uda.n_test", ">= 1"),
        (UdaSampleParams, {"source_width": 8192}, "sample_data.uda.source_width", "<= 4096"),
        (UdaSampleParams, {"ego_vehicle": "yes"}, "sample_data.uda.ego_vehicle", "boolean"),
        (
            UdaSampleParams,
            {"fisheye_max_angle_deg": 95},
            "sample_data.uda.fisheye_max_angle_deg",
            "<= 85",
        ),
        (MonetSampleParams, {"n_paintings": 3}, "sample_data.monet.n_paintings", "n_monet"),
        (MonetSampleParams, {"palette_strength": 2}, "sample_data.monet.palette_strength", "<= 1"),
        (MonetSampleParams, {"size": 16}, "sample_data.monet.size", ">= 32"),
        (
            MonetSampleParams,
            {"photo_tfrec_shards": -1},
            "sample_data.monet.photo_tfrec_shards",
            ">= 0",
        ),
    ],
)
def test_a_bad_key_or_value_is_named_with_what_is_allowed_and_the_file(model, given, path, told):
    with pytest.raises(ParametersInvalid) as error:
        model.model_validate(given)
    text = str(error.value)
    assert error.value.parameter == path, text
    assert told in text and FILE in text


@pytest.mark.parametrize(
    ("generate", "competition"),
    [
        (generate_deepfake_sample, "deepfake"),
        (generate_mask_sample, "mask"),
        (generate_uda_sample, "uda"),
        (generate_monet_sample, "monet"),
    ],
)
def test_a_generator_takes_a_plain_dictionary_and_checks_it_at_its_door(generate, competition):
    """Notebooks and tests pass partial dicts (the rest: the defaults); a typo still stops
    the generator naming its full path."""
    model = MODELS[competition]
    given = TINY_SAMPLE["sample_data"][competition]
    typed = model.of(given)
    assert model.of(typed) is typed  # a model passes through as it is
    assert all(typed.as_configured()[key] == value for key, value in given.items())
    left_out = next(key for key in model.model_fields if key not in given)
    assert typed[left_out] == model.model_fields[left_out].default
    with pytest.raises(ParametersInvalid, match=rf"sample_data\.{competition}\.n_typo"):
        generate({**given, "n_typo": 1}, seed=0)


def test_every_problem_of_a_block_is_told_at_once():
    with pytest.raises(ParametersInvalid) as error:
        DeepfakeSampleParams.model_validate({"fps": 0, "crf": 60, "n_video": 1})
    assert [path for path, _ in error.value.problems] == [
        "sample_data.deepfake.fps",
        "sample_data.deepfake.crf",
        "sample_data.deepfake.n_video",
    ]


def test_a_typo_stops_the_run_before_the_first_generator(tmp_path, monkeypatch):
    """A typo in the monet block stops `kedro run --pipeline=sample_data` at startup: not
    after the DFDC videos, the mask photos and the UDA images were drawn."""
    root = make_project(tmp_path / "project", TINY_SAMPLE, git=False)
    monkeypatch.chdir(root)
    before = data_files(root)
    started = time.monotonic()
    with pytest.raises(
        ParametersInvalid,
        match=r"(?s)sample_data\.monet\.n_photoz.*'n_photos'.*parameters_sample_data",
    ):
        kedro_run(root, "sample_data", {"sample_data": {"monet": {"n_photoz": 3}}})
    assert time.monotonic() - started < 10
    assert_refused_at_the_door(root, before)
