"""The shape in which nodes hand metrics to ``podium.datasets.MetricsDataset``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from math import isnan
from typing import Any

Metrics = dict[str, Any]


def as_metrics(values: Mapping[str, float], step: int = 0) -> Metrics:
    """``{name: value}`` as ``{name: {"value": float, "step": step}}``."""
    return {name: {"value": float(value), "step": step} for name, value in values.items()}


def metric_curves(
    rows: Iterable[Mapping[str, Any]],
    metrics: Sequence[str],
    name: str = "{metric}",
    step: str = "epoch",
    steps_per_unit: int = 1,
) -> Metrics:
    """One MLflow metric history per metric of a training history (one row per epoch):
    ``name`` formatted with the row and ``metric`` (``"{model}/fold{fold}/{metric}"``), a
    point per row that has the metric (missing or NaN: no point), at ``row[step] *
    steps_per_unit``. A metric no row has gets no history: MLflow's cannot be empty."""
    curves: Metrics = {}
    for row in rows:
        for metric in metrics:
            value = row.get(metric)
            if value is None or isnan(float(value)):
                continue
            key = name.format(**row, metric=metric)
            point = {"step": int(row[step]) * steps_per_unit, "value": float(value)}
            curves.setdefault(key, []).append(point)
    return curves
