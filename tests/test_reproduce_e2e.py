"""`kedro reproduce`: a run of the tiny ablation again, same metrics; changed data, reported."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from podium.ablation.reproduce import (
    DATA_DIFFERS,
    METRICS_DIFFER,
    ReproduceError,
    Reproduction,
    compare_metrics,
    reproduce_run,
)
from tests.conftest import kedro_cli, tracked_runs

pytestmark = pytest.mark.slow


def ablation_child(project, point="folder", seed="1"):
    _, runs = tracked_runs(project)
    return next(
        r
        for r in runs
        if r.data.tags.get("ablation.point") == point and r.data.tags.get("ablation.seed") == seed
    )


def reproductions(project, run_id):
    _, runs = tracked_runs(project)
    return [r for r in runs if r.data.tags.get("reproduces") == run_id]


def test_a_deterministic_cpu_run_reproduces_bit_identically(ablated_project):
    original = ablation_child(ablated_project)
    done = kedro_cli(ablated_project, "reproduce", f"--run-id={original.info.run_id}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "bit-identical" in done.stdout and "REPRODUCED" in done.stdout
    # bit-identity because the run was tagged as trained on cpu, and is reproduced there
    assert original.data.tags["device"] == "cpu"
    assert "recorded on cpu and reproduced on cpu" in done.stdout
    (copy,) = reproductions(ablated_project, original.info.run_id)
    assert copy.data.tags["reproduce.metrics"] == "identical"
    assert copy.data.tags["reproduce.data"] == "match"
    assert copy.data.params == original.data.params
    for name in (
        "deepfake/report/oof/log_loss",
        "deepfake/report/test/log_loss",
        "deepfake/scoring/calibration/logit_scale",
    ):
        assert copy.data.metrics[name] == original.data.metrics[name], name
    report = ablated_project / "data/08_reporting/reproduce" / original.info.run_id
    assert (report / copy.info.run_id / "report.md").read_text().count("| identical |") > 10
    # both runs logged their weights and submission; the same seed gives the same bytes
    store = f"sqlite:///{ablated_project / 'mlflow.db'}"
    for artifact in (
        "models/deepfake/frame_models.safetensors",
        "submissions/deepfake/submission.csv",
    ):
        logged = [
            Path(
                mlflow.artifacts.download_artifacts(
                    run_id=run.info.run_id, artifact_path=artifact, tracking_uri=store
                )
            ).read_bytes()
            for run in (original, copy)
        ]
        assert logged[0] == logged[1], artifact


def test_a_changed_raw_file_is_reported_as_a_fingerprint_mismatch(ablated_project):
    original = ablation_child(ablated_project, "original", "0")
    raw = ablated_project / "data/01_raw/deepfake/dfdc_train_part_0/metadata.json"
    kept = raw.read_bytes()
    raw.write_bytes(kept + b"\n")  # same JSON, other bytes
    lines: list[str] = []
    try:
        # --dry-run: the check before the run is what matters, and it costs no run
        result = reproduce_run(
            ablated_project, original.info.run_id, dry_run=True, echo=lines.append
        )
    finally:
        raw.write_bytes(kept)
    assert set(result.data_before) == {"deepfake_raw"}
    assert any(line.strip().startswith("DATA MISMATCH: deepfake_raw") for line in lines)
    assert result.exit_code & DATA_DIFFERS


def test_exit_codes_say_what_differs():
    metrics = pd.DataFrame({"verdict": ["identical", "ignored"]})
    same = Reproduction(
        "r", "deepfake", None, {}, {}, {}, {}, True, 0.01, 1e-4, "n", "FINISHED", ("a", "a")
    )
    same.metrics = metrics
    assert same.exit_code == 0
    same.fingerprint = ("a", "b")
    assert same.exit_code == DATA_DIFFERS
    same.metrics = pd.DataFrame({"verdict": ["identical", "differs"]})
    assert same.exit_code == METRICS_DIFFER | DATA_DIFFERS


def test_metrics_compare_exactly_or_within_tolerance():
    recorded = {"loss": 0.5, "auc": 0.7, "deepfake/faces/seconds": 3.0, "gone": 1.0}
    reproduced = {"loss": 0.5, "auc": 0.7000001, "deepfake/faces/seconds": 9.0}
    exact = compare_metrics(recorded, reproduced, True, 0.01, 1e-4).set_index("metric").verdict
    assert exact.to_dict() == {
        "auc": "differs",
        "deepfake/faces/seconds": "ignored",
        "gone": "missing",
        "loss": "identical",
    }
    tolerant = compare_metrics(recorded, reproduced, False, 0.01, 1e-4).set_index("metric")
    assert tolerant.verdict["auc"] == "within tolerance"


def test_an_unknown_run_is_a_clear_error(ablated_project):
    with pytest.raises(ReproduceError, match="not in the tracking store"):
        reproduce_run(ablated_project, "0" * 32, dry_run=True, echo=lambda line: None)
