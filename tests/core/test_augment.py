from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from podium.core.augment import available_transforms, build_transforms
from podium.core.config import ParameterError

SPEC = [
    {"name": "HorizontalFlip", "p": 0.5},
    {"name": "RandomBrightnessContrast", "brightness_limit": 0.2},
    {
        "name": "OneOf",
        "p": 0.9,
        "transforms": [
            {"name": "GaussianBlur", "blur_limit": [3, 5]},
            {"name": "GaussNoise", "std_range": [0.05, 0.1]},
        ],
    },
    {"name": "Normalize"},
    {"name": "ToTensorV2"},
]


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def test_builds_compose_with_nested_oneof_and_tensor_output():
    compose = build_transforms(SPEC, seed=1)
    assert isinstance(compose, A.Compose)
    assert isinstance(compose.transforms[2], A.OneOf) and len(compose.transforms[2].transforms) == 2
    out = compose(image=_image())["image"]
    assert isinstance(out, torch.Tensor) and out.shape == (3, 32, 32) and out.dtype == torch.float32


def test_seed_makes_augmentations_repeatable():
    def run(seed):
        compose = build_transforms(SPEC[:3], seed=seed)
        return [compose(image=_image())["image"] for _ in range(4)]

    a, b, c = run(3), run(3), run(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_without_seed_the_global_numpy_seed_decides():
    def run():
        np.random.seed(5)
        compose = build_transforms(SPEC[:3])
        return [compose(image=_image())["image"] for _ in range(4)]

    assert all(np.array_equal(x, y) for x, y in zip(run(), run(), strict=True))


def test_additional_targets_get_the_same_augmentation():
    compose = build_transforms(
        [{"name": "HorizontalFlip", "p": 1.0}], additional_targets={"real": "image"}
    )
    image = _image()
    out = compose(image=image, real=image.copy())
    assert np.array_equal(out["image"], out["real"]) and np.array_equal(
        out["image"], image[:, ::-1]
    )


def test_empty_spec_is_identity():
    image = _image()
    assert np.array_equal(build_transforms(None)(image=image)["image"], image)


def test_unknown_name_names_the_entry_and_close_match():
    spec = [{"name": "HorizontalFlip"}, {"name": "Normalize"}, {"name": "RandomBrightnesContrast"}]
    with pytest.raises(ParameterError) as info:
        build_transforms(spec, parameter="mask.augment.train")
    message = str(info.value)
    assert "mask.augment.train[2].name" in message
    assert "RandomBrightnessContrast" in message
    assert "conf/base/parameters_mask.yml" in message


def test_unknown_name_inside_oneof_has_nested_path():
    spec = [{"name": "OneOf", "transforms": [{"name": "Blur"}, {"name": "MotionBlurr"}]}]
    with pytest.raises(ParameterError, match=r"x\.aug\[0\]\.transforms\[1\]\.name.*MotionBlur"):
        build_transforms(spec, parameter="x.aug")


def test_renamed_argument_from_albumentations_1_is_rejected():
    # albumentations 2 replaced GaussNoise(var_limit=...) by std_range
    with pytest.raises(ParameterError) as info:
        build_transforms(
            [{"name": "Blur"}, {"name": "GaussNoise", "var_limit": [10, 50]}], parameter="d.aug"
        )
    message = str(info.value)
    assert "d.aug[1]" in message and "var_limit" in message and "std_range" in message


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "HorizontalFlip", "p": 2},
        {"name": "Resize", "height": 10},
        {"name": "Blur", "blur_limit": [3, 5, 7]},
    ],
)
def test_invalid_argument_values_name_the_entry(entry):
    with pytest.raises(ParameterError, match=r"aug\[0\]"):
        build_transforms([entry], parameter="aug")


@pytest.mark.parametrize(
    "spec", [[{"p": 0.5}], ["HorizontalFlip"], [{"name": "OneOf", "transforms": []}], "Blur"]
)
def test_malformed_entries(spec):
    with pytest.raises(ParameterError, match="aug"):
        build_transforms(spec, parameter="aug")


def test_registry_has_tensor_and_composites_but_no_lambda():
    names = available_transforms()
    assert {"ToTensorV2", "OneOf", "SomeOf", "Normalize", "ShiftScaleRotate"} <= names.keys()
    assert "Lambda" not in names and "BasicTransform" not in names
