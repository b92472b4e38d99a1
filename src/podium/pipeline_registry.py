"""Project pipelines: every ``pipelines/<name>/`` package with a non-empty pipeline."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# `kedro run` with no --pipeline runs the competitions, never the sample generator:
# regenerating raw data must be asked for by name; nor scoring new videos, which reads
# the ensemble a training run saved.
NOT_IN_DEFAULT = {"sample_data", "deepfake_inference"}


def register_pipelines() -> dict[str, Pipeline]:
    found = find_pipelines(raise_errors=True)
    pipelines = {name: pipe for name, pipe in found.items() if pipe.nodes}
    default = [pipe for name, pipe in pipelines.items() if name not in NOT_IN_DEFAULT]
    pipelines["__default__"] = (
        sum(default, Pipeline([])) if default else pipelines.get("sample_data", Pipeline([]))
    )
    return pipelines
