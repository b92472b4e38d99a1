"""The monet package's shape: the five building-block modules, and every node in a namespace
``monet.<stage>`` tagged with its stage, so a stage is selected by tag or by namespace."""

from __future__ import annotations

import importlib
import importlib.util
import re

import pytest

from podium.pipelines.monet.pipeline import create_pipeline
from podium.pipelines.stages import STAGE_WORDS as WORDS

STAGE_WORDS = set(WORDS)

#: The stages of the write-up, each with the short names of its nodes.
STAGES = {
    "data": {"index_images", "check_images"},
    "models": {"train_cyclegan"},
    "submission": {"write_images_zip"},
    "report": {"plot_training_curves", "plot_translation_grid", "score_images"},
}

#: What each building-block module holds (one name each, so a module emptied or swapped
#: with another fails here).
MODULES = {
    "data": "JpegImages",
    "model": "build_generator",
    "train": "train_cyclegan",
    "evaluate": "score",
    "submission": "translated_jpegs",
}


def _full(stage: str) -> set[str]:
    return {f"monet.{stage}.{name}" for name in STAGES[stage]}


def test_the_package_has_the_five_building_block_modules():
    for module, name in MODULES.items():
        imported = importlib.import_module(f"podium.pipelines.monet.{module}")
        assert hasattr(imported, name), f"{module}.py has no {name}"
        assert imported.__doc__ and imported.__doc__.strip(), f"{module}.py has no docstring"
    for old in ("cyclegan", "networks", "evaluation", "translate"):  # the names before
        assert importlib.util.find_spec(f"podium.pipelines.monet.{old}") is None, old


def test_every_node_is_in_a_stage_namespace_and_tagged_with_its_stage():
    pipeline = create_pipeline()
    assert STAGES.keys() <= STAGE_WORDS
    seen: dict[str, set[str]] = {}
    for node in pipeline.nodes:
        match = re.fullmatch(r"monet\.([a-z_]+)", node.namespace or "")
        assert match, f"{node.name} has namespace {node.namespace!r}, not monet.<stage>"
        stage = match[1]
        assert stage in STAGE_WORDS, node.name
        short = node.name.rsplit(".", 1)[-1]
        assert node.name == f"monet.{stage}.{short}"
        assert {stage, "monet"} <= node.tags, node.name
        assert not (node.tags & (STAGE_WORDS - {stage})), f"{node.name}: {node.tags}"
        seen.setdefault(stage, set()).add(short)
    assert seen == STAGES
    assert len({n.name for n in pipeline.nodes}) == len(pipeline.nodes)


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_stage_is_selected_by_its_tag_and_by_its_namespace(stage):
    pipeline = create_pipeline()
    by_tag = {n.name for n in pipeline.only_nodes_with_tags(stage).nodes}
    by_namespace = {n.name for n in pipeline.only_nodes_with_namespaces([f"monet.{stage}"]).nodes}
    assert by_tag == by_namespace == _full(stage)


def test_each_stage_reads_only_the_raw_inputs_and_what_earlier_stages_wrote():
    pipeline = create_pipeline()
    # the raw images, and the earlier runs' sub-models and checkpoints (for resuming)
    written = {"monet_raw", "monet_saved_sub_models", "monet_checkpoints"}
    for stage in ("data", "models", "submission", "report"):
        part = pipeline.only_nodes_with_namespaces([f"monet.{stage}"])
        needed = {name for name in part.inputs() if not name.startswith("params:")}
        assert needed <= written, (stage, needed - written)
        written |= part.all_outputs()
    submission = pipeline.only_nodes_with_namespaces(["monet.submission"])
    assert submission.inputs() >= {"monet_generator_photo_to_monet", "monet_photos"}


def test_namespaces_leave_dataset_and_parameter_names_as_they_were():
    pipeline = create_pipeline()
    for node in pipeline.nodes:
        for name in node.inputs + node.outputs:
            assert name.startswith(("monet_", "params:monet.", "params:runtime")), (
                node.name,
                name,
            )
    assert {"monet_raw", "params:monet.source", "params:runtime"} <= pipeline.inputs()
    assert {"monet_images_zip", "monet_scores"} <= pipeline.all_outputs()
