"""The shape in which nodes hand metrics to kedro-mlflow's MlflowMetricsHistoryDataset."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Metrics = dict[str, Any]


def as_metrics(values: Mapping[str, float], step: int = 0) -> Metrics:
    """``{name: value}`` as ``{name: {"value": float, "step": step}}``."""
    return {name: {"value": float(value), "step": step} for name, value in values.items()}
