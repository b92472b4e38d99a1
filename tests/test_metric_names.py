"""One naming for every metric: ``<pipeline>/<stage>[/<model>/fold<k>]/<metric>``.

Statically, each metrics entry a pipeline's node writes is a ``MetricsDataset`` whose
prefix starts with that node's ``<pipeline>/<stage>``; at run time, each pipeline's
end-to-end test checks the names its run logged (``tests.conftest.assert_metric_names``);
and the dataset itself logs, loads and refuses names as it says.
"""

from __future__ import annotations

import mlflow
import pytest
from kedro.io.core import DatasetError, parse_dataset_definition
from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset
from mlflow.tracking import MlflowClient

from podium.datasets import MetricsDataset
from podium.pipelines.tracking import metric_curves
from tests.conftest import REPO
from tests.test_catalog_layers import entry_of, load_catalog_config, registered_pipelines


def metric_outputs():
    config = load_catalog_config(REPO / "conf", "base")
    for pipeline_name, pipeline in registered_pipelines().items():
        if pipeline_name == "__default__":
            continue
        for node in pipeline.nodes:
            for output in node.outputs:
                entry = entry_of(output, config)
                if entry is None:
                    continue
                kind, _ = parse_dataset_definition(dict(config[entry]))
                if issubclass(kind, MlflowMetricsHistoryDataset):
                    yield node, output, kind, config[entry].get("prefix")


def test_every_metrics_entry_is_prefixed_by_the_stage_of_the_node_that_writes_it():
    outputs = list(metric_outputs())
    assert len({output for _, output, _, _ in outputs}) >= 15  # every pipeline's metrics
    for node, output, kind, prefix in outputs:
        pipeline, stage = node.namespace.split(".")[:2]
        assert kind is MetricsDataset, f"{output}: {kind.__name__} joins its prefix by '.'"
        assert prefix == f"{pipeline}/{stage}" or prefix.startswith(f"{pipeline}/{stage}/"), (
            f"{output} (written by {node.name}) is logged under {prefix!r}"
        )


@pytest.fixture
def tracked(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("metric-names")  # not the experiment id an earlier test left active
    with mlflow.start_run() as run:
        yield run.info.run_id
    mlflow.set_tracking_uri(None)


def test_a_metrics_dataset_logs_its_keys_under_its_prefix_by_slash(tracked):
    curves = metric_curves(
        [
            {"model": "unet", "fold": 0, "epoch": 1, "val_loss": 0.5},
            {"model": "unet", "fold": 0, "epoch": 2, "val_loss": float("nan")},
            {"model": "unet", "fold": 0, "epoch": 3, "val_loss": 0.25},
        ],
        ["val_loss", "lr"],
        name="{model}/fold{fold}/{metric}",
    )
    assert list(curves) == ["unet/fold0/val_loss"]  # no point for NaN, no history for lr
    dataset = MetricsDataset(prefix="deepfake/models")
    dataset.save(curves)
    MetricsDataset(prefix="deepfake/modelsx").save({"other": {"value": 1.0, "step": 0}})
    history = MlflowClient().get_metric_history(tracked, "deepfake/models/unet/fold0/val_loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (3, 0.25)]
    # load reads back its own keys only, not those of a prefix that merely starts alike
    assert set(dataset.load()) == {"deepfake/models/unet/fold0/val_loss"}


def test_a_dotted_name_or_prefix_is_refused(tracked):
    with pytest.raises(DatasetError, match="paths joined by '/'"):
        MetricsDataset(prefix="deepfake/report").save({"oof.log_loss": {"value": 1, "step": 0}})
    for prefix in ("deepfake.report", "/deepfake", "deepfake/", ""):
        with pytest.raises(DatasetError, match="must be a path"):
            MetricsDataset(prefix=prefix)
    assert MlflowClient().get_run(tracked).data.metrics == {}
