"""FID and Kaggle's MiFID, and the Inception-v3 pool features they are computed on.

FID (Heusel et al. 2017) is the Frechet distance between two Gaussians fitted to feature
vectors: ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrt(S1 S2))``. MiFID (Kaggle's "memorisation
informed" FID, used by "I'm Something of a Painter Myself" and "Generative Dog Images")
divides it by a memorisation distance: the mean, over generated images, of the smallest
cosine distance ``1 - |cos|`` to any training image, kept when it is below
``cosine_distance_eps`` (0.1) and replaced by 1 otherwise; so only near-copies of the
training set are penalised. This module follows Kaggle's published evaluator
(``MiFIDEvaluator``): zero-sum feature rows are left out of the distance, and the
division adds ``fid_epsilon`` (1e-14).

Features: Inception-v3's 2048-d pool3 output. With the FID Inception weights
(``pt_inception-2015-12-05-*.pth``, the TF graph ported by pytorch-fid, whose blocks pool
slightly differently) or torchvision's ImageNet ``inception_v3`` state dict at a local path,
the figures are comparable to published ones (pt_inception: to Kaggle's). Without weights a
**stand-in** is used: the same architecture, randomly initialised from a fixed seed
(He-normal convolutions, so activations neither explode nor vanish). Its name starts with
``standin-`` and must be logged next to every figure: stand-in FIDs rank models on the same
data but are not on Kaggle's scale.

No kedro or mlflow imports.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import nn
from torchvision.models import inception as tv_inception
from tqdm.auto import tqdm

from podium.core.config import ParameterError, check_choice

__all__ = [
    "COSINE_DISTANCE_EPS",
    "FID_EPSILON",
    "FID_METHODS",
    "INCEPTION_SIZE",
    "FeatureExtractor",
    "build_inception_extractor",
    "extract_features",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "memorization_distance",
    "mifid",
]

#: Kaggle's threshold: a mean minimum cosine distance below it counts as memorisation.
COSINE_DISTANCE_EPS = 0.1
#: Kaggle's guard against dividing by a zero distance.
FID_EPSILON = 1e-14
#: Inception-v3's input side; images are resized to it bilinearly, as pytorch-fid does.
INCEPTION_SIZE = 299
#: Added to the covariance diagonals when sqrt(S1 S2) is singular (pytorch-fid's value).
SQRTM_OFFSET = 1e-6
#: Largest imaginary part of sqrt(S1 S2)'s diagonal still treated as rounding error.
MAX_IMAGINARY = 1e-3
#: ``sqrtm``: scipy's matrix square root (Kaggle's evaluator, O(d^3)); ``nuclear``: the same
#: trace from the singular values of the centred cross-product, exact and O(n1 n2 d).
FID_METHODS = ("sqrtm", "nuclear")
#: Classes of the FID Inception (the 2015 TF graph) and of torchvision's ImageNet weights.
_FID_CLASSES, _TORCHVISION_CLASSES = 1008, 1000


# ------------------------------------------------------------------------------- FID


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``(n, d)`` features, in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least two feature rows (n, d), got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    result = linalg.sqrtm(matrix)
    return result[0] if isinstance(result, tuple) else result  # scipy < 1.16 gave (root, err)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), via ``scipy.linalg.sqrtm``.

    The usual fixes: a singular product is retried with ``SQRTM_OFFSET`` on both diagonals,
    and rounding's small imaginary part is dropped (a large one is an error).
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in shape: {mu1.shape} vs {mu2.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular: handled below
        covmean = _sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(sigma1)) * SQRTM_OFFSET
            covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imaginary = np.abs(np.diagonal(covmean).imag).max()
        if imaginary > MAX_IMAGINARY:
            raise ValueError(f"sqrt(S1 S2) has an imaginary component of {imaginary:.3g}")
        covmean = covmean.real
    diff = mu1 - mu2
    fid = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return max(float(fid), 0.0)  # rounding can dip a hair below zero for identical sets


def _trace_sqrt_product(features1: np.ndarray, features2: np.ndarray) -> float:
    """Tr sqrt(S1 S2) without a d x d root: with S = X'X/(n-1) for centred X, the nonzero
    eigenvalues of S1 S2 are the squared singular values of X1 X2' / sqrt((n1-1)(n2-1))."""
    x1 = features1 - features1.mean(axis=0)
    x2 = features2 - features2.mean(axis=0)
    cross = (x1 @ x2.T) / np.sqrt((len(x1) - 1) * (len(x2) - 1))
    return float(np.linalg.svd(cross, compute_uv=False).sum())


def fid_from_features(
    features1: np.ndarray,
    features2: np.ndarray,
    method: str = "sqrtm",
    *,
    parameter: str = "method",
) -> float:
    """FID between two feature sets (rows are images); ``method`` is one of ``FID_METHODS``."""
    check_choice(parameter, method, FID_METHODS)
    f1 = np.asarray(features1, dtype=np.float64)
    f2 = np.asarray(features2, dtype=np.float64)
    mu1, sigma1 = feature_statistics(f1)
    mu2, sigma2 = feature_statistics(f2)
    if method == "sqrtm":
        return frechet_distance(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    fid = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * _trace_sqrt_product(f1, f2)
    return max(float(fid), 0.0)


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


@torch.no_grad()
def extract_features(
    extractor: FeatureExtractor | nn.Module,
    images: Sequence[np.ndarray] | np.ndarray,
    *,
    batch_size: int = 32,
    image_size: int = INCEPTION_SIZE,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """``(n, 2048)`` float64 pool3 features of uint8 RGB images (H, W, 3) of any one size.

    Images are scaled to [-1, 1] and resized bilinearly to ``image_size``, the input both the
    FID Inception and torchvision's Inception weights (ported from TF) expect.
    """
    model = extractor.model if isinstance(extractor, FeatureExtractor) else extractor
    model = model.to(device).eval()
    out = []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="inception features", disable=not progress, leave=False):
        batch = np.stack([np.asarray(im) for im in images[start : start + batch_size]])
        x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if x.shape[-2:] != (image_size, image_size):
            x = F.interpolate(
                x, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
        out.append(model(x).double().cpu().numpy())
    if not out:
        raise ValueError("extract_features got no images")
    return np.concatenate(out)
