"""The mask package's shape: the five building-block modules, and every node in a stage
(namespace ``mask.<stage>``, tagged ``<stage>``) so kedro-viz collapses each stage into a box
and ``--namespaces`` / ``--tags`` run one."""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import pytest

import podium.pipelines.mask as package
from podium.pipelines.mask import nodes
from podium.pipelines.mask.pipeline import STAGES, create_pipeline
from podium.pipelines.stages import STAGE_WORDS

ALLOWED_STAGES = set(STAGE_WORDS)
#: Stage -> the short names of its nodes.
EXPECTED = {
    "data": {"index_training_images", "index_evaluation_images"},
    "crops": {"crop_training_images", "crop_evaluation_images"},
    "split": {"assign_person_folds"},
    "models": {"train_models"},
    "scoring": {"vote_out_of_fold", "predict_evaluation_images", "vote_evaluation_images"},
    "submission": {"write_submission"},
    "report": {
        "count_crop_outcomes",
        "score_out_of_fold",
        "plot_out_of_fold_confusion",
        "score_evaluation",
    },
}
PACKAGE = Path(package.__file__).parent


def _full_names(stage: str) -> set[str]:
    return {f"mask.{stage}.{name}" for name in EXPECTED[stage]}


@pytest.fixture(scope="module")
def pipeline():
    with warnings.catch_warnings():
        # Kedro warns when a path leaves a namespace and comes back into it
        warnings.simplefilter("error", UserWarning)
        return create_pipeline()


def test_the_package_has_the_five_building_block_modules():
    for module in ("data", "model", "train", "evaluate", "submission"):
        assert (PACKAGE / f"{module}.py").is_file(), module
        importlib.import_module(f"podium.pipelines.mask.{module}")
    for old in ("models", "networks", "training", "evaluation"):
        assert not (PACKAGE / f"{old}.py").exists(), old


def test_every_node_lives_in_a_stage_namespace_and_carries_its_stage_tag(pipeline):
    assert set(STAGES) == set(EXPECTED) and set(STAGES) <= ALLOWED_STAGES
    for node in pipeline.nodes:
        pipeline_name, stage = node.namespace.split(".")
        assert pipeline_name == "mask", node.name
        assert stage in ALLOWED_STAGES, node.name
        assert node.name == f"mask.{stage}.{node.name.rsplit('.', 1)[1]}"
        assert stage in node.tags and "mask" in node.tags, node.name
        assert not (node.tags & (ALLOWED_STAGES - {stage})), node.name


def test_the_stages_hold_the_expected_nodes(pipeline):
    assert {n.name for n in pipeline.nodes} == set().union(*map(_full_names, EXPECTED))
    for stage in EXPECTED:
        by_tag = {n.name for n in pipeline.only_nodes_with_tags(stage).nodes}
        assert by_tag == _full_names(stage), stage
        by_namespace = {
            n.name for n in pipeline.only_nodes_with_namespaces([f"mask.{stage}"]).nodes
        }
        assert by_namespace == _full_names(stage), stage
    scoring_and_report = pipeline.only_nodes_with_namespaces(["mask.scoring", "mask.report"])
    assert len(scoring_and_report.nodes) == len(EXPECTED["scoring"]) + len(EXPECTED["report"])


def test_the_namespaces_leave_dataset_and_parameter_names_alone(pipeline):
    names = pipeline.datasets()
    assert "mask_raw" in names and "params:mask.model" in names and "params:runtime" in names
    assert not [name for name in names if name.startswith("mask.")]
    params = {name for name in names if name.startswith("params:")}
    assert all(name.startswith(("params:mask.", "params:runtime")) for name in params), params


def test_every_node_named_in_an_error_message_is_a_full_node_name(pipeline):
    known = {n.name for n in pipeline.nodes}
    named = [name for split, name in sorted(nodes._SPLITS.items())]
    for source in sorted(PACKAGE.glob("*.py")):
        text = re.sub(r'"\s*"', "", source.read_text())  # join implicitly concatenated strings
        for listed in re.findall(r"--nodes=([\w.,{}\[\]]+)", text):
            if "{" not in listed:  # a formatted name is checked through nodes._SPLITS
                named.extend(listed.split(","))
    assert len(named) >= 4
    assert set(named) <= known, set(named) - known
