"""Trained weights and submissions under their MLflow run, the device tag, and the
reproduction's bit-identity rule that follows from it."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
import torch
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog, Version
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from podium.ablation.reproduce import Reproduction, bit_identity_expected, to_markdown
from podium.datasets import AtomicSafetensorsDataset
from podium.hooks import ReproducibilityHooks, device_tags
from podium.models_registry import (
    ModelNotLoggedError,
    download_model,
    download_submission,
    load_weights,
)
from podium.sample_data.mask import generate_mask_sample
from tests.conftest import kedro_run, make_project, write_tree
from tests.pipelines.mask.conftest import SAMPLE_SEED, TINY_SAMPLE
from tests.pipelines.mask.conftest import TINY_PARAMS as TINY_MASK

# Every model and submission entry of conf/base and where its file goes in the run.
LOGGED = {
    "deepfake_frame_models": "models/deepfake",
    "deepfake_submission": "submissions/deepfake",
    "mask_model_weights": "models/mask",
    "mask_submission": "submissions/mask",
    "uda_model_weights": "models/uda",
    "uda_submission": "submissions/uda",
    "monet_generator_photo_to_monet": "models/monet",
    "monet_generator_monet_to_photo": "models/monet",
    "monet_discriminator_monet": "models/monet",
    "monet_discriminator_photo": "models/monet",
    "monet_images_zip": "submissions/monet",
}


def _store(project: Path) -> str:
    return f"sqlite:///{project / 'mlflow.db'}"


def _only_run(project: Path):
    client = MlflowClient(tracking_uri=_store(project))
    experiment = client.get_experiment_by_name("podium")
    (run,) = client.search_runs([experiment.experiment_id])
    return client, run


def _one_version(folder: Path) -> Path:
    (path,) = folder.glob(f"*/{folder.name}")
    return path


# ------------------------------------------------------------------ end to end: mask


@pytest.fixture
def mask_project(tmp_path, monkeypatch) -> Path:
    """The mask pipeline's own tiny sample and parameters (tests/pipelines/mask): one
    backbone, two folds, one epoch; crops made in-process."""
    root = make_project(tmp_path / "project", TINY_MASK, git=False)
    write_tree(generate_mask_sample(TINY_SAMPLE, seed=SAMPLE_SEED), root / "data/01_raw/mask")
    monkeypatch.chdir(root)
    return root


@pytest.mark.slow
def test_a_run_logs_its_weights_and_submission_and_its_device(mask_project):
    kedro_run(mask_project, "mask")
    client, run = _only_run(mask_project)
    assert run.info.status == "FINISHED"
    run_id, uri = run.info.run_id, _store(mask_project)

    # the exact bytes of the local version the run saved, under models/ and submissions/
    weights = _one_version(mask_project / "data/06_models/mask/weights.safetensors")
    submission = _one_version(mask_project / "data/07_model_output/mask/submission.csv")
    for artifact, local in (
        ("models/mask/weights.safetensors", weights),
        ("submissions/mask/submission.csv", submission),
    ):
        downloaded = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact, tracking_uri=uri
        )
        assert Path(downloaded).read_bytes() == local.read_bytes(), artifact

    # by run id, with the helper
    paths = download_model(run_id, "mask", tracking_uri=uri)
    assert list(paths) == ["weights.safetensors"]
    assert paths["weights.safetensors"].read_bytes() == weights.read_bytes()
    tensors = load_weights(run_id, "mask", tracking_uri=uri)
    assert any(key.startswith("resnet10t/fold0/model/") for key in tensors)
    (local_csv,) = download_submission(run_id, "mask", tracking_uri=uri).values()
    assert local_csv.read_bytes() == submission.read_bytes()
    with pytest.raises(ModelNotLoggedError, match="models/uda"):
        download_model(run_id, "uda", tracking_uri=uri)

    # the device it trained on
    tags = run.data.tags
    assert tags["device"] == "cpu"
    assert tags["device.name"] and tags["device.precision"] == "fp32"
    assert tags["torch.version"] == torch.__version__
    assert tags["cuda.version"] == (torch.version.cuda or "none")
    assert tags["distributed.world_size"] == "1"

    # --load-versions still reaches the dataset, and loading reads the local version
    version = weights.parent.name
    bootstrap_project(mask_project)
    with KedroSession.create(project_path=mask_project) as session:
        catalog = session.load_context()._get_catalog(load_versions={"mask_model_weights": version})
        dataset = catalog.get("mask_model_weights")
        assert dataset._version.load == version
        assert set(catalog.load("mask_model_weights")) == set(tensors)


# ------------------------------------------------------------------ the catalog


def test_every_model_and_submission_entry_is_logged_and_the_catalog_builds(tmp_path):
    """Each entry names its artifact folder; the whole catalog materializes (kedro-mlflow's
    after_catalog_created touches every entry): a versioned entry wrapped in
    MlflowArtifactDataset would fail here with VersionAlreadyExistsError."""
    project = make_project(tmp_path / "project", git=False)
    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        catalog = session.load_context().catalog
        for name, artifact_path in LOGGED.items():
            dataset = catalog.get(name)
            assert dataset.metadata["mlflow"]["artifact_path"] == artifact_path, name
            assert dataset._version is not None, f"{name} is versioned"
        # resume state, not a model: stays local
        assert "mlflow" not in (catalog.get("monet_training_state").metadata or {})


# ------------------------------------------------------------------ the hook, in isolation


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One tracking store for the hook tests (a fresh sqlite store takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


@pytest.fixture
def store(store_uri, tmp_path, monkeypatch):
    """The store as MLflow's current one (restored afterwards), a fresh experiment in it
    and a fresh project folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", store_uri)
    client = MlflowClient(tracking_uri=store_uri)
    yield client, client.create_experiment(tmp_path.name)
    while mlflow.active_run() is not None:
        mlflow.end_run()


def _weights_catalog(save_version: str) -> DataCatalog:
    return DataCatalog.from_config(
        {
            "weights": {
                "type": "podium.datasets.AtomicSafetensorsDataset",
                "filepath": "data/06_models/weights.safetensors",
                "versioned": True,
                "metadata": {"mlflow": {"artifact_path": "models/demo"}},
            }
        },
        save_version=save_version,
    )


def _save_through_hook(hooks: ReproducibilityHooks, catalog: DataCatalog, data) -> None:
    hooks._catalog = catalog  # what before_pipeline_run keeps
    catalog.save("weights", data)
    hooks.after_dataset_saved("weights", data, node=None)


def test_the_hook_logs_the_saved_version_and_later_loads_read_it(store):
    hooks = ReproducibilityHooks()
    catalog = _weights_catalog("2026-01-01T00.00.00.000Z")
    ours = {"w": torch.arange(4.0)}
    with mlflow.start_run(experiment_id=store[1]) as run:
        _save_through_hook(hooks, catalog, ours)
    local = Path("data/06_models/weights.safetensors/2026-01-01T00.00.00.000Z/weights.safetensors")
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="models/demo/weights.safetensors"
    )
    assert Path(downloaded).read_bytes() == local.read_bytes()
    assert download_model(run.info.run_id, "demo")["weights.safetensors"].read_bytes() == (
        local.read_bytes()
    )

    # another run saves a newer version: this run still reads back what it wrote
    AtomicSafetensorsDataset(
        "data/06_models/weights.safetensors", version=Version(None, "2027-01-01T00.00.00.000Z")
    ).save({"w": torch.zeros(4)})
    assert torch.equal(catalog.load("weights")["w"], ours["w"])


def test_without_an_active_run_the_hook_saves_locally_and_opens_no_run(store):
    client, _ = store

    def runs() -> int:
        return len(client.search_runs([e.experiment_id for e in client.search_experiments()]))

    before = runs()
    hooks = ReproducibilityHooks()
    _save_through_hook(hooks, _weights_catalog("2026-01-01T00.00.00.000Z"), {"w": torch.ones(2)})
    assert mlflow.active_run() is None and runs() == before
    assert Path("data/06_models/weights.safetensors/2026-01-01T00.00.00.000Z").is_dir()


# ------------------------------------------------------------------ the device tags


def test_device_tags_resolve_the_runtime_block():
    tags = device_tags({"device": "cpu", "distributed": {"nproc_per_node": 2}})
    assert tags["device"] == "cpu" and tags["device.precision"] == "fp32"
    assert tags["distributed.world_size"] == "2" and tags["distributed.backend"] == "gloo"
    assert tags["torch.version"] == torch.__version__
    assert device_tags({})["distributed.world_size"] == "1"
    if not torch.cuda.is_available():
        bad = device_tags({"device": "cuda"})
        assert bad["device"] == "unresolved" and "runtime.device" in bad["device.error"]


# ------------------------------------------------------------------ reproduce's rule


@pytest.mark.parametrize(
    ("tags", "device", "cuda_available", "exact", "why"),
    [
        ({"deterministic": "true", "device": "cpu"}, "cpu", False, True, "recorded on cpu"),
        # a GPU in the box changes nothing when both runs train on cpu
        ({"deterministic": "true", "device": "cpu"}, "cpu", True, True, "reproduced on cpu"),
        ({"deterministic": "true", "device": "cpu"}, "cuda", True, False, "reproduced on cuda"),
        (
            {"deterministic": "true", "device": "cuda", "device.name": "NVIDIA H200"},
            "cuda",
            True,
            False,
            "recorded on cuda (NVIDIA H200)",
        ),
        ({"deterministic": "true", "device": "cuda"}, "cpu", False, False, "recorded on cuda"),
        ({"deterministic": "false", "device": "cpu"}, "cpu", False, False, "not deterministic"),
        # recorded before the device tag: today's rule (deterministic and no GPU visible)
        ({"deterministic": "true"}, "cpu", False, True, "no device tag"),
        ({"deterministic": "true"}, "cuda", True, False, "no device tag"),
        ({}, "cpu", False, False, "not deterministic"),
        ({"deterministic": "true", "device": "unresolved"}, "cpu", False, False, "unknown"),
    ],
)
def test_bit_identity_follows_the_recorded_device(tags, device, cuda_available, exact, why):
    expected, reason = bit_identity_expected(tags, device, cuda_available=cuda_available)
    assert expected is exact
    assert why in reason


def test_the_report_says_why_the_comparison_is_tolerant():
    exact, reason = bit_identity_expected(
        {"deterministic": "true", "device": "cuda", "device.name": "NVIDIA H200"}, "cuda"
    )
    result = Reproduction(
        "r", "mask", None, {}, {}, {"recorded_commit": "a", "recorded_dirty": "false",
        "current_commit": "a", "current_dirty": "false"}, {}, exact, 0.01, 1e-4,
        exact_reason=reason, devices=("cuda (NVIDIA H200)", "cuda"),
    )  # fmt: skip
    report = to_markdown(result)
    assert "- comparison: within rtol=0.01, atol=0.0001 (recorded on cuda (NVIDIA H200)" in report
    assert "- device: recorded on cuda (NVIDIA H200), reproduced on cuda" in report
