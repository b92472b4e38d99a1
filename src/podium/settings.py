"""Kedro settings for podium.

Project hooks add what kedro-mlflow does not record by itself (git commit, seed,
fingerprint of the raw data a run read, the trained weights; ReproducibilityHooks) and
keep each run's MLflow status truthful, one run per project folder (the lock
data/.podium-run.lock; RunGuardHooks); a training run logs its inference pipeline as an
MLflow model (InferenceModelHooks); kedro-mlflow's own hooks register through its
entry point and open one MLflow run per ``kedro run``; typed parameter blocks are checked
when the context is created and logged leaf by leaf (TypedParametersHooks); each run is
named after its --params, carries its pipeline's headline metric and a description, and
ends with a line giving both and the run id (RunSummaryHooks).
"""

from kedro.config import OmegaConfigLoader

from podium.hooks import ReproducibilityHooks, TypedParametersHooks
from podium.inference_models import InferenceModelHooks
from podium.run_guard import RunGuardHooks
from podium.run_summary import RunSummaryHooks

SUMMARY = RunSummaryHooks()
HOOKS = (
    TypedParametersHooks(),
    ReproducibilityHooks(),
    RunGuardHooks(),
    InferenceModelHooks(),
    SUMMARY,
    SUMMARY.last_line,
)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Soft merge lets `--params=deepfake.model.lr=0.01` or `--env=full` change one leaf
    # of a nested parameter block without replacing the whole block: ablations need it.
    "merge_strategy": {"parameters": "soft"},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "catalog": ["catalog*", "catalog*/**", "**/catalog*"],
    },
}
