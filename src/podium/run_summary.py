"""What a person reads of a run: its name, its headline metric, its description and the
last line it logs.

- The experiment is tagged for model development (``mlflow.experimentKind``), so the MLflow
  UI opens on its runs table, not on its GenAI traces view.
- A run given ``--params`` is named after them: ``deepfake: split.strategy=folder``
  (kedro-mlflow names every run after its pipeline alone). Runs ``kedro ablate`` and
  ``kedro reproduce`` make keep the names those give them.
- Each pipeline has one headline metric, logged again as ``<pipeline>/score`` (one column
  to sort the runs table by), and a one-line description (``mlflow.note.content``: the
  score, what it measures and the settings that matter most).
- The run's last log line gives that score and the MLflow run id.

One experiment holds every pipeline's runs: kedro-mlflow takes one experiment per project
configuration, ``kedro ablate`` and ``kedro reproduce`` look runs up there, and each run's
``pipeline_name`` tag filters it to one competition (``tags.pipeline_name = 'mask'``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from mlflow.tracking import MlflowClient

from podium.ablation.grid import flatten

log = logging.getLogger(__name__)

#: The MLflow UI's experiment type for training runs (its other kind is GenAI development).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
#: MLflow's run-name tag, which the UI shows.
RUN_NAME_TAG = "mlflow.runName"
#: MLflow's run description, shown on the run's page.
DESCRIPTION_TAG = "mlflow.note.content"
#: Above this length a run name ends with an ellipsis (the UI shows about this much).
MAX_NAME = 120


@dataclass(frozen=True)
class Headline:
    """A pipeline's one number: the metric it reports, in words, which way is better, and
    the parameters that describe the run beside it (label -> parameter path)."""

    metric: str
    what: str
    better: str
    context: Mapping[str, str] = field(default_factory=dict)

    def key(self, pipeline: str) -> str:
        return f"{pipeline}/score"


HEADLINES: dict[str, Headline] = {
    "deepfake": Headline(
        "deepfake/report/test/log_loss",
        "test video log loss",
        "lower",
        {
            "split": "deepfake.split.strategy",
            "models": "deepfake.training.models",
            "video rule": "deepfake.video_score.rule",
            "target prior": "deepfake.calibration.target_prior",
        },
    ),
    "deepfake_inference": Headline(
        "deepfake_inference/submission/wall_seconds_per_video",
        "wall seconds per video scored",
        "lower",
        {"device": "runtime.device", "workers": "runtime.dask.n_workers"},
    ),
    "mask": Headline(
        "mask/report/eval/submission/f1_macro",
        "evaluation macro F1 of the submission",
        "higher",
        {
            "variant": "mask.model.variant",
            "backbones": "mask.model.backbones",
            "age threshold": "mask.age_threshold",
        },
    ),
    "uda": Headline(
        "uda/report/target_miou",
        "target mIoU",
        "higher",
        {"regime": "uda.training.regime", "models": "uda.models"},
    ),
    "monet": Headline(
        "monet/report/mifid",
        "MiFID",
        "lower",
        {"generator": "monet.model.generator", "epochs": "monet.train.n_epochs"},
    ),
}


def run_name(pipelines: list[str], runtime_params: Mapping[str, Any] | None) -> str:
    """``deepfake: split.strategy=folder, seed=1``: the pipeline and what the command line
    changed, keys under the pipeline's own block written without its name."""
    head = "+".join(pipelines) or "__default__"
    own = f"{pipelines[0]}." if len(pipelines) == 1 else None
    overrides = [
        f"{key.removeprefix(own) if own else key}={_short(value)}"
        for key, value in sorted(flatten(runtime_params or {}).items())
    ]
    name = f"{head}: {', '.join(overrides)}" if overrides else head
    return name if len(name) <= MAX_NAME else f"{name[: MAX_NAME - 1]}…"


def _short(value: Any) -> str:
    """A parameter value as a run name or description shows it: a list of models by their
    backbones or encoders, numbers as written."""
    if isinstance(value, Mapping) and value and all(isinstance(v, Mapping) for v in value.values()):
        return "+".join(_short(v) for v in value.values())  # {member: block}
    if isinstance(value, Mapping):
        for key in ("backbone", "encoder", "name"):
            if key in value:
                return str(value[key])
    if isinstance(value, list | tuple):
        return "+".join(_short(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return "null" if value is None else str(value)


def _lookup(parameters: Mapping[str, Any], path: str) -> Any:
    value: Any = parameters
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def description(
    pipeline: str, headline: Headline, score: float, parameters: Mapping[str, Any]
) -> str:
    """``deepfake/score = 0.6931 (test video log loss, lower is better) · split:
    person_cluster · models: resnet10t · ...``"""
    parts = [
        f"{headline.key(pipeline)} = {score:.4g} ({headline.what}, {headline.better} is better)"
    ]
    for label, path in headline.context.items():
        value = _lookup(parameters, path)
        if value is not None or path.endswith("prior"):
            parts.append(f"{label}: {_short(value)}")
    return " · ".join(parts)


class RunSummaryHooks:
    """Names, tags and summarises each kedro-mlflow run (see the module docstring)."""

    def __init__(self) -> None:
        self._summary: str | None = None
        self._parameters: Mapping[str, Any] = {}

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._parameters = context.config_loader["parameters"]

    # trylast: after kedro-mlflow's hook has started the run (and named it).
    @hook_impl(trylast=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        self._summary = None
        run = mlflow.active_run()
        if run is None:
            return
        mlflow.set_experiment_tag(*EXPERIMENT_KIND)
        names = list(run_params.get("pipeline_names") or ["__default__"])
        if run.info.run_name == "+".join(names) or run.info.run_name == names[0]:
            mlflow.set_tag(RUN_NAME_TAG, run_name(names, run_params.get("runtime_params")))

    # tryfirst: while the run is still active (kedro-mlflow's own hook ends it).
    @hook_impl(tryfirst=True)
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        run = mlflow.active_run()
        if run is None:
            return
        names = list(run_params.get("pipeline_names") or ["__default__"])
        where = f"MLflow run {run.info.run_id} (`kedro mlflow ui` shows it)"
        headline = HEADLINES.get(names[0]) if len(names) == 1 else None
        metrics = MlflowClient().get_run(run.info.run_id).data.metrics
        if headline is None or headline.metric not in metrics:
            self._summary = f"{'+'.join(names)}: no headline metric in this run · {where}"
            return
        score = float(metrics[headline.metric])
        mlflow.log_metric(headline.key(names[0]), score)
        text = description(names[0], headline, score, self._parameters)
        mlflow.set_tag(DESCRIPTION_TAG, text)
        self._summary = f"{text} · {where}"

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline, catalog):
        self._summary = None

    @property
    def last_line(self) -> LastLine:
        """The hook that logs the summary once every other after_pipeline_run is done (a
        plugin implements each hook once, so the line is a plugin of its own)."""
        return LastLine(self)


class LastLine:
    def __init__(self, summary: RunSummaryHooks) -> None:
        self._owner = summary

    @hook_impl(trylast=True)
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        if self._owner._summary:
            log.info(self._owner._summary)
