"""The segmentation network: both decoders, parameter errors naming the key."""

from __future__ import annotations

import pytest
import torch

from podium.core.config import ParameterError
from podium.pipelines.uda.model import build_network

SPEC = {"encoder": "regnetx_002", "decoder": "daformer", "channels": 8, "dilations": [1, 2]}


@pytest.mark.parametrize("decoder", ["daformer", "fpn"])
def test_both_decoders_give_full_size_logits(decoder):
    net = build_network({**SPEC, "decoder": decoder}, 12, "uda.models.m1").eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 12, 64, 96) and torch.isfinite(out).all()


def test_a_bad_decoder_or_key_names_the_parameter():
    with pytest.raises(ParameterError, match=r"uda\.models\.m1\.decoder.*daformer"):
        build_network({**SPEC, "decoder": "unet++"}, 12, "uda.models.m1")
    with pytest.raises(ParameterError, match=r"uda\.models\.m1.*chanels.*channels"):
        build_network({**SPEC, "chanels": 8}, 12, "uda.models.m1")
    with pytest.raises(ParameterError, match=r"uda\.models\.m1\.encoder"):
        build_network({**SPEC, "encoder": "regnetx_0002"}, 12, "uda.models.m1")


def test_training_parameters_are_checked_naming_the_key():
    import yaml

    from podium.pipelines.uda.params import TrainingParams
    from tests.conftest import REPO

    training = yaml.safe_load((REPO / "conf/base/parameters_uda.yml").read_text())["uda"][
        "training"
    ]
    assert TrainingParams.of(training).crop_size == (128, 128)
    with pytest.raises(ParameterError, match=r"uda\.training\.regime.*self_training"):
        TrainingParams.of({**training, "regime": "selftraining"})
    with pytest.raises(ParameterError, match=r"uda\.training\.mic.*mask_ration"):
        TrainingParams.of({**training, "mic": {**training["mic"], "mask_ration": 0.5}})
    with pytest.raises(ParameterError, match=r"uda\.training\.dual_branch\.scale"):
        TrainingParams.of({**training, "dual_branch": {**training["dual_branch"], "scale": [2, 1]}})


def test_the_full_environment_merges_into_valid_uda_parameters():
    import yaml

    from podium.pipelines.uda.inference import inference_settings
    from podium.pipelines.uda.params import ModelsParams, TrainingParams
    from tests.conftest import REPO

    def merge(base: dict, override: dict) -> dict:  # the soft merge of settings.py
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    read = lambda env: yaml.safe_load((REPO / f"conf/{env}/parameters_uda.yml").read_text())  # noqa: E731
    uda = merge(read("base"), read("full"))["uda"]
    assert TrainingParams.of(uda["training"]).iterations == 40000
    assert inference_settings(uda["inference"], list(uda["models"]))["ensemble"] == {
        "m1": 1.0,
        "m2": 1.0,
    }
    members = ModelsParams.of(uda["models"])
    assert list(members) == ["m1", "m2"] and all(m.pretrained for m in members.values())
