"""`kedro run --pipelines=monet` end to end in a throwaway project on a tiny sample."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from podium.core.config import ParameterError
from podium.sample_data.monet import generate_monet_sample
from tests.conftest import (
    TINY_SAMPLE,
    assert_metric_names,
    assert_reports_logged,
    kedro_run,
    make_project,
    tracked_runs,
    write_tree,
)

#: Seconds instead of minutes: 16 px crops, 4 filters, 1 + 1 epochs, Inception at 75 px.
TINY_PARAMS = {
    "monet": {
        "data": {"load_size": 20, "crop_size": 16},
        "model": {"ngf": 4, "n_blocks": 1, "ndf": 4, "d_layers": 2, "unet_downs": 4},
        "train": {"n_epochs": 1, "n_epochs_decay": 1, "batch_size": 2},
        # offline, whatever the machine: a CI with the network fetches no 91 MB of weights
        "evaluation": {"image_size": 75, "inception_weights_url": None},
        "report": {"grid_photos": 2},
    },
    "runtime": {"num_workers": 0},
}
N_PHOTOS = TINY_SAMPLE["sample_data"]["monet"]["n_photos"]


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    root = make_project(tmp_path / "project", TINY_PARAMS, git=False)
    write_tree(
        generate_monet_sample(TINY_SAMPLE["sample_data"]["monet"], seed=3),
        root / "data" / "01_raw" / "monet",
    )
    monkeypatch.chdir(root)
    return root


def _versions(project: Path, name: str) -> list[Path]:
    return sorted((project / "data" / "06_models" / "monet" / f"{name}.safetensors").glob("*/*"))


@pytest.mark.slow
def test_the_monet_pipeline_runs_end_to_end_resumes_and_tracks_everything(project):
    photo_jpg = project / "data/01_raw/monet/photo_jpg"
    whole = next(iter(sorted(photo_jpg.glob("*.jpg")))).read_bytes()
    broken = photo_jpg / "ffffffffff.jpg"
    broken.write_bytes(whole[: len(whole) // 2])  # a truncated download
    kedro_run(project, "monet", {"monet": {"train": {"epochs_this_run": 1}}})
    client, (run,) = tracked_runs(project)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert_metric_names(metrics, "monet")
    # MiFID = FID / (d + 1e-15) with d = 1 when nothing is memorised: a hair below FID
    assert metrics["monet/report/fid"] > 0 and metrics["monet/report/mifid"] >= metrics[
        "monet/report/fid"
    ] * (1 - 1e-12)
    assert 0 <= metrics["monet/report/memorization_distance"] <= 1
    # the broken photo: skipped, counted and listed with its reason; the run goes on
    assert (
        metrics["monet/data/photo/read"] == N_PHOTOS and metrics["monet/data/photo/unreadable"] == 1
    )
    assert metrics["monet/report/photos_missing_from_zip"] == 0
    report = pd.read_csv(project / "data/08_reporting/monet/unreadable_images.csv")
    assert report["path"].tolist() == [str(broken.resolve())]
    assert report["domain"].tolist() == ["photo"] and report["reason"][0].startswith("truncated")
    broken.unlink()
    assert run.data.tags["monet.fid_extractor"] == "standin-random-inception_v3-seed0"
    assert run.data.tags["monet.fid_weights"].startswith("offline: ")
    assert run.data.params["monet.model.padding"] == "reflect"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "monet")}
    assert {
        "monet/loss_curves.png",
        "monet/translation_grid.png",
        "monet/evaluation.json",
    } <= artifacts
    reporting = project / "data" / "08_reporting" / "monet"
    reports = {"unreadable_images.csv", "training_history.csv"}
    assert_reports_logged(client, run.info.run_id, "monet", reporting, reports)

    # images.zip: flat, one 256x256 jpg per photo
    (zip_path,) = (project / "data" / "07_model_output" / "monet" / "images.zip").glob("*/*")
    photos = sorted(p.stem for p in (project / "data/01_raw/monet/photo_jpg").glob("*.jpg"))
    with zipfile.ZipFile(zip_path) as archive:
        assert sorted(archive.namelist()) == [f"{name}.jpg" for name in photos]
        for name in archive.namelist():
            with Image.open(io.BytesIO(archive.read(name))) as image:
                assert image.format == "JPEG" and image.size == (256, 256)

    # each sub-model on its own, versioned
    for name in ("generator_photo_to_monet", "generator_monet_to_photo"):
        assert len(_versions(project, name)) == 1
    for name in ("discriminator_monet", "discriminator_photo", "training_state"):
        assert len(_versions(project, name)) == 1

    # a second run continues the schedule at epoch 2 from the saved sub-models: the
    # authors' 1 + 1 epochs, 2e-4 * (1 - 1/2) in epoch 1 and 0 in the last one
    kedro_run(project, "monet", {"monet": {"train": {"resume_from": "latest"}}})
    client, runs = tracked_runs(project)
    first, second = (client.get_metric_history(r.info.run_id, "monet/models/lr") for r in runs)
    assert [(m.step, m.value) for m in first] == [(1, pytest.approx(1e-4))]
    assert [(m.step, m.value) for m in second] == [(2, 0.0)]
    assert len(_versions(project, "generator_photo_to_monet")) == 2


def test_resuming_with_nothing_saved_names_the_parameter(project):
    with pytest.raises(ParameterError, match=r"monet\.train\.resume_from.*null"):
        kedro_run(project, "monet", {"monet": {"train": {"resume_from": "latest"}}})


def test_an_unknown_generator_fails_the_run_naming_the_parameter(project):
    with pytest.raises(ParameterError, match=r"monet\.model\.generator.*resnet, unet"):
        kedro_run(project, "monet", {"monet": {"model": {"generator": "resnet9"}}})


#: The stages a scale benchmark times one by one, each in its own session (full node names,
#: as ``kedro run --nodes`` takes them).
STAGES = [
    ["monet.data.index_images", "monet.data.check_images"],
    ["monet.models.train_cyclegan"],
    ["monet.submission.write_images_zip"],
    ["monet.report.score_images"],
]


@pytest.mark.slow
def test_stages_run_one_by_one_give_the_figures_of_one_whole_run(project):
    one_epoch = {"monet": {"train": {"n_epochs": 1, "n_epochs_decay": 0}}}
    for stage in STAGES:
        kedro_run(project, "monet", one_epoch, nodes=stage)
    kedro_run(project, "monet", one_epoch)
    client, runs = tracked_runs(project)
    assert len(runs) == 5 and all(r.info.status == "FINISHED" for r in runs)
    staged, whole = runs[3].data.metrics, runs[4].data.metrics
    assert "monet/report/fid" in staged and "monet/models/lr" in runs[1].data.metrics
    for name in ("monet/report/fid", "monet/report/mifid", "monet/report/memorization_distance"):
        assert staged[name] == whole[name], name  # same seed on CPU: identical, not close
    zips = sorted((project / "data/07_model_output/monet/images.zip").glob("*/images.zip"))
    assert len(zips) == 2 and zips[0].read_bytes() == zips[1].read_bytes()
    assert not list((project / "data/07_model_output/monet").rglob("*.partial"))


def test_the_tfrecord_half_gives_the_same_tables_as_the_jpgs(project):
    prepare = ["monet.data.index_images", "monet.data.check_images"]
    tables = {}
    for source in ("jpg", "tfrec"):
        kedro_run(project, "monet", {"monet": {"source": source}}, nodes=prepare)
        tables[source] = [
            pd.read_parquet(project / f"data/02_intermediate/monet/{name}.parquet")
            for name in ("photos", "paintings")
        ]
    for jpg, tfrec in zip(tables["jpg"], tables["tfrec"], strict=True):
        assert tfrec["name"].tolist() == jpg["name"].tolist() and len(jpg) > 0
        assert all(path.split("@")[0].endswith(".tfrec") for path in tfrec["path"])
