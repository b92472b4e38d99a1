"""The uda package's shape: the five building-block modules, and every node in a namespace
``uda.<stage>`` tagged with its stage, so a stage is selected by tag or by namespace."""

from __future__ import annotations

import importlib.util
import re

import pandas as pd
import pytest

from podium.pipelines.stages import STAGE_WORDS as WORDS
from podium.pipelines.uda import nodes
from podium.pipelines.uda.pipeline import create_pipeline

STAGE_WORDS = set(WORDS)

#: The stages of the write-up, each with the short names of its nodes.
STAGES = {
    "data": {"index_data", "inspect_images"},
    "models": {"train_models"},
    "scoring": {"predict_val_source", "predict_val_target", "predict_test"},
    "report": {
        "score_predictions",
        "iou_metrics",
        "plot_iou",
        "plot_target_overlays",
        "submission_metrics",
    },
    "submission": {"write_submission"},
}


def _full(stage: str) -> set[str]:
    return {f"uda.{stage}.{name}" for name in STAGES[stage]}


def test_the_package_has_the_five_building_block_modules():
    for module in ("data", "model", "train", "evaluate", "submission"):
        assert importlib.util.find_spec(f"podium.pipelines.uda.{module}") is not None, module
    assert importlib.util.find_spec("podium.pipelines.uda.network") is None  # now model.py


def test_every_node_is_in_a_stage_namespace_and_tagged_with_its_stage():
    pipeline = create_pipeline()
    assert STAGES.keys() <= STAGE_WORDS
    seen: dict[str, set[str]] = {}
    for node in pipeline.nodes:
        match = re.fullmatch(r"uda\.([a-z_]+)", node.namespace or "")
        assert match, f"{node.name} has namespace {node.namespace!r}, not uda.<stage>"
        stage = match[1]
        assert stage in STAGE_WORDS, node.name
        assert node.name == f"uda.{stage}.{node.name.rsplit('.', 1)[-1]}"
        assert {stage, "uda"} <= node.tags, node.name
        assert not (node.tags & (STAGE_WORDS - {stage})), f"{node.name}: {node.tags}"
        seen.setdefault(stage, set()).add(node.name.rsplit(".", 1)[-1])
    assert seen == STAGES


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stage_is_selected_by_its_tag_and_by_its_namespace(stage):
    pipeline = create_pipeline()
    by_tag = {n.name for n in pipeline.only_nodes_with_tags(stage).nodes}
    by_namespace = {n.name for n in pipeline.only_nodes_with_namespaces([f"uda.{stage}"]).nodes}
    assert by_tag == by_namespace == _full(stage)


def test_namespaces_leave_dataset_and_parameter_names_as_they_were():
    for node in create_pipeline().nodes:
        for name in node.inputs + node.outputs:
            assert name.startswith(("uda_", "params:uda.", "params:runtime")), (node.name, name)


def test_a_missing_prediction_names_the_full_node_to_rerun():
    images = pd.DataFrame(
        [["val_target", "VALID_TARGET_0000", "a.png", "a_gt.png", 54, 96]],
        columns=["split", "id", "img_path", "gt_path", "height", "width"],
    )
    with pytest.raises(ValueError, match=r"VALID_TARGET_0000") as raised:
        nodes.score_predictions(images, {}, {})
    (named,) = re.findall(r"--nodes=(\S+)`", str(raised.value))
    assert named == "uda.scoring.predict_val_target"
    assert named in {n.name for n in create_pipeline().nodes}
