"""The shape of the deepfake packages: the five building-block modules, and every node in a
namespace ``<pipeline>.<stage>`` tagged with its stage, dataset and parameter names unchanged."""

from __future__ import annotations

import importlib.util

import pytest

from podium.pipelines.deepfake.pipeline import STAGES
from podium.pipelines.deepfake.pipeline import create_pipeline as deepfake_pipeline
from podium.pipelines.deepfake_inference.pipeline import (
    create_pipeline as inference_pipeline,
)
from podium.pipelines.deepfake_inference.pipeline import create_scoring_model_pipeline
from podium.pipelines.stages import STAGE_WORDS

#: The words a stage may be named with.
ALLOWED = set(STAGE_WORDS)

DEEPFAKE = {
    "data": {"index_training_videos", "index_test_videos"},
    "faces": {"extract_faces", "index_faces"},
    "split": {"assign_folds", "split_diagnostics", "hold_out_family"},
    "models": {"train_frame_models"},
    "scoring": {
        "predict_test_frames",
        "score_videos",
        "stack_videos",
        "ensemble_and_calibrate",
        "package_scorer",
    },
    "submission": {"write_submission"},
    "report": {
        "evaluate",
        "family_metrics",
        "plot_reliability",
        "plot_roc",
        "plot_face_grid",
        "measure_detection_recall",
    },
}
INFERENCE = {
    "data": {"list_videos_to_score"},
    "scoring": {"score_new_videos"},
    "submission": {"write_inference_submission"},
    "report": {"check_scoring_budget"},
}
CASES = [
    ("deepfake", deepfake_pipeline, DEEPFAKE),
    ("deepfake_inference", inference_pipeline, INFERENCE),
]


def _full(pipeline: str, stages: dict[str, set[str]], *only: str) -> set[str]:
    chosen = {s: names for s, names in stages.items() if not only or s in only}
    return {f"{pipeline}.{s}.{n}" for s, names in chosen.items() for n in names}


@pytest.mark.parametrize(("name", "create", "stages"), CASES)
def test_every_node_is_in_a_stage_namespace_and_tagged_with_it(name, create, stages):
    pipeline = create()
    assert {n.name for n in pipeline.nodes} == _full(name, stages)
    for node in pipeline.nodes:
        namespace, _, short = node.name.rpartition(".")
        assert node.namespace == namespace, node.name
        head, _, stage = namespace.partition(".")
        assert head == name and stage in ALLOWED, node.name
        assert short in stages[stage], node.name
        assert stage in node.tags, f"{node.name} lacks the tag {stage!r}"
        assert not (node.tags & (ALLOWED - {stage})), f"{node.name}: tags of other stages"


@pytest.mark.parametrize(("name", "create", "stages"), CASES)
def test_tags_and_namespaces_select_a_stage(name, create, stages):
    pipeline = create()
    for stage in stages:
        expected = _full(name, stages, stage)
        tagged = pipeline.only_nodes_with_tags(stage)
        assert {n.name for n in tagged.nodes} == expected, stage
        spaced = pipeline.only_nodes_with_namespaces([f"{name}.{stage}"])
        assert {n.name for n in spaced.nodes} == expected, stage
    whole = pipeline.only_nodes_with_namespaces([name])
    assert {n.name for n in whole.nodes} == _full(name, stages)
    with pytest.raises(ValueError, match="namespaces"):
        pipeline.only_nodes_with_namespaces([f"{name}.training"])


def test_the_deepfake_stages_are_the_write_ups_in_order():
    assert STAGES == ("data", "faces", "split", "models", "scoring", "submission", "report")
    assert set(DEEPFAKE) == set(STAGES)
    # a stage runs after the ones before it: a node depends only on its own or earlier stages
    order = {f"deepfake.{s}": i for i, s in enumerate(STAGES)}
    produced_by = {o: n for n in deepfake_pipeline().nodes for o in n.outputs}
    for node in deepfake_pipeline().nodes:
        for source in (produced_by[i] for i in node.inputs if i in produced_by):
            assert order[source.namespace] <= order[node.namespace], (source.name, node.name)


@pytest.mark.parametrize(
    "create", [deepfake_pipeline, inference_pipeline, create_scoring_model_pipeline]
)
def test_dataset_and_parameter_names_carry_no_namespace(create):
    pipeline = create()
    names = pipeline.inputs() | pipeline.outputs() | pipeline.datasets()
    spaces = {n.namespace for n in pipeline.nodes}
    assert not {d for d in names for s in spaces if d.startswith(f"{s}.")}
    assert not {d for d in names for s in spaces if d.startswith(f"params:{s}.")}
    params = {d for d in names if d.startswith("params:")}
    assert params and all(
        p.startswith(("params:deepfake.", "params:deepfake_inference", "params:runtime"))
        for p in params
    ), params


def test_the_mlflow_model_pipeline_is_the_scoring_stage():
    (node,) = create_scoring_model_pipeline().nodes
    assert node.name == "deepfake_inference.scoring.score_video_files"
    assert {"scoring", "inference"} <= node.tags
    assert all("inference" in n.tags for n in inference_pipeline().nodes)


@pytest.mark.parametrize("module", ["data", "model", "train", "evaluate", "submission"])
def test_the_five_building_block_modules_exist(module):
    assert importlib.util.find_spec(f"podium.pipelines.deepfake.{module}") is not None


@pytest.mark.parametrize("old", ["extraction", "networks", "training", "evaluation"])
def test_the_old_module_names_are_gone(old):
    assert importlib.util.find_spec(f"podium.pipelines.deepfake.{old}") is None
