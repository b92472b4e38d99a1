from __future__ import annotations

import pytest
import torch

from podium.core.config import ParameterError
from podium.core.models import MultiHeadModel, build_model, check_backbone, count_parameters
from tests.core.helpers import TINY_BACKBONE


def test_single_head_classifier():
    model = build_model(TINY_BACKBONE, pretrained=False, heads=18)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 18)


def test_multi_head_output_shapes_and_shared_backbone():
    model = build_model(TINY_BACKBONE, False, {"mask": 3, "gender": 2, "age": 3}, drop_rate=0.1)
    assert isinstance(model, MultiHeadModel)
    out = model(torch.randn(4, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "mask": (4, 3),
        "gender": (4, 2),
        "age": (4, 3),
    }
    head_params = sum(p.numel() for p in model.heads.parameters())
    assert head_params == (model.num_features + 1) * 8


def test_in_chans():
    model = build_model(TINY_BACKBONE, heads=2, in_chans=1)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 2)


def test_unknown_backbone_names_parameter_and_close_matches():
    with pytest.raises(ParameterError) as info:
        build_model("efficientnet-b0", heads=2, parameter="deepfake.model.backbone")
    message = str(info.value)
    assert "deepfake.model.backbone" in message
    assert "efficientnet_b0" in message
    assert "allowed values" in message


def test_backbone_with_pretrained_tag_is_accepted():
    assert check_backbone("resnet18.a1_in1k") == "resnet18.a1_in1k"


@pytest.mark.parametrize("heads", [0, -1, {"mask": 0}, {}, {"bad name": 2}, 2.5])
def test_bad_heads(heads):
    with pytest.raises(ParameterError, match=r"mask\.model\.heads"):
        build_model(TINY_BACKBONE, heads=heads, parameter="mask.model.backbone")


def test_unknown_timm_keyword_is_a_parameter_error():
    with pytest.raises(ParameterError, match="timm_kwargs"):
        build_model(TINY_BACKBONE, heads=2, not_an_option=3)


def test_count_parameters_trainable_only():
    model = build_model(TINY_BACKBONE, heads=3)
    total = count_parameters(model, trainable_only=False)
    for p in model.parameters():
        p.requires_grad_(False)
        break
    assert 0 < count_parameters(model) < total


def test_multi_head_on_a_backbone_with_a_pre_logits_stage():
    import torch

    from podium.core.models import build_model

    model = build_model("mobilenetv3_small_050", heads={"mask": 3, "age": 3}).eval()
    out = model(torch.randn(2, 3, 64, 64))
    assert out["mask"].shape == (2, 3) and out["age"].shape == (2, 3)
