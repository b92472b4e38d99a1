"""The segmentation network: timm and MiT encoders, every decoder, parameter errors naming
the key, the decoder's learning-rate group, a training step with MiT."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from podium.core import optim
from podium.core.config import ParameterError
from podium.core.device import Runtime, amp_settings
from podium.core.params import ParametersInvalid
from podium.pipelines.uda import data, nodes, train
from podium.pipelines.uda import model as uda_model
from podium.pipelines.uda.model import build_network
from podium.pipelines.uda.params import MIT_ENCODERS, ModelParams
from tests.conftest import REPO, soft_merged
from tests.pipelines.uda.conftest import TINY_PARAMS

SPEC = {"encoder": "regnetx_002", "decoder": "daformer", "channels": 8, "dilations": [1, 2]}
MIT = {**SPEC, "encoder": "mit_b0"}
DECODERS = ["daformer", "fpn", "segformer"]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread, as in the engine's tests: the cores are few and shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("decoder", DECODERS)
def test_every_decoder_gives_full_size_logits(decoder):
    net = build_network({**SPEC, "decoder": decoder}, 12, "uda.models.m1").eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, 64, 96))
    assert out.shape == (2, 12, 64, 96) and torch.isfinite(out).all()


@pytest.mark.parametrize("decoder", DECODERS)
def test_mit_with_every_decoder_gives_logits_at_a_size_that_is_no_multiple_of_32(decoder):
    net = build_network({**MIT, "decoder": decoder}, 13, "uda.models.m1").eval()
    images = torch.rand(2, 3, 70, 90)
    with torch.no_grad():
        out = net(images)
        # channels_last, as podium trains on a GPU
        last = net.to(memory_format=torch.channels_last)(
            images.contiguous(memory_format=torch.channels_last)
        )
    assert out.shape == (2, 13, 70, 90) and torch.isfinite(out).all()
    torch.testing.assert_close(last, out, atol=1e-4, rtol=1e-4)


def test_mit_levels_count_as_timm_s_and_every_parameter_learns():
    """Levels 1..4 are strides 4..32 for MiT as for a timm CNN; the stages past the deepest
    level asked for are gone (DDP needs a gradient for every parameter)."""
    timm_net = build_network(SPEC, 13, "uda.models.m1")
    net = build_network(MIT, 13, "uda.models.m1")
    for encoder in (timm_net.encoder, net.encoder):
        assert encoder.feature_info.reduction() == [4, 8, 16, 32]
    assert net.encoder.feature_info.channels() == [32, 64, 160, 256]  # MiT-B0's stages
    images = torch.rand(1, 3, 70, 90)
    features = net.encoder(images)
    assert [f.shape[1:] for f in features] == [
        (c, math.ceil(70 / s), math.ceil(90 / s))
        for c, s in zip((32, 64, 160, 256), (4, 8, 16, 32), strict=True)
    ]
    for decoder in DECODERS:  # each fuses at the finest level's own size
        head = build_network({**MIT, "decoder": decoder}, 13, "uda.models.m1").decoder
        assert head(features).shape[-2:] == features[0].shape[-2:] == (18, 23), decoder

    shallow = build_network({**MIT, "out_indices": [2, 3], "decoder": "segformer"}, 13, "m")
    assert shallow.encoder.feature_info.reduction() == [8, 16]
    assert shallow.encoder.feature_info.channels() == [64, 160]
    assert not any(n.startswith(("model.block4", "model.norm4")) for n, _ in
                   shallow.encoder.named_parameters())  # fmt: skip
    shallow(images).sum().backward()
    assert [n for n, p in shallow.named_parameters() if p.grad is None] == []


def test_mit_out_indices_outside_its_four_stages_name_the_parameter():
    with pytest.raises(ParameterError, match=r"uda\.models\.m1\.out_indices.*no stride-2 level 0"):
        build_network({**MIT, "out_indices": [0, 1, 2]}, 13, "uda.models.m1")
    with pytest.raises(ParameterError, match=r"uda\.models\.m1\.out_indices.*1\.\.4"):
        build_network({**MIT, "out_indices": [2, 5]}, 13, "uda.models.m1")


def test_pretrained_mit_asks_smp_for_its_imagenet_weights(monkeypatch):
    asked = []

    def no_download(name, *, weights, **kwargs):
        asked.append((name, weights))
        return real(name, weights=None, **kwargs)

    real = uda_model.get_encoder
    monkeypatch.setattr(uda_model, "get_encoder", no_download)
    build_network({**MIT, "pretrained": True}, 13, "uda.models.m1")
    build_network(MIT, 13, "uda.models.m1")
    assert asked == [("mit_b0", "imagenet"), ("mit_b0", None)]


@pytest.mark.parametrize("decoder", DECODERS)
def test_the_decoder_lr_group_holds_the_decoder_and_nothing_of_the_encoder(decoder):
    spec = ModelParams.model_validate({**MIT, "decoder": decoder})
    net = build_network(spec, 13, "uda.models.m1")
    opt = {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01, "lr_multipliers": {"decoder": 10.0}}
    groups = optim.build_optimizer(net, opt).param_groups
    fast = {id(p) for g in groups if g["lr"] == pytest.approx(1e-2) for p in g["params"]}
    slow = {id(p) for g in groups if g["lr"] == pytest.approx(1e-3) for p in g["params"]}
    assert fast == {id(p) for p in net.decoder.parameters()}
    assert slow == {id(p) for p in net.encoder.parameters()}
    train.check_lr_multipliers(spec, opt, "uda.models.m1")  # built on the meta device


def test_the_mit_names_are_smp_s_and_an_unknown_encoder_names_close_matches_of_both():
    from segmentation_models_pytorch.encoders import get_encoder_names

    assert set(MIT_ENCODERS) <= set(get_encoder_names())
    assert ModelParams.model_validate({"encoder": "mit_b5"}).encoder == "mit_b5"
    told = r"uda\.models\.m1\.encoder: '{}' is not allowed; did you mean one of: {},"
    for wrong, close in (("mit_b6", "mit_b5"), ("regnetx_0002", "regnetx_002")):
        with pytest.raises(ParametersInvalid, match=told.format(wrong, close)):
            ModelParams.at("uda.models.m1").model_validate({"encoder": wrong})


def test_a_bad_decoder_or_key_names_the_parameter():
    with pytest.raises(ParameterError, match=r"uda\.models\.m1\.decoder.*daformer"):
        build_network({**SPEC, "decoder": "unet++"}, 12, "uda.models.m1")
    with pytest.raises(ParameterError, match=r"uda\.models\.m1.*chanels.*channels"):
        build_network({**SPEC, "chanels": 8}, 12, "uda.models.m1")
    with pytest.raises(ParameterError, match=r"uda\.models\.m1\.encoder"):
        build_network({**SPEC, "encoder": "regnetx_0002"}, 12, "uda.models.m1")


def test_training_parameters_are_checked_naming_the_key():
    from podium.pipelines.uda.params import TrainingParams

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


def _parameters(env: str) -> dict:
    return yaml.safe_load((REPO / f"conf/{env}/parameters_uda.yml").read_text())


def test_the_full_environment_merges_into_valid_uda_parameters():
    from podium.pipelines.uda.inference import inference_settings
    from podium.pipelines.uda.params import ModelsParams, TrainingParams

    uda = soft_merged(_parameters("base"), _parameters("full"))["uda"]
    assert TrainingParams.of(uda["training"]).iterations == 40000
    assert inference_settings(uda["inference"], list(uda["models"]))["ensemble"] == {
        "m1": 1.0,
        "m2": 1.0,
    }
    members = ModelsParams.of(uda["models"])
    assert list(members) == ["m1", "m2"] and all(m.pretrained for m in members.values())
    assert [(m.encoder, m.decoder) for m in members.values()] == [
        ("mit_b5", "daformer"),
        ("mit_b5", "segformer"),
    ]


#: Working sizes for MiT: its spatial-reduction attention (keys pooled by 8, 4 and 2 in the
#: first three stages) needs crops of 64 pixels and more for more than one key per query.
MIT_SIZES = ((96, 192), (108, 192))


@pytest.fixture(scope="module")
def tables(pristine_uda_root):
    """The tiny sample's training source, target and source class counts, at MIT_SIZES."""
    index, _ = nodes.index_data(pristine_uda_root)
    size = TINY_PARAMS["uda"]["data"]
    sizes = {
        s: size["source_size" if "source" in s else "target_size"] for s in set(index["split"])
    }
    images, counts, _ = data.inspect_images(index, sizes, progress=False)

    def split(table, name):
        return table[table["split"] == name].reset_index(drop=True)

    counts = split(counts, "train_source").drop(columns="split")
    return split(images, "train_source"), split(images, "train_target"), counts


@pytest.mark.parametrize("decoder", ["daformer", "segformer"])
def test_mit_trains_through_the_uda_engine(tables, decoder):
    """One self-training iteration (pseudo-labels from the start, ClassMix, MIC, the dual
    branch) moves every encoder and decoder weight of the student."""
    training = soft_merged(
        _parameters("base")["uda"]["training"],
        {
            **TINY_PARAMS["uda"]["training"],
            "iterations": 1,
            "iterations_per_epoch": 1,
            "crop_size": [96, 96],
            "pseudo_label": {"start_iteration": 0, "threshold": 0.0},
        },
    )
    spec = {**MIT, "decoder": decoder}
    result = train.train_members(
        *tables,
        {"m1": spec},
        training,
        seed=0,
        deterministic=True,
        runtime=Runtime(torch.device("cpu"), amp_settings("cpu", "fp32"), 0, False, False),
        sizes=MIT_SIZES,
        progress=False,
    )["m1"]
    (epoch,) = result["history"]
    assert epoch["train_pseudo_weight"] > 0 and {"train_target", "train_mic"} <= set(epoch)
    assert all(math.isfinite(v) for v in epoch.values() if isinstance(v, float))
    student, teacher = result["student"], result["ema"]
    weights = [n for n, _ in build_network(spec, 13, "uda.models.m1").named_parameters()]
    assert any(n.startswith("encoder.") for n in weights)
    assert any(n.startswith("decoder.") for n in weights)
    # the teacher is the student before the step: every weight the step moved differs
    assert [n for n in weights if torch.equal(student[n], teacher[n])] == []
