"""make bench's machinery on tiny cases: the records it writes, not how fast anything is.

One training run of the mask case (tiny crops, batches of 4, one timed batch, no worker
processes), and the extraction suite on one small generated DFDC video (two frames, one
repeat), and the CycleGAN suite at 32 px with one residual block (one step, one repeat),
each through ``benchmarks/bench.py``'s own ``main``: the JSON rows, the Markdown table and
the MLflow ``bench`` run (in a store of its own) hold positive, finite figures, every
detecting case a recall in [0, 1], and podium's CycleGAN and the reference the same
parameter counts and the same first step.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import ONE_FAMILY

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "mask": {
        "crop": {"output": {"height": 32, "width": 24}},
        "train": {"batch_size": 4},
        "model": {"backbones": ["test_efficientnet"]},
    }
}
FIGURES = (
    "images_per_second",
    "resident_images_per_second",
    "bare_images_per_second",
    "ratio_to_bare",
    "ratio_to_resident",
    "resident_to_bare",
)


def _bench():
    spec = importlib.util.spec_from_file_location("podium_bench", REPO / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def kept_tracking_uri():
    uri = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(uri)


def _positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_one_tiny_case_is_recorded_in_json_markdown_and_mlflow(tmp_path, kept_tracking_uri):
    bench = _bench()
    threads, flag = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "bench"
    argv = [
        "--device=cpu",
        "--suites=training",
        "--pipelines=mask",
        "--workers=0",
        "--repeats=1",
        "--warmup=1",
        "--batches=1",
        f"--params={json.dumps(TINY)}",
        f"--out={out}",
        f"--mlflow-uri={store}",
    ]
    assert bench.main(argv) == 0
    # the pipelines' seeding changed torch's flags; the bench puts them back
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == flag

    (json_file,) = out.glob("????-??-??-*.json")
    md_file = json_file.with_suffix(".md")
    (row,) = json.loads(json_file.read_text())
    assert row["suite"] == "training" and row["case"] == "mask" and row["num_workers"] == 0
    assert row["batch_size"] == 4 and row["input"] == "4x3x32x24"
    for key in (*FIGURES, "first_batch_seconds"):
        assert _positive(row[key]), (key, row[key])
    assert 0 <= row["loader_wait_share"] <= 1
    (sample,) = row["samples"]
    for part in ("real", "resident", "bare"):
        assert sample[part]["batches"] == 1 and sample[part]["images"] == 4
        assert _positive(sample[part]["seconds"])

    table = md_file.read_text()
    assert "| mask | multihead test_efficientnet @32x24 | 4 | fp32 | 0 |" in table
    assert row["command"] in table

    # a second run appends to the same day's file
    assert bench.main([*argv, "--no-mlflow"]) == 0
    rows = json.loads(json_file.read_text())
    assert len(rows) == 2 and rows[0]["run"] <= rows[1]["run"]

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("podium")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "bench"
    logged = run.data.metrics
    for key in FIGURES:
        assert _positive(logged[f"bench/train/mask/workers_0/{key}"]), key
        assert logged[f"bench/train/mask/{key}"] == logged[f"bench/train/mask/workers_0/{key}"]
    assert logged["bench/train/mask/best_num_workers"] == 0
    # grouped as every run's metrics are: <root>/<stage>/..., no dotted names
    assert all(k.startswith("bench/train/mask/") and "." not in k for k in logged), sorted(logged)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "bench")}
    assert artifacts == {"bench/bench.md", "bench/bench.json"}
    local = Path(client.download_artifacts(run.info.run_id, "bench/bench.md", str(tmp_path)))
    assert "| mask |" in local.read_text()


EXTRACTION_FIGURES = ("frames_per_second", "seconds_per_video")
#: One REAL 160x120 video of 15 frames, with its truth boxes: the DFDC sample's layout.
TINY_DEEPFAKE_SAMPLE = {
    "n_parts": 1,
    "reals_per_part": 1,
    "fakes_per_real": 0,
    "actors_per_part": 1,
    "n_test_videos": 0,
    "width": 160,
    "height": 120,
    "seconds": 1.0,
}


def test_the_extraction_suite_records_speeds_and_recalls(tmp_path, kept_tracking_uri):
    """One video, two frames, one repeat, full and half size: every case's row holds
    positive finite figures and each detecting case a recall in [0, 1]."""
    from podium.sample_data.deepfake import generate_deepfake_sample

    for relative, data in generate_deepfake_sample(
        {**TINY_DEEPFAKE_SAMPLE, **ONE_FAMILY}, seed=0
    ).items():
        path = tmp_path / "raw" / "deepfake" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    bench = _bench()
    threads = torch.get_num_threads()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "bench"
    argv = [
        "--device=cpu",
        "--suites=extraction",
        f"--raw={tmp_path / 'raw'}",
        "--videos=1",
        "--frames=2",
        "--scales=0.5",
        "--repeats=1",
        f"--out={out}",
        f"--mlflow-uri={store}",
    ]
    assert bench.main(argv) == 0
    assert torch.get_num_threads() == threads

    (json_file,) = out.glob("????-??-??-*.json")
    rows = json.loads(json_file.read_text())
    assert {r["suite"] for r in rows} == {"extraction"}
    cases = [(r["case"], r["scale"]) for r in rows]
    assert cases == [
        ("decode", None),
        ("stock", 1.0),
        ("podium", 1.0),
        ("stock", 0.5),
        ("podium", 0.5),
        ("end_to_end", 1.0),  # conf/base's downscale
    ]
    for row in rows:
        assert row["videos"] == 1 and row["frames_per_video"] == 2 and row["repeats"] == 1
        for key in EXTRACTION_FIGURES:
            assert _positive(row[key]), (row["case"], key, row[key])
        (sample,) = row["samples"]
        assert sample["frames"] == 2 and _positive(sample["seconds"])
        if row["case"] != "decode":
            assert 0 <= row["recall_iou50"] <= 1, row
            assert math.isfinite(row["boxes_per_frame"]) and row["boxes_per_frame"] >= 0
        if row["case"] in ("podium", "end_to_end"):
            assert _positive(row["ratio"]) and row["ratio_to"] in ("stock", "decode")
    e2e = rows[-1]
    shares = [e2e[f"{part}_share"] for part in ("decode", "detect", "save", "rest")]
    assert all(math.isfinite(s) for s in shares) and math.isclose(sum(shares), 1.0)
    assert _positive(e2e["save_share"])

    table = json_file.with_suffix(".md").read_text()
    assert "### Face extraction" in table and "| podium detect_faces | 0.5 | 80x60 |" in table

    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("podium").experiment_id])
    logged = run.data.metrics
    assert _positive(logged["bench/extract/decode/frames_per_second"])
    assert _positive(logged["bench/extract/podium/scale_0_5/ratio"])
    assert 0 <= logged["bench/extract/end_to_end/recall_iou50"] <= 1


CYCLEGAN_FIGURES = (
    "podium_images_per_second",
    "reference_images_per_second",
    "podium_seconds_per_step",
    "reference_seconds_per_step",
    "ratio",
)


def test_the_cyclegan_suite_records_both_steps_and_the_same_computation(
    tmp_path, kept_tracking_uri
):
    """Both settings at 32 px with one residual block, one timed step, one repeat: each
    row holds positive finite speeds for both sides, equal parameter counts, and one step
    from the same weights giving the same losses and weights (fp32 on CPU)."""
    bench = _bench()
    threads = torch.get_num_threads()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "bench"
    argv = [
        "--device=cpu",
        "--suites=cyclegan",
        "--gan-size=32",
        "--gan-blocks=1",
        "--gan-steps=1",
        "--gan-warmup=0",
        "--repeats=1",
        f"--out={out}",
        f"--mlflow-uri={store}",
    ]
    assert bench.main(argv) == 0
    assert torch.get_num_threads() == threads

    (json_file,) = out.glob("????-??-??-*.json")
    rows = json.loads(json_file.read_text())
    assert [(r["suite"], r["case"]) for r in rows] == [
        ("cyclegan", "base"),
        ("cyclegan", "reference"),
    ]
    for row in rows:
        assert row["size"] == 32 and row["n_blocks"] == 1 and row["repeats"] == 1
        assert row["precision"] == "fp32" and row["timed_steps"] == 1
        for key in CYCLEGAN_FIGURES:
            assert _positive(row[key]), (row["case"], key, row[key])
        (sample,) = row["samples"]
        assert _positive(sample["podium_seconds"]) and _positive(sample["reference_seconds"])
        for part in ("generator", "discriminator"):
            assert _positive(row[f"{part}_params_podium"])
            assert row[f"{part}_params_podium"] == row[f"{part}_params_reference"]
        assert row["params_match"] and row["same_weights"]
        for key in ("loss_g_podium", "loss_g_reference", "loss_d_podium", "loss_d_reference"):
            assert _positive(row[key]), (key, row[key])
        assert 0 <= row["loss_rel_diff"] < 1e-4 and 0 <= row["weights_rel_diff"] < 1e-4
    base, reference = rows
    assert base["batch_size"] == 4 and base["ngf"] == 16  # conf/base
    assert reference["batch_size"] == 1 and reference["ngf"] == reference["ndf"] == 64
    # the paper's 70x70 PatchGAN at ndf 64: 2.765 M parameters, whatever the image size
    assert reference["discriminator_params_reference"] == 2_764_737

    table = json_file.with_suffix(".md").read_text()
    assert "### CycleGAN" in table and "| reference | resnet 1 blocks ngf64" in table

    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("podium").experiment_id])
    logged = run.data.metrics
    for case in ("base", "reference"):
        assert _positive(logged[f"bench/cyclegan/{case}/ratio"])
        assert logged[f"bench/cyclegan/{case}/params_match"] == 1.0


#: Two test videos (160x120, 15 frames) of the DFDC sample's layout, nothing else.
TINY_TEST_VIDEOS = {**TINY_DEEPFAKE_SAMPLE, "n_test_videos": 2, "test_actors": 1}
#: conf/base's ensemble (unet_multitask resnet10t), two folds at 32 px on two frames.
TINY_SCORING = {
    "deepfake": {
        "extraction": {"n_frames": 2, "crop_size": 48},
        "training": {"image_size": 32, "predict_batch_size": 8},
        "split": {"n_folds": 2},
    },
    "deepfake_inference": {"videos_per_task": 2},
}


def test_the_scoring_suite_splits_seconds_per_video_and_takes_its_ratios(
    tmp_path, kept_tracking_uri
):
    """Two test videos, one repeat, one Dask worker: every case's seconds are positive,
    the sum is the three stages', each ratio the quotient of the seconds measured, and
    every video comes back from both end-to-end cases with an allowed status."""
    from podium.pipelines.deepfake.inference import STATUSES
    from podium.sample_data.deepfake import generate_deepfake_sample

    for relative, data in generate_deepfake_sample(
        {**TINY_TEST_VIDEOS, **ONE_FAMILY}, seed=0
    ).items():
        path = tmp_path / "raw" / "deepfake" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    bench = _bench()
    threads = torch.get_num_threads()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "bench"
    argv = [
        "--device=cpu",
        "--suites=scoring",
        f"--raw={tmp_path / 'raw'}",
        "--scoring-workers=1",
        "--repeats=1",
        f"--params={json.dumps(TINY_SCORING)}",
        f"--out={out}",
        f"--mlflow-uri={store}",
    ]
    assert bench.main(argv) == 0
    assert torch.get_num_threads() == threads

    (json_file,) = out.glob("????-??-??-*.json")
    rows = {r["case"]: r for r in json.loads(json_file.read_text())}
    assert list(rows) == ["decode", "detect", "model", "sum", "end_to_end", "dask"]
    seconds = {}
    for case, row in rows.items():
        assert row["suite"] == "scoring" and row["ensemble"] == "base", row
        assert row["weights"] == "untrained" and row["folds"] == 2 and row["videos"] == 2
        assert row["n_frames"] == 2 and row["repeats"] == 1 and row["dask_workers"] == 1
        assert _positive(row["seconds_per_video"]), (case, row["seconds_per_video"])
        (sample,) = row["samples"]
        seconds[case] = sample["seconds"]
        assert math.isclose(row["seconds_per_video"], seconds[case] / 2)
    assert math.isclose(seconds["sum"], seconds["decode"] + seconds["detect"] + seconds["model"])
    assert rows["end_to_end"]["ratio"] == seconds["end_to_end"] / seconds["sum"]
    assert rows["dask"]["ratio"] == seconds["end_to_end"] / seconds["dask"]
    assert rows["dask"]["ideal"] == 1 and rows["dask"]["efficiency"] == rows["dask"]["ratio"]
    for case in ("end_to_end", "dask"):
        row = rows[case]
        assert sum(row["statuses"].values()) == 2
        assert set(row["statuses"]) <= set(STATUSES) - {"failed"}, row["statuses"]
        for stage in ("decode", "detect", "total"):
            assert _positive(row[f"reported_{stage}_seconds_per_video"]), (case, stage)
        assert math.isclose(row["videos_per_hour"], 3600 / row["seconds_per_video"])
        assert math.isclose(row["projected_hours"], 4000 * row["seconds_per_video"] / 3600)
        assert math.isclose(row["budget_ratio"], row["seconds_per_video"] / 8.1)

    table = json_file.with_suffix(".md").read_text()
    assert "### Scoring" in table and "| end to end, no Dask (stream_scores) |" in table
    assert "unet_multitask resnet10t x 2 folds @32" in table

    client = MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("podium").experiment_id])
    logged = run.data.metrics
    for case in rows:
        assert (
            logged[f"bench/scoring/base/{case}/seconds_per_video"]
            == rows[case]["seconds_per_video"]
        )
    assert logged["bench/scoring/base/end_to_end/ratio"] == rows["end_to_end"]["ratio"]
    assert logged["bench/scoring/base/dask/ratio"] == rows["dask"]["ratio"]
