"""FID and Kaggle's MiFID, and the Inception-v3 pool features they are computed on.

FID (Heusel et al. 2017) is the Frechet distance between two Gaussians fitted to feature
vectors: ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrt(S1 S2))``. podium computes it with
torchmetrics' ``FrechetInceptionDistance``, podium's extractor passed as its ``feature=``
module (:class:`InceptionFeatures`): torchmetrics accumulates the feature sums and
cross-products batch by batch in float64 and takes the trace of the root from the
eigenvalues of ``S1 S2``. MiFID (Kaggle's "memorisation informed" FID, used by "I'm
Something of a Painter Myself" and "Generative Dog Images") divides it by a memorisation
distance: the mean, over generated images, of the smallest cosine distance ``1 - |cos|`` to
any training image, kept when it is below ``cosine_distance_eps`` (0.1) and replaced by 1
otherwise; so only near-copies of the training set are penalised. That distance is
podium's own (:func:`memorization_distance`, following Kaggle's published
``MiFIDEvaluator``: zero-sum feature rows are left out, the division adds ``fid_epsilon``,
1e-14): torchmetrics' ``MemorizationInformedFrechetInceptionDistance`` averages over the
real images instead, which is not Kaggle's figure.

Features: Inception-v3's 2048-d pool3 output. With the FID Inception weights
(``pt_inception-2015-12-05-6726825d.pth``, the TF graph ported by pytorch-fid, whose blocks
pool slightly differently) or torchvision's ImageNet ``inception_v3`` state dict at a local
path, the figures are comparable to published ones (pt_inception: to Kaggle's).
:func:`resolve_inception_weights` fetches pytorch-fid's file once, from pytorch-fid's own
URL (:data:`FID_WEIGHTS_URL`), into that local path when the network is reachable. Without
weights (offline, or no URL) a **stand-in** is used: the same architecture, randomly
initialised from a fixed seed (He-normal convolutions, so activations neither explode nor
vanish). Its name starts with ``standin-`` and must be logged next to every figure:
stand-in FIDs rank models on the same data but are not on Kaggle's scale.

No kedro or mlflow imports.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception as tv_inception
from tqdm.auto import tqdm

from podium.core.checkpoints import atomic_path
from podium.core.config import ParameterError

if TYPE_CHECKING:
    from torchmetrics.image.fid import FrechetInceptionDistance

__all__ = [
    "COSINE_DISTANCE_EPS",
    "FEATURE_DIM",
    "FID_EPSILON",
    "FID_WEIGHTS_FILE",
    "FID_WEIGHTS_URL",
    "INCEPTION_SIZE",
    "FeatureExtractor",
    "FeatureRows",
    "InceptionFeatures",
    "WeightsSource",
    "as_chw",
    "build_inception_extractor",
    "extract_features",
    "fetch_weights",
    "fid_from_features",
    "fid_metric",
    "memorization_distance",
    "mifid",
    "resolve_inception_weights",
]

logger = logging.getLogger(__name__)

#: Kaggle's threshold: a mean minimum cosine distance below it counts as memorisation.
COSINE_DISTANCE_EPS = 0.1
#: Kaggle's guard against dividing by a zero distance.
FID_EPSILON = 1e-14
#: Inception-v3's input side; images are resized to it bilinearly, as pytorch-fid does.
INCEPTION_SIZE = 299
#: Width of Inception-v3's pool3 features.
FEATURE_DIM = 2048
#: Where pytorch-fid downloads the FID Inception weights from, and the file it caches
#: (``torch.hub``'s checkpoints folder for pytorch-fid; podium's own folder here).
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
#: Seconds a fetch waits for the server before podium decides it is offline.
FETCH_TIMEOUT_S = 30.0
#: torch.hub's convention: the sha256 prefix in a weights file's name (``-6726825d.``).
_HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")
#: Classes of the FID Inception (the 2015 TF graph) and of torchvision's ImageNet weights.
_FID_CLASSES, _TORCHVISION_CLASSES = 1008, 1000


# ------------------------------------------------------------------------------- FID


class FeatureRows(nn.Module):
    """Feature rows that are already computed, as torchmetrics' ``feature=`` module: the
    rows pass through as float64 (for :func:`fid_from_features`)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.double()


def fid_from_features(generated: np.ndarray, reference: np.ndarray) -> float:
    """FID between two feature sets (rows are images), by torchmetrics."""
    generated = torch.as_tensor(np.asarray(generated, dtype=np.float64))
    reference = torch.as_tensor(np.asarray(reference, dtype=np.float64))
    for rows in (generated, reference):
        if rows.ndim != 2 or len(rows) < 2:
            raise ValueError(
                f"need at least two feature rows (n, d), got shape {tuple(rows.shape)}"
            )
    if generated.shape[1] != reference.shape[1]:
        raise ValueError(f"features differ in width: {generated.shape[1]} vs {reference.shape[1]}")
    metric = _frechet(FeatureRows(generated.shape[1]))
    metric.update(reference, real=True)
    metric.update(generated, real=False)
    return _fid_value(metric)


def fid_metric(
    extractor: FeatureExtractor,
    image_size: int = INCEPTION_SIZE,
    device: torch.device | str = "cpu",
) -> FrechetInceptionDistance:
    """torchmetrics' FID on ``device`` with podium's extractor as its ``feature=`` module:
    ``update(images, real=...)`` takes uint8 (n, 3, H, W) batches (real: the reference)."""
    return _frechet(InceptionFeatures(extractor, image_size)).to(device)


def _frechet(feature: nn.Module) -> FrechetInceptionDistance:
    from torchmetrics.image.fid import FrechetInceptionDistance  # a second to import

    return FrechetInceptionDistance(feature=feature, normalize=False)


def _fid_value(metric: FrechetInceptionDistance) -> float:
    """The metric's FID as a float (rounding can dip a hair below zero for identical sets)."""
    return max(float(metric.compute()), 0.0)


# ----------------------------------------------------------------------------- MiFID


def _unit_rows(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    features = features[features.sum(axis=1) != 0]  # as Kaggle: all-zero rows carry no angle
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.nan_to_num(features / norms)


def memorization_distance(
    generated: np.ndarray,
    training: np.ndarray,
    *,
    center: bool = False,
    chunk_size: int = 1024,
) -> float:
    """Mean over generated images of the smallest cosine distance ``1 - |cos|`` to any
    training image (Kaggle's ``cosine_distance``); near 0 when images copy the training set.

    ``center``: subtract the training features' mean from both sides first. Not Kaggle's
    definition; meant for the stand-in extractor, whose random-network features all share one
    dominant direction (distinct images sit ~0.003 apart uncentred, ~0.1-0.2 centred, near
    Inception's own scale), so that the 0.1 threshold still separates copies from the rest.
    """
    generated = np.asarray(generated, dtype=np.float64)
    training = np.asarray(training, dtype=np.float64)
    if center:
        mean = training.mean(axis=0)
        generated, training = generated - mean, training - mean
    gen, train = _unit_rows(generated), _unit_rows(training)
    if not len(gen) or not len(train):
        raise ValueError("memorization_distance needs non-zero features on both sides")
    minima = [
        (1.0 - np.abs(gen[start : start + chunk_size] @ train.T)).min(axis=1)
        for start in range(0, len(gen), chunk_size)
    ]
    return float(np.concatenate(minima).mean())


def mifid(
    fid: float,
    distance: float,
    cosine_distance_eps: float = COSINE_DISTANCE_EPS,
    fid_epsilon: float = FID_EPSILON,
) -> tuple[float, float]:
    """``(MiFID, thresholded distance)``: ``FID / (d_thr + fid_epsilon)`` where ``d_thr`` is
    ``distance`` if it is below ``cosine_distance_eps`` (memorisation), else 1 (no penalty)."""
    thresholded = distance if distance < cosine_distance_eps else 1.0
    return float(fid / (thresholded + fid_epsilon)), float(thresholded)


# ------------------------------------------------------------------- Inception features


class _FIDInceptionA(tv_inception.InceptionA):
    """The TF graph's block: average pooling ignores the zero padding."""

    def _forward(self, x):
        branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return [
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(branch_pool),
        ]


class _FIDInceptionC(tv_inception.InceptionC):
    def _forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            d = layer(d)
        pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return [self.branch1x1(x), b7, d, self.branch_pool(pool)]


class _FIDInceptionE(tv_inception.InceptionE):
    """``max_pool``: the last block of the TF graph pools with max, the one before with avg."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__(in_channels)
        self._max_pool = max_pool

    def _forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self._max_pool:
            pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
        return [self.branch1x1(x), b3, d, self.branch_pool(pool)]


def _inception(num_classes: int, fid_blocks: bool) -> tv_inception.Inception3:
    model = tv_inception.Inception3(
        num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=False
    )
    if fid_blocks:
        model.Mixed_5b = _FIDInceptionA(192, pool_features=32)
        model.Mixed_5c = _FIDInceptionA(256, pool_features=64)
        model.Mixed_5d = _FIDInceptionA(288, pool_features=64)
        model.Mixed_6b = _FIDInceptionC(768, channels_7x7=128)
        model.Mixed_6c = _FIDInceptionC(768, channels_7x7=160)
        model.Mixed_6d = _FIDInceptionC(768, channels_7x7=160)
        model.Mixed_6e = _FIDInceptionC(768, channels_7x7=192)
        model.Mixed_7b = _FIDInceptionE(1280, max_pool=False)
        model.Mixed_7c = _FIDInceptionE(2048, max_pool=True)
    return model


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _standin_init(model: nn.Module, seed: int) -> None:
    """He-normal convolutions from a private generator: the global RNG is left untouched and
    the stand-in is the same network in every run, whatever the run's seed."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)


@dataclass
class FeatureExtractor:
    """A pool3 feature network and the name to log next to every figure computed with it."""

    model: nn.Module
    name: str

    @property
    def is_standin(self) -> bool:
        return self.name.startswith("standin-")


def build_inception_extractor(
    weights_path: str | os.PathLike | None,
    standin_seed: int = 0,
    *,
    parameter: str = "inception_weights",
) -> FeatureExtractor:
    """Inception-v3 up to pool3 (2048-d), from local weights when ``weights_path`` is a file.

    The weights' kind is read from their classifier: 1008 classes are the FID Inception
    (built with its own pooling blocks), 1000 are torchvision's ImageNet ``inception_v3``.
    ``weights_path`` empty or missing: the seeded stand-in, named
    ``standin-random-inception_v3-seed<N>``.
    """
    if weights_path and Path(weights_path).is_file():
        path = Path(weights_path)
        state = _load_weights(path)
        classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else -1
        if classes not in (_FID_CLASSES, _TORCHVISION_CLASSES):
            raise ParameterError(
                parameter,
                f"{path} is not an Inception-v3 state dict with a {_FID_CLASSES}-class (FID "
                f"Inception) or {_TORCHVISION_CLASSES}-class (torchvision) classifier",
            )
        fid_blocks = classes == _FID_CLASSES
        model = _inception(classes, fid_blocks)
        state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
        model.load_state_dict(state)
        kind = "fid_inception" if fid_blocks else "torchvision_inception_v3"
        name = f"{kind}:{path.name}"
    else:
        model = _inception(_TORCHVISION_CLASSES, fid_blocks=False)
        _standin_init(model, standin_seed)
        name = f"standin-random-inception_v3-seed{standin_seed}"
    model.fc = nn.Identity()  # pool3 -> flatten -> (dropout, inactive in eval) -> identity
    return FeatureExtractor(model.eval(), name)


class InceptionFeatures(nn.Module):
    """podium's pool3 extractor as torchmetrics' ``feature=`` module: uint8 (n, 3, H, W)
    images -> float64 (n, 2048) features.

    Images are scaled to [-1, 1] and resized bilinearly to ``image_size``, the input both
    the FID Inception and torchvision's Inception weights (ported from TF) expect. A batch
    is laid out as decoded images are (contiguous (n, H, W, 3)) before it is converted: the
    network's kernels, and so the last bits of the features, depend on the memory layout of
    their input, and this way every caller gets the same bits.
    """

    num_features = FEATURE_DIM

    def __init__(self, extractor: FeatureExtractor | nn.Module, image_size: int = INCEPTION_SIZE):
        super().__init__()
        model = extractor.model if isinstance(extractor, FeatureExtractor) else extractor
        self.model = model.eval()
        self.image_size = int(image_size)

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Stays in eval mode (torchmetrics' own Inception does the same)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        decoded = images.permute(0, 2, 3, 1).contiguous()  # (n, H, W, 3), as decoded
        x = decoded.to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        return self.model(x).double()


def as_chw(images: Sequence[np.ndarray] | np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (n, H, W, 3) images (arrays or a tensor) -> a uint8 (n, 3, H, W) tensor view."""
    if isinstance(images, torch.Tensor):
        batch = images
    else:
        batch = torch.from_numpy(np.stack([np.asarray(im) for im in images]))
    return batch.permute(0, 3, 1, 2)


def extract_features(
    extractor: FeatureExtractor | nn.Module,
    images: Sequence[np.ndarray] | np.ndarray,
    *,
    batch_size: int = 32,
    image_size: int = INCEPTION_SIZE,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """``(n, 2048)`` float64 pool3 features of uint8 RGB images (H, W, 3) of any one size,
    computed by :class:`InceptionFeatures` (the module FID's metric runs)."""
    features = InceptionFeatures(extractor, image_size).to(device)
    out = []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="inception features", disable=not progress, leave=False):
        out.append(features(as_chw(images[start : start + batch_size])).cpu().numpy())
    if not out:
        raise ValueError("extract_features got no images")
    return np.concatenate(out)


# ------------------------------------------------------------------ the FID weights


@dataclass(frozen=True)
class WeightsSource:
    """Where the Inception weights come from: ``path`` the local file to load (None: the
    stand-in) and ``description``, logged as the run's ``fid_weights`` tag: ``cached:
    <path>``, ``fetched: <url>`` or ``offline: <why>``."""

    path: Path | None
    description: str

    @property
    def offline(self) -> bool:
        return self.path is None


def fetch_weights(url: str, path: str | os.PathLike, *, timeout: float = FETCH_TIMEOUT_S) -> Path:
    """Download ``url`` to ``path`` (a temporary file renamed once complete). Where the
    URL's file name carries a sha256 prefix (torch.hub's ``name-<hex>.ext``, as pytorch-fid's
    ``pt_inception-2015-12-05-6726825d.pth``) the download must match it, else ValueError
    and nothing is written. Network failures raise OSError (``urllib.error.URLError``)."""
    path = Path(path)
    match = _HASH_IN_NAME.search(url.rsplit("/", 1)[-1])
    prefix = match.group(1) if match else ""
    digest = hashlib.sha256()
    with atomic_path(path) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if prefix and not digest.hexdigest().startswith(prefix):
            raise ValueError(
                f"{url}: the download's sha256 {digest.hexdigest()[:16]}... does not start "
                f"with {prefix}, the prefix in its name"
            )
    return path


def resolve_inception_weights(
    path: str | os.PathLike | None,
    url: str | None = FID_WEIGHTS_URL,
    *,
    timeout: float = FETCH_TIMEOUT_S,
) -> WeightsSource:
    """The Inception weights to use: the local file at ``path`` when it exists (the cache,
    fetched once), else ``url`` fetched into ``path`` when the network is reachable, else
    none (the seeded stand-in), saying why. Nothing is fetched when ``path`` or ``url`` is
    empty."""
    if path and Path(path).is_file():
        return WeightsSource(Path(path), f"cached: {path}")
    if not path:
        return WeightsSource(None, "offline: no inception_weights file to cache the weights in")
    if not url:
        return WeightsSource(None, f"offline: {path} absent and no inception_weights_url")
    logger.info("FID: fetching the Inception weights from %s into %s", url, path)
    try:
        fetch_weights(url, path, timeout=timeout)
    except (OSError, ValueError) as error:  # URLError, timeouts, refused: offline
        reason = str(getattr(error, "reason", None) or error)
        logger.warning(
            "FID: could not fetch %s (%s); scoring with the seeded stand-in extractor, whose "
            "figures are not Kaggle's",
            url,
            reason,
        )
        return WeightsSource(None, f"offline: {url} unreachable ({reason})")
    return WeightsSource(Path(path), f"fetched: {url}")
