"""CycleGAN networks: output shape and tanh range, the PatchGAN's 70x70 receptive field."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from podium.core.config import ParameterError
from podium.pipelines.monet.model import (
    ResnetGenerator,
    build_discriminator,
    build_generator,
)
from podium.pipelines.monet.params import MonetModelParams

TINY = {
    "generator": "resnet",
    "padding": "reflect",
    "ngf": 4,
    "n_blocks": 2,
    "unet_downs": 5,
    "ndf": 4,
    "d_layers": 3,
    "init_gain": 0.02,
}


@pytest.mark.parametrize("generator", ["resnet", "unet"])
@pytest.mark.parametrize("padding", ["reflect", "zero"])
def test_generators_keep_the_shape_and_stay_in_tanh_range(generator, padding):
    net = build_generator(TINY | {"generator": generator, "padding": padding})
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    # saturate the output: the tanh must still bound it
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(50)
        y = net(x)
    assert y.shape == x.shape
    assert y.min() >= -1 and y.max() <= 1 and y.abs().max() > 0.99


def test_padding_choice_changes_the_resnet_layers():
    def kinds(padding):
        return {type(m).__name__ for m in ResnetGenerator(4, 1, padding).modules()}

    assert "ReflectionPad2d" in kinds("reflect")
    assert not {"ReflectionPad2d", "ReplicationPad2d"} & kinds("zero")
    assert "ReplicationPad2d" in kinds("replicate")


def test_patchgan_scores_70x70_patches():
    net = build_discriminator(TINY)
    # instance norm mixes the whole map into every score; without it the field shows
    for index, layer in enumerate(net.model):
        if isinstance(layer, nn.InstanceNorm2d):
            net.model[index] = nn.Identity()
    x = torch.randn(1, 3, 160, 160, requires_grad=True)
    out = net(x)
    assert out.shape[:2] == (1, 1) and out.shape[-1] > 1  # a grid of scores, not one
    centre = out.shape[-1] // 2
    out[0, 0, centre, centre].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70


def test_a_unet_too_deep_for_the_crop_names_the_parameter():
    model = MonetModelParams.model_validate(TINY | {"generator": "unet", "unet_downs": 7})
    model.check_fits(128)  # 2**7 divides 128
    with pytest.raises(ParameterError, match=r"monet\.model\.unet_downs.*crop_size"):
        model.check_fits(64)


def test_an_unknown_padding_names_the_allowed_values():
    # a dictionary handed to the builders is validated as the block
    with pytest.raises(ParameterError, match=r"monet\.model\.padding.*reflect"):
        build_generator(TINY | {"padding": "reflection"})
