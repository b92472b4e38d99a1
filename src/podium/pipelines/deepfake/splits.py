"""Validation folds for DFDC videos, and the diagnostics that show how honest they are.

Every strategy keeps a FAKE in the same fold as the REAL original it was made from (a
*family*: the original and all its fakes share the background, body and camera noise, so
splitting them would leak the answer). Strategies differ in what else stays together:

* ``folder``: DFDC part folders are the groups (a family takes its original's folder).
  Actors mostly film within one folder, so this removes most person leaks.
* ``person_cluster``: groups are clusters of face embeddings (see :mod:`.embeddings`), a
  stand-in for actor ids, which DFDC does not publish. A family takes its original's cluster.
* ``original``: families are the groups (StratifiedGroupKFold balances REAL/FAKE).
* ``random``: families are shuffled with ``seed`` and dealt round-robin into the folds; no
  stratification, no balancing beyond the deal: the "plain random split" baseline.

:func:`leakage` and :func:`cluster_purity` measure, with ground-truth actor ids (the
sample's ``_truth.json``; diagnostics only), how often a validation person was also seen in
training and how well the clusters recover the people.

No kedro or mlflow imports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.cluster import DBSCAN, KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from podium.core.config import ParameterError, check_range
from podium.core.splits import assign_folds, check_group_disjoint
from podium.pipelines.deepfake.params import PersonClusterParams, SplitParams

__all__ = [
    "CLUSTER_METHODS",
    "STRATEGIES",
    "assign_video_folds",
    "cluster_people",
    "cluster_purity",
    "families",
    "leakage",
]

#: Split strategies of :func:`assign_video_folds`.
STRATEGIES = ("folder", "person_cluster", "original", "random")
#: Clustering methods of :func:`cluster_people`.
CLUSTER_METHODS = ("kmeans", "tsne_dbscan")

_SPLIT = "deepfake.split"
_CLUSTER = "deepfake.person_cluster"


def families(videos: pd.DataFrame) -> pd.Series:
    """Family key per video: the original's name for a FAKE, the video's own name for a REAL."""
    missing = {"video", "original"} - set(videos.columns)
    if missing:
        raise ValueError(f"videos table lacks column(s) {sorted(missing)} (see index_deepfake)")
    original = videos["original"]
    has_original = original.notna() & (original.astype(str) != "")
    key = videos["video"].astype(str).where(~has_original, original.astype(str))
    return key.rename("family")


def _family_labels(videos: pd.DataFrame, family: pd.Series, labels: pd.Series) -> pd.Series:
    """Spread one label per family: the original's label when it is in the table, else the
    most common label among the family's members (ties: the smallest), else the family."""
    names = videos["video"].astype(str)
    by_video = dict(zip(names, labels, strict=True))
    out = {}
    for fam, members in labels.groupby(family.to_numpy(), sort=False):
        counts = members.value_counts()  # NaN (no label) is not counted
        if fam in by_video and pd.notna(by_video[fam]):
            out[fam] = by_video[fam]
        elif len(counts):
            out[fam] = sorted(counts.index[counts == counts.max()], key=str)[0]
        else:  # nobody in the family has a label: the family is its own group
            out[fam] = f"family:{fam}"
    return family.map(out)


def _person_labels(videos: pd.DataFrame, person_clusters) -> pd.Series:
    if person_clusters is None:
        raise ParameterError(
            f"{_SPLIT}.strategy",
            "'person_cluster' needs person clusters (one label per video, from cluster_people), "
            "but none were given; compute them or choose folder, original or random",
        )
    mapping = (
        person_clusters.to_dict()
        if isinstance(person_clusters, pd.Series)
        else dict(person_clusters)
        if isinstance(person_clusters, Mapping)
        else None
    )
    names = videos["video"].astype(str)
    if mapping is None:  # a plain sequence aligned with the rows
        values = list(person_clusters)
        if len(values) != len(videos):
            raise ValueError(f"{len(values)} person clusters for {len(videos)} videos")
        return pd.Series(values, index=videos.index)
    labels = names.map(mapping)
    # only originals need a cluster (fakes follow them); a FAKE whose original has none
    # and which has none itself cannot be placed
    is_real = videos["original"].isna() | (videos["original"].astype(str) == "")
    lacking = names[labels.isna() & is_real]
    if len(lacking):
        shown = ", ".join(lacking.head(5))
        raise ValueError(
            f"person_clusters has no cluster for {len(lacking)} REAL video(s) (e.g. {shown}); "
            "embed and cluster every original"
        )
    return labels


def assign_video_folds(
    videos: pd.DataFrame,
    strategy: str,
    n_folds: int,
    seed: int,
    person_clusters: pd.Series | Mapping | Sequence | None = None,
) -> pd.Series:
    """Fold (0..n_folds-1) per video, as a Series named ``fold`` on ``videos``' index.

    ``videos`` has at least ``video``, ``original`` and ``target`` (and ``folder`` for the
    folder strategy), as :func:`podium.layouts.deepfake.index_deepfake` returns. ``person_clusters``
    (person_cluster only) maps video name -> cluster label (a Series or dict; REAL videos
    need one, FAKEs follow their original) or is a sequence aligned with the rows.
    Whatever the strategy, a FAKE and its original share a fold (checked before returning).
    """
    n_folds = int(n_folds) if isinstance(n_folds, np.integer) else n_folds
    SplitParams.model_validate({"strategy": strategy, "n_folds": n_folds})
    if len(videos) == 0:
        raise ValueError("no videos to split")
    family = families(videos)
    target = videos["target"].to_numpy()
    parameter = f"{_SPLIT}.n_folds"
    if strategy == "random":
        keys = pd.unique(family.to_numpy())
        rng = np.random.default_rng(seed)
        if len(keys) < n_folds:
            raise ParameterError(
                parameter,
                f"{n_folds} folds need at least {n_folds} families (an original and its fakes), "
                f"but there are only {len(keys)}; lower it or add data",
            )
        order = rng.permutation(len(keys))
        fold_of = {keys[j]: i % n_folds for i, j in enumerate(order)}
        folds = family.map(fold_of).to_numpy(dtype=np.int64)
    else:
        if strategy == "original":
            groups = family
        elif strategy == "folder":
            if "folder" not in videos.columns:
                raise ValueError("the folder strategy needs a 'folder' column")
            groups = _family_labels(videos, family, videos["folder"].astype(str))
        else:
            labels = _person_labels(videos, person_clusters).astype(object)
            groups = _family_labels(videos, family, labels).astype(str)
        folds = assign_folds(
            target, groups.to_numpy(), n_folds, seed, stratified=True, parameter=parameter
        )
    check_group_disjoint(folds, family.to_numpy())
    return pd.Series(folds, index=videos.index, name="fold", dtype="int64")


# ---------------------------------------------------------------------------- clustering


def cluster_people(
    video_embeddings: np.ndarray | pd.DataFrame,
    method: str,
    seed: int,
    n_clusters: int | None = None,
    eps: float | None = None,
    min_samples: int | None = None,
    pca_components: int | None = None,
    perplexity: float | None = None,
) -> np.ndarray:
    """Cluster label (0..k-1) per row of ``video_embeddings`` (one embedding per video).

    ``kmeans``: KMeans with ``n_clusters`` (n_init 10, ``seed``).
    ``tsne_dbscan``: PCA to ``pca_components`` (capped by the data), t-SNE to 2-D with
    ``perplexity`` (capped below the row count), coordinates divided by their overall
    standard deviation so that ``eps`` is in units of the map's spread, then DBSCAN with
    ``eps`` and ``min_samples``. DBSCAN's noise points each become a singleton cluster:
    no video is dropped.
    """
    PersonClusterParams.model_validate(
        {
            "method": method,
            "n_clusters": int(n_clusters) if isinstance(n_clusters, np.integer) else n_clusters,
            "eps": eps,
            "min_samples": min_samples,
            "pca_components": pca_components,
            "perplexity": perplexity,
        }
    )
    x = np.asarray(video_embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected (n_videos, dim) embeddings, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("video embeddings contain NaN or inf")
    n = len(x)
    if method == "kmeans":
        check_range(f"{_CLUSTER}.n_clusters", int(n_clusters), low=1, high=n)
        model = KMeans(n_clusters=int(n_clusters), n_init=10, random_state=seed)
        return model.fit_predict(x).astype(np.int64)
    if n < 3:  # t-SNE needs a few points; so few videos are one cluster each
        return np.arange(n, dtype=np.int64)
    k = int(min(pca_components, n, x.shape[1]))
    reduced = PCA(n_components=k, random_state=seed).fit_transform(x)
    perp = float(min(perplexity, (n - 1) / 3))
    mapped = TSNE(
        n_components=2, perplexity=perp, init="pca", random_state=seed, max_iter=500
    ).fit_transform(reduced)
    spread = mapped.std()
    mapped = mapped / (spread if spread > 0 else 1.0)
    labels = DBSCAN(eps=float(eps), min_samples=int(min_samples)).fit_predict(mapped)
    labels = labels.astype(np.int64)
    noise = labels < 0
    start = labels.max() + 1 if (~noise).any() else 0
    labels[noise] = start + np.arange(int(noise.sum()))
    return labels


# ---------------------------------------------------------------------------- diagnostics


def leakage(
    videos: pd.DataFrame,
    folds: Sequence[int] | np.ndarray | pd.Series,
    actor_of_video: Mapping[str, str] | pd.Series,
) -> dict:
    """Person leakage of a split: per fold, the share of its validation videos whose actor
    also appears among that fold's training videos; ``mean`` and ``max`` over folds.

    ``actor_of_video`` maps video name -> actor id (for a FAKE, the actor whose body and
    background it shows, the original's actor). Ground truth, for diagnostics only.
    Returns ``{"mean", "max", "per_fold": {fold: share}}``.
    """
    fold_arr = np.asarray(folds)
    if len(fold_arr) != len(videos):
        raise ValueError(f"{len(fold_arr)} folds for {len(videos)} videos")
    mapping = dict(actor_of_video)
    names = videos["video"].astype(str).tolist()
    unknown = [v for v in names if v not in mapping]
    if unknown:
        raise ValueError(f"no actor for {len(unknown)} video(s), e.g. {unknown[:5]}")
    actors = np.array([mapping[v] for v in names], dtype=object)
    per_fold = {}
    for fold in np.unique(fold_arr):
        valid = fold_arr == fold
        seen = set(actors[~valid])
        per_fold[int(fold)] = float(np.mean([a in seen for a in actors[valid]]))
    shares = list(per_fold.values())
    return {"mean": float(np.mean(shares)), "max": float(np.max(shares)), "per_fold": per_fold}


def cluster_purity(labels: Sequence | np.ndarray, actors: Sequence | np.ndarray) -> float:
    """Share of items whose actor is the most common actor of their cluster (1 = pure).

    Purity does not punish splitting one person over several clusters (singletons are
    pure): read it together with the cluster count, or with :func:`leakage`.
    """
    labels_arr, actors_arr = np.asarray(labels), np.asarray(actors, dtype=object)
    if labels_arr.shape != actors_arr.shape or labels_arr.ndim != 1:
        raise ValueError(f"labels {labels_arr.shape} and actors {actors_arr.shape} differ")
    if len(labels_arr) == 0:
        raise ValueError("no items")
    table = pd.crosstab(labels_arr, actors_arr)
    return float(table.max(axis=1).sum() / len(labels_arr))
