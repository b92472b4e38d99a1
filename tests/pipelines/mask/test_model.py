"""Variants, losses and the 18-way probabilities of the factored variants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from podium.core.config import ParameterError
from podium.layouts.mask import encode_class
from podium.pipelines.mask.model import (
    FocalLoss,
    SummedLoss,
    build_variant,
    class_probabilities,
    inverse_frequency_weights,
    make_criterion,
    softmax,
)

MODEL = {"variant": "multihead", "backbones": ["resnet10t"], "pretrained": False, "drop_rate": 0.0}


@pytest.mark.parametrize(
    ("variant", "nets", "outputs"),
    [
        ("single18", {"model"}, 18),
        ("multihead", {"model"}, {"mask": 3, "gender": 2, "age": 3}),
        ("separate", {"mask", "gender", "age"}, None),
    ],
)
def test_variants_build_the_networks_they_promise(variant, nets, outputs):
    built = build_variant({**MODEL, "variant": variant}, "resnet10t", 0)
    assert set(built) == nets
    x = torch.zeros(2, 3, 32, 24)
    if variant == "separate":
        sizes = {name: net.eval()(x).shape[1] for name, net in built.items()}
        assert sizes == {"mask": 3, "gender": 2, "age": 3}
    elif isinstance(outputs, dict):
        assert {k: v.shape[1] for k, v in built["model"].eval()(x).items()} == outputs
    else:
        assert built["model"].eval()(x).shape == (2, outputs)


def test_unknown_backbone_names_the_parameter_with_close_matches():
    with pytest.raises(ParameterError, match=r"mask\.model\.backbones\[0\].*resnet10t"):
        build_variant(MODEL, "resnet10tt", 0)


def test_factored_probabilities_follow_the_18_class_code():
    rng = np.random.default_rng(0)
    logits = {
        "mask": rng.normal(size=(5, 3)),
        "gender": rng.normal(size=(5, 2)),
        "age": rng.normal(size=(5, 3)),
    }
    joint = class_probabilities(logits)
    assert joint.shape == (5, 18) and np.allclose(joint.sum(1), 1)
    m, g, a = (softmax(logits[t]) for t in ("mask", "gender", "age"))
    for code_m, code_g, code_a in [(0, 0, 0), (1, 1, 2), (2, 0, 1)]:
        c = encode_class(code_m, code_g, code_a)
        assert np.allclose(joint[:, c], m[:, code_m] * g[:, code_g] * a[:, code_a])
    single = class_probabilities({"class": rng.normal(size=(5, 18))})
    assert single.shape == (5, 18) and np.allclose(single.sum(1), 1)


def test_focal_loss_is_cross_entropy_at_gamma_zero_and_smaller_above():
    logits, target = torch.randn(8, 3), torch.randint(0, 3, (8,))
    ce = nn.functional.cross_entropy(logits, target)
    assert torch.isclose(FocalLoss(0.0)(logits, target), ce)
    assert FocalLoss(2.0)(logits, target) < ce


def test_weighted_ce_weights_are_inverse_class_frequencies():
    weights = inverse_frequency_weights(np.array([0, 0, 0, 1, 2, 2]), 4)
    assert weights[3] == 0  # absent class
    assert torch.isclose(weights[1] / weights[0], torch.tensor(3.0))
    assert torch.isclose(weights[:3].mean(), torch.tensor(1.0))
    criterion = make_criterion({"name": "weighted_ce"}, np.array([0, 0, 1]), 2)
    assert torch.allclose(criterion.weight, torch.tensor([2 / 3, 4 / 3]))


def test_unknown_loss_names_the_parameter_and_choices():
    with pytest.raises(ParameterError, match=r"mask\.loss\.name.*ce, focal, weighted_ce"):
        make_criterion({"name": "hinge"}, np.array([0]), 2)


def test_summed_loss_adds_the_heads():
    outputs = {"mask": torch.randn(4, 3), "age": torch.randn(4, 3)}
    targets = {"mask": torch.tensor([0, 1, 2, 0]), "age": torch.tensor([2, 2, 1, 0])}
    ce = nn.CrossEntropyLoss()
    total = SummedLoss({"mask": ce, "age": ce})(outputs, targets)
    expected = ce(outputs["mask"], targets["mask"]) + ce(outputs["age"], targets["age"])
    assert torch.isclose(total, expected)
