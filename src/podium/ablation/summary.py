"""Statistics of an ablation: per point mean and spread over seeds, and the paired
difference against the baseline point (same seed, so seed noise cancels).

Seeds are few (2-5), so the tests are weak: a paired t-test (assumes normal
differences; with n=2 it has one degree of freedom) and the exact Wilcoxon signed-rank
test (no normality, but two-sided it cannot go below 2/2**n: 0.5 at n=2, 0.0625 at n=5).
The tables say so. Imports neither kedro nor mlflow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
RUN_COLUMNS = ["point", "seed", "run_id", "status", "value"]


def runs_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: point, seed, run_id, status, value (the primary metric), plus
    any other metric columns the records carry."""
    frame = pd.DataFrame(list(records))
    for column in RUN_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=float if column == "value" else object)
    rest = [c for c in frame.columns if c not in RUN_COLUMNS]
    return frame[RUN_COLUMNS + rest].sort_values(["point", "seed"], kind="stable")


def summarize(
    runs: pd.DataFrame, points: Sequence[str], baseline: str, greater_is_better: bool
) -> pd.DataFrame:
    """One row per point (grid order): n, mean, std, min, max of the metric over seeds;
    the paired difference ``point - baseline`` over shared seeds with its tests."""
    finished = runs.dropna(subset=["value"])
    base = finished[finished.point == baseline].set_index("seed")["value"]
    rows = []
    for point in points:
        values = finished[finished.point == point].set_index("seed")["value"]
        rows.append({"point": point, **_spread(values), **_paired(values, base, point == baseline)})
    summary = pd.DataFrame(rows)
    summary["verdict"] = [
        _verdict(row, baseline, greater_is_better) for row in summary.to_dict("records")
    ]
    return summary


def _spread(values: pd.Series) -> dict[str, float]:
    n = len(values)
    return {
        "n": n,
        "mean": float(values.mean()) if n else math.nan,
        "std": float(values.std(ddof=1)) if n > 1 else math.nan,
        "min": float(values.min()) if n else math.nan,
        "max": float(values.max()) if n else math.nan,
    }


def _paired(values: pd.Series, base: pd.Series, is_baseline: bool) -> dict[str, float]:
    shared = sorted(set(values.index) & set(base.index))
    diffs = np.array([values[s] - base[s] for s in shared], dtype=float)
    empty = {"n_pairs": len(shared), "diff_mean": math.nan, "diff_std": math.nan}
    if is_baseline or not len(diffs):
        return {**empty, "t_p": math.nan, "wilcoxon_p": math.nan}
    return {
        "n_pairs": len(diffs),
        "diff_mean": float(diffs.mean()),
        "diff_std": float(diffs.std(ddof=1)) if len(diffs) > 1 else math.nan,
        "t_p": paired_t_p(diffs),
        "wilcoxon_p": wilcoxon_p(diffs),
    }


def paired_t_p(diffs: np.ndarray) -> float:
    """Two-sided p of the paired t-test on ``diffs`` (NaN below two pairs; 1 when every
    difference is zero: nothing changed)."""
    if len(diffs) < 2:
        return math.nan
    if not np.any(diffs):
        return 1.0
    if np.all(diffs == diffs[0]):
        return 0.0  # the same nonzero shift on every seed: no spread left to doubt it
    return float(stats.ttest_1samp(diffs, 0.0).pvalue)


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided exact p of the Wilcoxon signed-rank test (1 when every difference is 0)."""
    nonzero = diffs[diffs != 0]
    if not len(nonzero):
        return 1.0
    return float(stats.wilcoxon(nonzero, method="exact").pvalue)


def _verdict(row: Mapping[str, Any], baseline: str, greater_is_better: bool) -> str:
    if row["point"] == baseline:
        return "baseline"
    diff = row["diff_mean"]
    if row["n_pairs"] == 0 or math.isnan(diff):
        return "no paired runs"
    if diff == 0:
        return "same"
    better = (diff > 0) == greater_is_better
    p = row["t_p"]
    strength = "p<0.05" if not math.isnan(p) and p < ALPHA else "not significant"
    return f"{'better' if better else 'worse'} ({strength})"


def to_markdown(
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    *,
    name: str,
    metric: str,
    greater_is_better: bool,
    baseline: str,
    notes: Sequence[str] = (),
) -> str:
    """The report: the summary table, then every run, then how to read the tests."""
    seeds = sorted(runs.dropna(subset=["value"]).seed.unique().tolist())
    direction = "higher is better" if greater_is_better else "lower is better"
    lines = [
        f"# Ablation `{name}`",
        "",
        f"Metric `{metric}` ({direction}); baseline point `{baseline}`; seeds {seeds}.",
        "",
        "| point | n | mean ± std | Δ vs baseline (paired, mean ± std) | t-test p | Wilcoxon p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary.to_dict("records"):
        lines.append(
            f"| {row['point']} | {row['n']} | {_pm(row['mean'], row['std'])} | "
            f"{_pm(row['diff_mean'], row['diff_std'], signed=True)} | {_p(row['t_p'])} | "
            f"{_p(row['wilcoxon_p'])} | {row['verdict']} |"
        )
    extra = [c for c in runs.columns if c not in RUN_COLUMNS]
    lines += [
        "",
        "## Runs",
        "",
        "| point | seed | run id | status | " + " | ".join([metric, *extra]) + " |",
        "|---|---|---|---|" + "---|" * (1 + len(extra)),
    ]
    for row in runs.to_dict("records"):
        values = " | ".join(_num(row[c]) for c in ["value", *extra])
        lines.append(
            f"| {row['point']} | {row['seed']} | {row['run_id']} | {row['status']} | {values} |"
        )
    lines += ["", "## Reading the tests", "", *[f"- {note}" for note in reading_notes(seeds)]]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def reading_notes(seeds: Sequence[int]) -> list[str]:
    n = len(seeds)
    floor = 2.0 / 2**n if n else math.nan
    return [
        f"Δ is `point - baseline` on the same seed, averaged over {n} seed(s).",
        "Paired t-test: two-sided, assumes normally distributed differences "
        f"({max(n - 1, 0)} degree(s) of freedom here).",
        f"Wilcoxon signed-rank (exact, two-sided): no normality assumption, but with {n} "
        f"pairs its smallest possible p is {floor:.3g}; it cannot reach 0.05 below 6 pairs.",
        "With this few seeds, a 'not significant' verdict means 'not shown', not 'no effect'.",
    ]


def plot(runs: pd.DataFrame, summary: pd.DataFrame, *, metric: str, baseline: str):
    """Left: every seed's value per point with mean ± std. Right: the paired differences
    against the baseline. Returns a matplotlib Figure."""
    # A bare Figure: no pyplot state, no GUI backend, safe in a CLI and in a notebook.
    from matplotlib.figure import Figure

    points = summary.point.tolist()
    fig = Figure(figsize=(4 + 1.6 * len(points), 4.2))
    left, right = fig.subplots(1, 2)
    finished = runs.dropna(subset=["value"])
    base = finished[finished.point == baseline].set_index("seed")["value"]
    for x, row in enumerate(summary.to_dict("records")):
        values = finished[finished.point == row["point"]]
        colour = "tab:grey" if row["point"] == baseline else "tab:blue"
        left.scatter([x] * len(values), values["value"], color=colour, alpha=0.6, zorder=3)
        left.errorbar(
            x + 0.12, row["mean"], yerr=_zero_nan(row["std"]), fmt="D", color="black", capsize=4
        )
        diffs = [
            v - base[s]
            for s, v in zip(values.seed, values["value"], strict=True)
            if s in base.index
        ]
        right.scatter([x] * len(diffs), diffs, color=colour, alpha=0.6, zorder=3)
        if diffs:
            right.hlines(np.mean(diffs), x - 0.25, x + 0.25, color="black")
    for axis, title in ((left, metric), (right, f"Δ vs {baseline}, same seed")):
        axis.set_xticks(range(len(points)), points, rotation=20, ha="right")
        axis.set_xlim(-0.5, len(points) - 0.5)
        axis.set_title(title, fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    right.axhline(0, color="tab:grey", linewidth=1)
    fig.tight_layout()
    return fig


def write_report(
    folder: Path, runs: pd.DataFrame, summary: pd.DataFrame, markdown: str, figure
) -> dict[str, Path]:
    """runs.csv, summary.csv, summary.md and summary.png under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "runs": folder / "runs.csv",
        "summary": folder / "summary.csv",
        "markdown": folder / "summary.md",
        "plot": folder / "summary.png",
    }
    runs.to_csv(paths["runs"], index=False)
    summary.to_csv(paths["summary"], index=False)
    paths["markdown"].write_text(markdown)
    figure.savefig(paths["plot"], dpi=120)
    return paths


def _zero_nan(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _pm(mean: float, std: float, signed: bool = False) -> str:
    if math.isnan(mean):
        return "–"
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text if math.isnan(std) else f"{text} ± {std:.4f}"


def _p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.3g}"
