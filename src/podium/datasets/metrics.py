"""``MetricsDataset``: kedro-mlflow's metric history under a path.

Every metric podium logs is named ``<pipeline>/<stage>/<model>/fold<k>/<metric>`` (model
and fold where there are some): the catalog entry gives the ``<pipeline>/<stage>[/...]``
prefix, the node the rest of the path. kedro-mlflow joins a prefix to its keys with a
dot; this dataset joins them with ``/``, so that a name reads as one path and the MLflow UI
groups each stage's charts in a section of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kedro.io.core import DatasetError
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset

SEP = "/"


class MetricsDataset(MlflowMetricsHistoryDataset):
    """``{key: {"value", "step"} | [{"value", "step"}, ...]}`` logged as ``<prefix>/<key>``."""

    def __init__(
        self, prefix: str, run_id: str | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        if not prefix or prefix.startswith(SEP) or prefix.endswith(SEP) or "." in prefix:
            raise DatasetError(
                f"MetricsDataset: prefix {prefix!r} must be a path such as 'deepfake/report' "
                "(no leading or trailing '/', no '.')"
            )
        super().__init__(run_id=run_id, prefix=prefix, metadata=metadata)

    def _build_args_list_from_metric_item(
        self, key: str, value: dict[str, float] | list[dict[str, float]]
    ) -> Iterator[tuple[str, float, int]]:
        if "." in key:
            raise DatasetError(
                f"MetricsDataset {self._prefix}: metric {key!r} has a '.'; podium's metric "
                "names are paths joined by '/'"
            )
        points = [value] if isinstance(value, dict) else value
        if not isinstance(points, list) or not points:
            raise DatasetError(
                f"MetricsDataset {self._prefix}: {key!r} must be a {{'value', 'step'}} dict "
                f"or a non-empty list of them, got {value!r}"
            )
        name = f"{self._prefix}{SEP}{key}"
        return ((name, float(point["value"]), int(point["step"])) for point in points)

    def _is_dataset_metric(self, key: str) -> bool:
        return key.startswith(f"{self._prefix}{SEP}")
