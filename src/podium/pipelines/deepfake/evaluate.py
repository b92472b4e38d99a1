"""Video-level metrics and the figures of the deepfake pipeline.

DFDC scored submissions by binary log loss with clipped probabilities; ``eps`` (the clip
margin) is a parameter. AUC needs both classes: when the evaluated videos hold only one,
:func:`video_metrics` leaves the ``auc`` key out (rather than writing NaN) and sets
``auc_defined`` to 0.0, so metric logging never receives a NaN.

Figures are ``matplotlib.figure.Figure`` objects on an Agg canvas (no pyplot).
No kedro or mlflow imports.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

from podium.core.config import check_range
from podium.core.plots import image_grid_figure
from podium.pipelines.deepfake.scoring import binary_log_loss

__all__ = [
    "FAMILY_COLUMNS",
    "HELD_OUT",
    "IN_DISTRIBUTION",
    "constant_log_loss",
    "constant_prior_log_loss",
    "face_grid_figure",
    "family_metrics",
    "overlay_mask",
    "per_folder_log_loss",
    "roc_figure",
    "video_metrics",
]

_SECTION = "deepfake.evaluation"


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y, dtype=np.float64)
    p_arr = np.asarray(p, dtype=np.float64)
    if y_arr.shape != p_arr.shape or y_arr.ndim != 1:
        raise ValueError(f"y {y_arr.shape} and p {p_arr.shape} must be equal 1-D shapes")
    if np.isnan(p_arr).any():
        raise ValueError("probabilities contain NaN")
    return y_arr, p_arr


def video_metrics(
    y: Sequence[int] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    eps: float,
    threshold: float = 0.5,
) -> dict[str, float]:
    """``log_loss`` (clipped to ``[eps, 1 - eps]``), ``accuracy`` at ``threshold`` (p >
    threshold = FAKE), ``auc`` (only when both classes are present), ``auc_defined``
    (1.0 / 0.0), ``n_videos`` and ``fake_share``. Every value is a finite float."""
    check_range(f"{_SECTION}.eps", eps, low=0.0, high=0.5)
    y_arr, p_arr = _arrays(y, p)
    out = {
        "log_loss": binary_log_loss(y_arr, p_arr, eps),
        "accuracy": float(np.mean((p_arr > threshold) == (y_arr == 1))),
        "n_videos": float(len(y_arr)),
        "fake_share": float(y_arr.mean()),
    }
    both = len(np.unique(y_arr)) == 2
    if both:
        out["auc"] = float(roc_auc_score(y_arr, p_arr))
    out["auc_defined"] = 1.0 if both else 0.0
    return out


def per_folder_log_loss(
    df: pd.DataFrame,
    eps: float,
    folder_col: str = "folder",
    target_col: str = "target",
    prob_col: str = "prob",
) -> pd.DataFrame:
    """Log loss per part folder: columns ``folder``, ``n_videos``, ``fake_share``,
    ``log_loss``, sorted by folder name. A folder far above the others hints at a shift."""
    missing = {folder_col, target_col, prob_col} - set(df.columns)
    if missing:
        raise ValueError(f"table lacks column(s) {sorted(missing)}")
    rows = []
    for folder, part in df.groupby(folder_col, sort=True):
        rows.append(
            {
                "folder": folder,
                "n_videos": len(part),
                "fake_share": float(part[target_col].mean()),
                "log_loss": binary_log_loss(
                    part[target_col].to_numpy(), part[prob_col].to_numpy(), eps
                ),
            }
        )
    return pd.DataFrame(rows, columns=["folder", "n_videos", "fake_share", "log_loss"])


def constant_log_loss(y: Sequence[int] | np.ndarray, p: float, eps: float) -> float:
    """Log loss on ``y`` of answering ``p`` for every video."""
    y_arr = np.asarray(y, dtype=np.float64)
    return binary_log_loss(y_arr, np.full(len(y_arr), float(p)), eps)


def constant_prior_log_loss(
    y_train: Sequence[int] | np.ndarray, y_eval: Sequence[int] | np.ndarray, eps: float
) -> float:
    """Log loss on ``y_eval`` of always answering the training FAKE share: the bar a model
    must beat (a model worse than this has learned nothing useful)."""
    y_tr = np.asarray(y_train, dtype=np.float64)
    if len(y_tr) == 0:
        raise ValueError("no training labels")
    return constant_log_loss(y_eval, y_tr.mean(), eps)


#: The columns of :func:`family_metrics`' table.
FAMILY_COLUMNS = [
    "family",
    "held_out",
    "n_reals",
    "n_fakes",
    "auc",
    "log_loss",
    "prior_log_loss",
]
#: The table's row of every video not held out.
IN_DISTRIBUTION = "in_distribution"
#: The table's row of every REAL video against the held-out families' fakes, pooled.
HELD_OUT = "held_out"


def _family_row(
    name: str, held: bool, reals: pd.DataFrame, fakes: pd.DataFrame, prior: float, eps: float
) -> dict:
    y = np.concatenate([np.zeros(len(reals)), np.ones(len(fakes))])
    p = np.concatenate([reals["prob"].to_numpy(np.float64), fakes["prob"].to_numpy(np.float64)])
    scored = video_metrics(y, p, eps) if len(y) else {}
    return {
        "family": name,
        "held_out": held,
        "n_reals": len(reals),
        "n_fakes": len(fakes),
        "auc": scored.get("auc", np.nan),
        "log_loss": scored.get("log_loss", np.nan),
        "prior_log_loss": constant_log_loss(y, prior, eps) if len(y) else np.nan,
    }


def family_metrics(
    scored: pd.DataFrame,
    eps: float,
    held_out: Sequence[str] = (),
    families: Sequence[str] = (),
) -> pd.DataFrame:
    """Per manipulation family, {every REAL video} against {that family's fakes}: counts,
    AUC and log loss of ``prob``, and the log loss of the constant prior (the FAKE share of
    the videos not held out, which the calibration was fitted on); then one row
    ``in_distribution`` (every video not held out) and, when families are ``held_out``, one
    row ``held_out`` pooling their fakes. The held-out families' rows are marked and left
    out of ``in_distribution``.

    ``scored``: one row per video with ``target`` (0/1), ``prob`` and ``family`` (a FAKE's
    manipulation family; a FAKE without one counts only in ``in_distribution``). Rows in the
    order of ``families``, then any other family by name. AUC is NaN where a side is empty."""
    missing = {"target", "prob", "family"} - set(scored.columns)
    if missing:
        raise ValueError(f"table lacks column(s) {sorted(missing)}")
    target = scored["target"].astype(int)
    reals, fakes = scored[target == 0], scored[target == 1]
    held = set(held_out)
    seen = set(fakes["family"].dropna()) | held
    order = [f for f in families if f in seen] + sorted(seen - set(families))
    unseen = fakes["family"].isin(held)
    kept = fakes[~unseen]
    trained_on = len(reals) + len(kept)
    prior = len(kept) / trained_on if trained_on else 0.5
    rows = [
        _family_row(f, f in held, reals, fakes[fakes["family"] == f], prior, eps) for f in order
    ]
    rows.append(_family_row(IN_DISTRIBUTION, False, reals, kept, prior, eps))
    if held:
        rows.append(_family_row(HELD_OUT, True, reals, fakes[unseen], prior, eps))
    return pd.DataFrame(rows, columns=FAMILY_COLUMNS)


def roc_figure(
    y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray, title: str = "ROC"
) -> Figure:
    """ROC curve with the chance diagonal; the title carries the AUC (or says it is undefined
    when only one class is present, and draws the diagonal alone)."""
    y_arr, p_arr = _arrays(y, p)
    fig = Figure(figsize=(4.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    if len(np.unique(y_arr)) == 2:
        fpr, tpr, _ = roc_curve(y_arr, p_arr)
        auc = roc_auc_score(y_arr, p_arr)
        ax.plot(fpr, tpr, color="tab:blue", label="model")
        ax.set_title(f"{title} (AUC {auc:.3f})")
    else:
        ax.set_title(f"{title} (AUC undefined: one class)")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="false positive rate", ylabel="true positive rate")
    ax.legend(loc="lower right")
    return fig


def overlay_mask(
    crop: np.ndarray, mask: np.ndarray | None, alpha: float, color=(255, 0, 0)
) -> np.ndarray:
    """``crop`` (HxWx3 uint8) with ``mask`` (HxW in [0, 1] or bool, or None) tinted in
    ``color`` at opacity ``alpha * mask``."""
    image = np.asarray(crop)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 crop, got {image.shape}")
    if mask is None:
        return image.astype(np.uint8)
    m = np.asarray(mask, dtype=np.float64)
    if m.shape != image.shape[:2]:
        raise ValueError(f"mask {m.shape} does not match crop {image.shape[:2]}")
    weight = np.clip(m, 0.0, 1.0)[..., None] * float(alpha)
    tint = np.asarray(color, dtype=np.float64)
    out = image.astype(np.float64) * (1 - weight) + tint * weight
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def face_grid_figure(
    crops: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None,
    scores: Sequence[float],
    titles: Sequence[str] | None = None,
    alpha: float = 0.45,
    ncols: int = 4,
    title: str | None = None,
) -> Figure:
    """Face crops in a grid, each with its manipulation mask tinted red (None: no overlay)
    and ``p=<score>`` under its title."""
    if len(scores) != len(crops) or (masks is not None and len(masks) != len(crops)):
        raise ValueError(f"{len(crops)} crops need as many scores and masks")
    check_range(f"{_SECTION}.mask_alpha", alpha, low=0.0, high=1.0)
    images = [
        overlay_mask(c, None if masks is None else masks[i], alpha) for i, c in enumerate(crops)
    ]
    names = [""] * len(crops) if titles is None else [str(t) for t in titles]
    labels = [f"{n}\np={s:.2f}" if n else f"p={s:.2f}" for n, s in zip(names, scores, strict=True)]
    return image_grid_figure(images, labels, ncols=ncols, title=title)
