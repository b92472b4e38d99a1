"""The monet pipeline's parameter blocks (conf/base/parameters_monet.yml), typed: Kedro
checks them when the session starts, before the first node (see podium.core.params).

Each model's defaults are conf/base's values, so a key left out behaves as conf/base.
``monet.source``, ``monet.seed`` and ``monet.deterministic`` are single values, read as
they are (``index_monet`` checks the source). One rule spans two blocks and is checked when
training starts: a U-Net's ``2**unet_downs`` must divide ``data.crop_size``
(``MonetModelParams.check_fits``).

No kedro or mlflow imports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args

from pydantic import Field, Strict, model_validator

from podium.core.config import ParameterError
from podium.core.params import (
    Bool,
    Fraction,
    Int,
    NonNegativeFloat,
    NonNegativeInt,
    Only,
    Params,
    PositiveInt,
)

#: PIL's highest useful JPEG quality (above it PIL warns that files only grow).
MAX_JPEG_QUALITY = 95
#: Inception-v3's smallest usable input side.
MIN_INCEPTION_SIZE = 75
#: The smallest training crop (and generator input) side.
MIN_IMAGE_SIZE = 8

#: ``monet.source``: which half of data/01_raw/monet/ is read.
Source = Literal["jpg", "tfrec"]


class MonetDataParams(Params):
    """``monet.data``: the paper's jitter, resize to load_size, random crop, random h-flip."""

    block: ClassVar[str] = "monet.data"

    load_size: PositiveInt = 72
    """Side the images are resized to before the crop (paper: 286); at least crop_size."""
    crop_size: Annotated[Int, Field(ge=MIN_IMAGE_SIZE)] = 64
    """Side of the random training crop (paper: 256); the generator also translates at it."""
    flip: Bool = True
    """Random horizontal flips."""

    @model_validator(mode="after")
    def _crop_fits(self) -> MonetDataParams:
        if self.load_size < self.crop_size:
            raise ParameterError(
                f"{self.block}.load_size",
                f"{self.load_size} is smaller than crop_size {self.crop_size}",
            )
        return self


class MonetModelParams(Params):
    """``monet.model``: the generators and PatchGAN discriminators (model.py)."""

    block: ClassVar[str] = "monet.model"

    generator: Literal["resnet", "unet"] = "resnet"
    """resnet (the paper's) | unet (pix2pix's U-Net)."""
    padding: Literal["reflect", "zero", "replicate"] = "reflect"
    """reflect (the paper's) | zero (the Keras tutorial's "same") | replicate."""
    ngf: PositiveInt = 16
    """Generator filters in the first layer (paper: 64)."""
    n_blocks: Annotated[NonNegativeInt, Only("generator", "resnet")] = 6
    """resnet: residual blocks (paper: 9 at 256 px, 6 at 128 px)."""
    unet_downs: Annotated[PositiveInt, Only("generator", "unet")] = 6
    """unet: stride-2 steps; 2**unet_downs must divide data.crop_size (paper: 8)."""
    ndf: PositiveInt = 16
    """PatchGAN filters in the first layer (paper: 64)."""
    d_layers: PositiveInt = 3
    """PatchGAN depth: 3 gives 70x70 patches."""
    init_gain: NonNegativeFloat = 0.02
    """Standard deviation of the N(0, std) weight init."""

    def check_fits(self, crop_size: int, parameter: str = "monet.data.crop_size") -> None:
        """A U-Net halves its input ``unet_downs`` times: ``2**unet_downs`` must divide the
        training crop (``parameter``: where that side is set)."""
        if self.generator == "unet" and crop_size % 2**self.unet_downs:
            raise ParameterError(
                f"{self.block}.unet_downs",
                f"2**{self.unet_downs} does not divide the training crop ({crop_size} px): "
                f"lower it or change {parameter}",
            )


class MonetLossParams(Params):
    """``monet.loss``: the weights of the cycle and identity losses."""

    block: ClassVar[str] = "monet.loss"

    lambda_cycle: NonNegativeFloat = 10.0
    """Weight of the cycle-consistency (L1) losses."""
    lambda_identity: NonNegativeFloat = 0.5
    """Identity weight, as a fraction of lambda_cycle (0: no identity loss)."""


class MonetOptimizerParams(Params):
    """``monet.optimizer``: Adam for the generators and for the discriminators."""

    block: ClassVar[str] = "monet.optimizer"

    lr: NonNegativeFloat = 0.0002
    """Initial learning rate (held, then decayed: see monet.train)."""
    beta1: Fraction = 0.5
    beta2: Fraction = 0.999


class MonetTrainParams(Params):
    """``monet.train``: the schedule, the batches, the pools, and where a run starts."""

    block: ClassVar[str] = "monet.train"

    n_epochs: NonNegativeInt = 5
    """Epochs at the initial rate before the decay (paper: 100)."""
    n_epochs_decay: NonNegativeInt = 5
    """Epochs of the linear decay (paper: 100); 0 is a constant rate in every epoch."""
    lr_decay_timing: Literal["reference", "after_n_epochs"] = "reference"
    """reference (the authors' timing) | after_n_epochs (podium's earlier one, one epoch
    later): see train.lr_factor."""
    batch_size: PositiveInt = 4
    """Images per domain per step (paper: 1)."""
    epoch_size: Literal["max", "min"] = "max"
    """max (every image of the larger set, the paper's) | min (the smaller set's count)."""
    pool_size: NonNegativeInt = 50
    """Generated-image history for the discriminators (0: none)."""
    grad_clip: NonNegativeFloat | None = None
    """Max gradient norm per update of G and of D (null: none, the paper's)."""
    # The two keys below say how far this run goes, not what it trains (RUN_KEYS): they are
    # no part of the checkpoint folder's digest, so a run resumed with them finds the
    # checkpoint of the run it continues.
    epochs_this_run: PositiveInt | None = None
    """Stop after this many epochs (null: all); resume later."""
    resume_from: Annotated[str, Strict(), Field(min_length=1)] | None = None
    """Where training starts: null afresh, a save version of the sub-models
    (2026-01-31T12.00.00.000Z) from the state that run saved, latest from whichever is
    further along (the newest saved run, or these settings' epoch checkpoint)."""


#: ``monet.train`` keys that say how far this run goes, not what it trains.
RUN_KEYS = ("epochs_this_run", "resume_from")


class MonetGenerateParams(Params):
    """``monet.generate``: the competition's images.zip."""

    block: ClassVar[str] = "monet.generate"

    input_size: Annotated[Int, Field(ge=MIN_IMAGE_SIZE)] | None = None
    """Side the generator sees (null: data.crop_size)."""
    output_size: PositiveInt = 256
    """Side of the jpgs written (the competition's 256x256)."""
    jpeg_quality: Annotated[Int, Field(ge=1, le=MAX_JPEG_QUALITY)] = 95
    """JPEG quality of the jpgs, 1 to 95 (PIL's max)."""
    batch_size: PositiveInt = 8
    """Photos translated per batch."""

    def input_side(self, data: Mapping[str, Any]) -> int:
        """The side the generator translates at: ``input_size``, else the training crop."""
        return int(data["crop_size"]) if self.input_size is None else self.input_size


class MonetEvaluationParams(Params):
    """``monet.evaluation``: FID and MiFID of images.zip against the training Monets."""

    block: ClassVar[str] = "monet.evaluation"

    inception_weights: str | None = "data/06_models/fid/pt_inception-2015-12-05-6726825d.pth"
    """The FID Inception's weights: this local file (the cache), fetched once from
    inception_weights_url when absent (null: none, the seeded stand-in)."""
    inception_weights_url: str | None = (
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth"
    )
    """Where the weights are fetched from (null: never fetched)."""
    standin_seed: NonNegativeInt = 0
    """The stand-in extractor's weights; fixed apart from monet.seed so runs compare."""
    standin_centering: Bool = True
    """Stand-in only: centre features before the cosine distance."""
    image_size: Annotated[Int, Field(ge=MIN_INCEPTION_SIZE)] = 299
    """Inception's input side."""
    batch_size: PositiveInt = 16
    """Images per Inception batch."""
    cosine_distance_eps: NonNegativeFloat = 0.1
    """Kaggle's memorisation threshold for MiFID."""

    @model_validator(mode="before")
    @classmethod
    def _no_fid_method(cls, values: Any) -> Any:
        if isinstance(values, Mapping) and "fid_method" in values:
            raise ParameterError(
                f"{cls.block}.fid_method",
                "no longer a setting: torchmetrics' FrechetInceptionDistance computes the "
                "FID; remove the key",
            )
        return values


class MonetReportParams(Params):
    """``monet.report``: the figures beside the scores."""

    block: ClassVar[str] = "monet.report"

    grid_photos: PositiveInt = 4
    """Photos in the photo -> Monet -> photo grid."""


#: The lr_decay_timing choices, in the order the model lists them.
LR_DECAY_TIMINGS: tuple[str, ...] = get_args(
    MonetTrainParams.model_fields["lr_decay_timing"].annotation
)

P = TypeVar("P", bound=Params)


def validated(model: type[P], value: Mapping[str, Any] | P) -> P:
    """``value`` as ``model``: a model given is returned as it is, a dictionary (from a
    notebook or a test) validated, raising ParametersInvalid naming the bad keys."""
    return value if isinstance(value, model) else model.model_validate(value)
