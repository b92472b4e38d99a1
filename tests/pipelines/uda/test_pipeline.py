"""`kedro run --pipelines=uda` end to end in a throwaway project on a tiny sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from podium.core.checkpoints import load_state_dict
from podium.layouts.uda import NUM_CLASSES, SUBMISSION_SIZE, UdaLayoutError
from podium.pipelines.uda.submission import rle_decode
from tests.conftest import assert_metric_names, assert_reports_logged, kedro_run, tracked_runs
from tests.pipelines.uda.conftest import TINY_SAMPLE


def _versioned(path: Path) -> Path:
    (found,) = path.glob(f"*/{path.name}")
    return found


@pytest.mark.slow
def test_the_uda_pipeline_runs_end_to_end_and_tracks_mIoU(project):
    raw = project / "data" / "01_raw" / "uda"
    broken = raw / "test_image" / "TEST_0001.png"
    broken.write_bytes(broken.read_bytes()[:100])  # one truncated download among the images
    kedro_run(project, "uda")
    client, (run,) = tracked_runs(project)
    assert run.info.run_name == "uda" and run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert_metric_names(metrics, "uda")
    for split in ("target", "source"):
        assert 0.0 <= metrics[f"uda/report/{split}_miou"] <= 1.0
        per_class = [v for k, v in metrics.items() if k.startswith(f"uda/report/{split}_iou/")]
        assert len(per_class) == NUM_CLASSES  # every class is in the tiny sample's labels
        assert metrics[f"uda/report/{split}_miou"] == pytest.approx(np.mean(per_class))
    history = client.get_metric_history(run.info.run_id, "uda/models/m1/train_target")
    assert [m.step for m in history] == [2, 4]  # one point per 2-iteration epoch
    # threshold 0: all confident (epoch 2, wholly after pseudo_label.start_iteration)
    assert metrics["uda/models/m1/train_pseudo_weight"] == pytest.approx(1.0)
    assert 0.0 <= metrics["uda/report/submission/labelled_share"] <= 1.0  # background: in no mask
    assert run.data.params["uda.training.regime"] == "self_training"
    assert run.data.tags["seed"] == "42"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "uda")}
    assert {"uda/class_iou.png", "uda/target_overlays.png"} <= artifacts
    reporting = project / "data" / "08_reporting" / "uda"
    assert_reports_logged(
        client, run.info.run_id, "uda", reporting, {"class_iou.csv", "bad_images.csv"}
    )

    out = project / "data" / "07_model_output" / "uda"
    submission = pd.read_csv(_versioned(out / "submission.csv"), keep_default_na=False)
    template = pd.read_csv(project / "data" / "01_raw" / "uda" / "sample_submission.csv")
    assert submission["id"].tolist() == template["id"].tolist()
    assert len(submission) == TINY_SAMPLE["n_test"] * NUM_CLASSES
    width, height = SUBMISSION_SIZE
    masks = np.stack([rle_decode(r, (height, width)) for r in submission["mask_rle"][:NUM_CLASSES]])
    # at most one class per pixel of the first test image: background is in no mask
    assert (masks.sum(axis=0) <= 1).all()
    # the unreadable test image is reported, and has its rows (empty masks), not none
    assert (submission["mask_rle"][NUM_CLASSES:] == "-1").all()
    bad = pd.read_csv(_versioned(project / "data" / "08_reporting" / "uda" / "bad_images.csv"))
    assert bad[["split", "id"]].values.tolist() == [["test", "TEST_0001"]]
    assert "cannot be read" in bad.loc[0, "reason"]
    maps = _versioned(out / "val_target_predictions")
    assert sorted(p.stem for p in maps.glob("*.png")) == [
        f"VALID_TARGET_{i:04d}" for i in range(TINY_SAMPLE["n_val_target"])
    ]

    with safe_open(
        str(_versioned(project / "data" / "06_models" / "uda" / "weights.safetensors")),
        framework="pt",
    ) as handle:
        sets = {tuple(key.split("/")[:2]) for key in handle.keys()}
    assert sets == {("m1", "student"), ("m1", "ema")}

    # the same seed on CPU trains bit-identical weights again, from the stored tables
    kedro_run(project, "uda", nodes=["uda.models.train_models"])
    first, second = sorted(
        (project / "data" / "06_models" / "uda" / "weights.safetensors").glob("*/*")
    )
    a, b = load_state_dict(first), load_state_dict(second)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_label_of_the_wrong_size_stops_the_run_naming_the_file(project):
    gt = project / "data" / "01_raw" / "uda" / "train_source_gt" / "TRAIN_SOURCE_0001.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(gt)
    with pytest.raises(UdaLayoutError, match=r"TRAIN_SOURCE_0001\.png is 10x10.*fix"):
        kedro_run(
            project,
            "uda",
            params={"runtime": {"dask": {"n_workers": 0}}},  # in-process: no cluster to start
            nodes=["uda.data.index_data", "uda.data.inspect_images"],
        )
