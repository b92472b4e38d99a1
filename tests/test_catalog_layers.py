"""Every dataset of the flowchart has its layer: each dataset a registered pipeline reads or
writes is a catalog entry (or matches a factory pattern) whose ``metadata.kedro-viz.layer``
is one of Kedro's eight data layers, the one its folder under data/ names (but for the few
in DRAWN_ELSEWHERE); kedro-viz can order the layers of every pipeline (it draws no bands
when a layer feeds one before it); and no entry or node input dangles (an entry no
pipeline uses, an input nothing produces or declares)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.project import find_pipelines
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog
from kedro.io.catalog_config_resolver import DEFAULT_RUNTIME_PATTERN, CatalogConfigResolver
from kedro.pipeline import Pipeline
from kedro_viz.services.layers import sort_layers

from podium.settings import CONFIG_LOADER_ARGS
from tests.conftest import REPO

#: Kedro's data-engineering convention: data/<folder> -> kedro-viz layer.
LAYER_OF_FOLDER = {
    "01_raw": "raw",
    "02_intermediate": "intermediate",
    "03_primary": "primary",
    "04_feature": "feature",
    "05_model_input": "model_input",
    "06_models": "models",
    "07_model_output": "model_output",
    "08_reporting": "reporting",
}
LAYERS = set(LAYER_OF_FOLDER.values())
#: What a node reads that is no dataset of the flowchart's layers.
PARAMETERS = ("params:", "parameters")

#: Entries drawn in another layer than their folder's, and why. In its folder's layer each
#: would close a cycle among the layers (a later layer feeding an earlier one), and then
#: kedro-viz draws no layer bands at all (test_each_exception_is_needed). Entries without a
#: file (MLflow metrics and tags, in-memory datasets) have no folder to follow.
DRAWN_ELSEWHERE = {
    # 06_models, but fitted on the frame models' out-of-fold output (model_output)
    "deepfake_scorer": "model_output",
    # 08_reporting, but uda.submission.write_submission gives its test images empty masks
    "uda_bad_images": "intermediate",
    # 08_reporting, but write_inference_submission reads it for the submission's rows
    "deepfake_inference_timing": "model_output",
}

#: The inputs no node produces that are not raw data, each for its reason. They look
#: dangling in the flowchart; their catalog comments say why they are inputs.
READ_BY_PATH = {
    # the folder the node's own output is saved into, read before it adds to it
    "deepfake_faces_cache": "deepfake_faces",
    "deepfake_face_rows_cache": "deepfake_face_rows",
    "deepfake_inference_results_cache": "deepfake_inference_results",
    "monet_saved_sub_models": "monet_* sub-models",
    # a store the node is handed and writes into (FolderStoreDataset: no node saves it)
    "deepfake_checkpoints": "store",
    "mask_checkpoints": "store",
    "mask_train_crops": "store",
    "mask_eval_crops": "store",
    "uda_checkpoints": "store",
    "monet_checkpoints": "store",
    # what the deepfake pipeline trained, read back from its files or an MLflow run
    "deepfake_inference_frame_models": "deepfake_frame_models",
    "deepfake_inference_scorer": "deepfake_scorer",
}


# ---------------------------------------------------------------- the finders (helpers)


def load_catalog_config(conf_source: Path, env: str) -> dict[str, dict[str, Any]]:
    """The catalog as `kedro run --env=<env>` reads it (settings.py's loader arguments),
    without the YAML anchors (``_name`` keys)."""
    loader = OmegaConfigLoader(conf_source=str(conf_source), env=env, **CONFIG_LOADER_ARGS)
    return {name: entry for name, entry in loader["catalog"].items() if not name.startswith("_")}


def registered_pipelines() -> dict[str, Pipeline]:
    """The project's pipelines as pipeline_registry.py finds them (the non-empty ones)."""
    bootstrap_project(REPO)
    return {name: pipe for name, pipe in find_pipelines(raise_errors=True).items() if pipe.nodes}


def pipeline_datasets(pipelines: Mapping[str, Pipeline]) -> set[str]:
    """Every dataset a registered pipeline reads or writes, parameters left out."""
    used = set().union(*(pipe.datasets() for pipe in pipelines.values()))
    return {name for name in used if not name.startswith(PARAMETERS)}


def resolver(config: Mapping[str, dict[str, Any]]) -> CatalogConfigResolver:
    return CatalogConfigResolver(dict(config), default_runtime_patterns=DEFAULT_RUNTIME_PATTERN)


def entry_of(name: str, config: Mapping[str, dict[str, Any]], patterns=None) -> str | None:
    """The catalog entry ``name`` resolves to: itself or a factory pattern (None: none,
    Kedro would make it a MemoryDataset with no layer)."""
    if name in config:
        return name
    patterns = patterns or resolver(config)
    return patterns.match_dataset_pattern(name) or patterns.match_user_catch_all_pattern(name)


def layer(entry: Mapping[str, Any]) -> str | None:
    return ((entry.get("metadata") or {}).get("kedro-viz") or {}).get("layer")


def location(entry: Mapping[str, Any]) -> str | None:
    """The file or folder an entry reads and writes (a wrapper's inner dataset's for
    MlflowArtifactDataset and RunArtifactDataset); None for one without a file."""
    inner = entry.get("dataset")
    for config in (entry, inner if isinstance(inner, Mapping) else {}):
        for key in ("filepath", "path"):
            if config.get(key):
                return str(config[key])
    return None


def folder_layer(path: str) -> str | None:
    """The layer data/<folder>/... names (None: not under one of the eight folders)."""
    parts = PurePosixPath(path).parts
    return LAYER_OF_FOLDER.get(parts[1]) if len(parts) > 1 and parts[0] == "data" else None


def unlayered(config: Mapping[str, dict[str, Any]], used: set[str]) -> dict[str, str]:
    """{dataset: why} for each used dataset that kedro-viz would draw without a layer of
    the eight: no catalog entry, or an entry without ``metadata.kedro-viz.layer``."""
    patterns = resolver(config)
    problems = {}
    for name in sorted(used):
        entry = entry_of(name, config, patterns)
        if entry is None:
            problems[name] = "no catalog entry (an undeclared in-memory dataset)"
        elif layer(config[entry]) not in LAYERS:
            problems[name] = f"entry {entry!r} has layer {layer(config[entry])!r}"
    return problems


def misfiled(config: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """{entry: why} for each entry whose layer is not among the eight, or (for one with a
    file) not the layer of the folder its file is in (or DRAWN_ELSEWHERE's)."""
    problems = {}
    for name, entry in config.items():
        path, drawn = location(entry), layer(entry)
        expected = DRAWN_ELSEWHERE.get(name) or (path and folder_layer(path))
        if drawn not in LAYERS:
            problems[name] = f"layer {drawn!r} is not one of {sorted(LAYERS)}"
        elif path is not None and expected != drawn:
            problems[name] = f"{path}: drawn in {drawn!r}, not in {expected!r}"
    return problems


def layer_order(config: Mapping[str, dict[str, Any]], pipeline: Pipeline) -> list[str]:
    """The layers as kedro-viz orders them for ``pipeline`` (its own sort, on the graph it
    builds: datasets and parameters -> nodes -> datasets); [] when they are in a cycle."""
    patterns = resolver(config)
    graph: dict[str, set[str]] = {}
    nodes = {}
    for node in pipeline.nodes:
        task = f"node:{node.name}"
        nodes[task] = SimpleNamespace(layer=None)
        graph[task] = {f"data:{name}" for name in node.outputs}
        for name in node.inputs:
            graph.setdefault(f"data:{name}", set()).add(task)
    for name in pipeline.datasets():
        graph.setdefault(f"data:{name}", set())
        entry = entry_of(name, config, patterns)
        nodes[f"data:{name}"] = SimpleNamespace(layer=entry and layer(config[entry]))
    return sort_layers(nodes, graph)


def dangling(
    config: Mapping[str, dict[str, Any]], pipelines: Mapping[str, Pipeline]
) -> dict[str, str]:
    """{name: why} for each catalog entry (factory patterns included) that no registered
    pipeline reads or writes, and each node input that no node produces and no catalog
    entry declares (``params:`` left out)."""
    used = pipeline_datasets(pipelines)
    patterns = resolver(config)
    reached = {entry_of(name, config, patterns) for name in used}
    problems = {name: "no registered pipeline reads or writes it" for name in config}
    problems = {name: why for name, why in problems.items() if name not in reached}
    produced = set().union(*(pipe.all_outputs() for pipe in pipelines.values()))
    for name in sorted(used):
        if name not in produced and entry_of(name, config, patterns) is None:
            problems[name] = "a node input that no node produces and no entry declares"
    return problems


def unfed_inputs(
    config: Mapping[str, dict[str, Any]], pipelines: Mapping[str, Pipeline]
) -> set[str]:
    """The inputs no node of their pipeline produces (the flowchart draws them with no
    edge in) that are not raw data."""
    patterns = resolver(config)
    free = set().union(*(pipe.inputs() for pipe in pipelines.values()))
    free = {name for name in free if not name.startswith(PARAMETERS)}
    return {
        name for name in free if layer(config.get(entry_of(name, config, patterns), {})) != "raw"
    }


# ---------------------------------------------------------------- the project's catalog


@pytest.fixture(scope="module")
def pipelines() -> dict[str, Pipeline]:
    return registered_pipelines()


@pytest.fixture(scope="module", params=["base", "full"])
def config(request) -> dict[str, dict[str, Any]]:
    return load_catalog_config(REPO / "conf", request.param)


def test_every_dataset_of_every_pipeline_has_a_layer(config, pipelines):
    used = pipeline_datasets(pipelines)
    assert len(pipelines) >= 6 and len(used) > 50, sorted(pipelines)  # not an empty registry
    assert unlayered(config, used) == {}


def test_each_entry_is_drawn_in_the_layer_of_its_folder(config):
    assert misfiled(config) == {}


def test_kedro_viz_can_order_the_layers_of_every_pipeline(config, pipelines):
    everything = sum(pipelines.values(), Pipeline([]))
    orders = {name: layer_order(config, pipe) for name, pipe in pipelines.items()}
    orders["all"] = layer_order(config, everything)
    assert {name: order for name, order in orders.items() if not order} == {}
    assert orders["all"] == list(LAYER_OF_FOLDER.values())


def test_each_exception_is_needed(pipelines):
    """In its folder's layer, each entry of DRAWN_ELSEWHERE puts its pipeline's layers in
    a cycle (kedro-viz: "Layers visualisation is disabled as circular dependency ...")."""
    config = load_catalog_config(REPO / "conf", "base")
    for name in DRAWN_ELSEWHERE:
        entry = config[name]
        folder = {
            **entry,
            "metadata": {
                **entry["metadata"],
                "kedro-viz": {"layer": folder_layer(location(entry))},
            },
        }
        users = [pipe for pipe in pipelines.values() if name in pipe.datasets()]
        orders = [layer_order({**config, name: folder}, pipe) for pipe in users]
        assert users and orders == [[]] * len(users), f"{name} needs no exception: {orders}"


def test_no_entry_or_input_dangles(config, pipelines):
    assert dangling(config, pipelines) == {}


def test_an_input_nothing_produces_is_raw_or_said_why(config, pipelines):
    unfed = unfed_inputs(config, pipelines)
    assert unfed - set(READ_BY_PATH) == set(), "say in the catalog and READ_BY_PATH why"
    assert set(READ_BY_PATH) - unfed == set(), "READ_BY_PATH names what is no such input"


def test_kedro_viz_reads_the_layer_from_each_dataset(pipelines):
    """kedro-viz takes the layer from the dataset object's ``metadata``: each class (ours,
    kedro-datasets', kedro-mlflow's wrappers) must keep what the entry gives it."""
    config = load_catalog_config(REPO / "conf", "base")
    catalog = DataCatalog.from_config(config)
    drawn = {}
    for name in sorted(pipeline_datasets(pipelines)):
        metadata = getattr(catalog.get(name), "metadata", None) or {}
        drawn[name] = (metadata.get("kedro-viz") or {}).get("layer")
    assert {name: got for name, got in drawn.items() if got not in LAYERS} == {}
    # what podium's hooks log under the MLflow run is still there beside the layer
    weights = catalog.get("deepfake_frame_models").metadata
    assert weights == {
        "kedro-viz": {"layer": "models"},
        "mlflow": {"artifact_path": "models/deepfake"},
    }


# ---------------------------------------------------------------- the checks can fail


@pytest.fixture
def conf_copy(tmp_path) -> Path:
    shutil.copytree(REPO / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    (tmp_path / "conf" / "local").mkdir()
    return tmp_path / "conf"


def edit_catalog(conf: Path, file: str, name: str, change) -> None:
    """Load conf/base/<file> (anchors expanded), change entry ``name``, write it back."""
    path = conf / "base" / file
    entries = yaml.safe_load(path.read_text())
    change(entries, name)
    path.write_text(yaml.safe_dump(entries, sort_keys=False))


def drop_layer(entries, name):
    entries[name]["metadata"] = {
        k: v for k, v in entries[name]["metadata"].items() if k != "kedro-viz"
    }


def test_the_checks_fail_on_a_removed_layer(conf_copy, pipelines):
    edit_catalog(conf_copy, "catalog_deepfake.yml", "deepfake_folds", drop_layer)
    edit_catalog(conf_copy, "catalog_mask.yml", "mask_{split}_crops", drop_layer)
    edit_catalog(conf_copy, "catalog_deepfake.yml", "deepfake_calibration", drop_layer)
    config = load_catalog_config(conf_copy, "base")
    used = pipeline_datasets(pipelines)
    found = unlayered(config, used)
    assert {"deepfake_folds", "mask_train_crops", "mask_eval_crops"} <= set(found)
    assert "deepfake_calibration" in found
    assert {"deepfake_folds", "mask_{split}_crops", "deepfake_calibration"} <= set(misfiled(config))


def test_the_checks_fail_on_an_undeclared_in_memory_dataset(conf_copy, pipelines):
    edit_catalog(conf_copy, "catalog_deepfake.yml", "deepfake_stacker", dict.pop)
    config = load_catalog_config(conf_copy, "base")
    assert unlayered(config, pipeline_datasets(pipelines)) == {
        "deepfake_stacker": "no catalog entry (an undeclared in-memory dataset)"
    }


def test_the_checks_fail_on_a_layer_that_is_not_its_folders(conf_copy):
    def misplace(entries, name):
        entries[name]["metadata"]["kedro-viz"]["layer"] = "primary"

    edit_catalog(conf_copy, "catalog_deepfake.yml", "deepfake_oof_predictions", misplace)
    assert set(misfiled(load_catalog_config(conf_copy, "base"))) == {"deepfake_oof_predictions"}


def test_the_checks_fail_on_a_dead_entry_and_an_undeclared_input(conf_copy, pipelines):
    def add_dead(entries, name):
        entries[name] = {**entries["deepfake_folds"], "filepath": "data/05_model_input/x.pq"}

    edit_catalog(conf_copy, "catalog_deepfake.yml", "deepfake_old_folds", add_dead)
    edit_catalog(conf_copy, "catalog_deepfake.yml", "deepfake_faces_cache", dict.pop)
    config = load_catalog_config(conf_copy, "base")
    assert dangling(config, pipelines) == {
        "deepfake_old_folds": "no registered pipeline reads or writes it",
        "deepfake_faces_cache": "a node input that no node produces and no entry declares",
    }
    assert "deepfake_faces_cache" in unfed_inputs(config, pipelines)
    entries = yaml.safe_load((conf_copy / "base" / "catalog_raw.yml").read_text())
    entries["mask_raw"]["metadata"] = {}
    (conf_copy / "base" / "catalog_raw.yml").write_text(yaml.safe_dump(entries))
    config = load_catalog_config(conf_copy, "base")
    assert unfed_inputs(config, pipelines) - set(READ_BY_PATH) == {"mask_raw"}
