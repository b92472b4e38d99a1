"""The write-ups' stages, one shape for every pipeline.

Each stage of a pipeline is a namespace ``<pipeline>.<stage>`` (one box in kedro-viz,
``kedro run --namespaces=<pipeline>.<stage>`` runs it) and a tag ``<stage>`` (``kedro run
--pipelines=<pipeline> --tags=<stage>``); a node's full name is
``<pipeline>.<stage>.<name>``. Dataset and parameter names carry no namespace.

A stage that reads a store its own nodes write by path (the face cache, the crop store)
is a stage of its own: kedro-viz draws a collapsed stage as one node from all its inputs to
all its outputs, and an index (intermediate) drawn after a store (primary) would put the
layers in a cycle, which turns kedro-viz's layer bands off.
"""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

#: Every stage word, in the order the stages run.
STAGE_WORDS = ("data", "faces", "crops", "split", "models", "scoring", "submission", "report")


def stage(pipeline: str, name: str, stage_nodes: Iterable[Node]) -> Pipeline:
    """``stage_nodes`` in the namespace ``<pipeline>.<name>`` and tagged ``name`` (beside
    their own tags); their dataset and parameter names stay as they are."""
    if name not in STAGE_WORDS:
        raise ValueError(f"stage {name!r} of {pipeline}: use one of {', '.join(STAGE_WORDS)}")
    return Pipeline(
        list(stage_nodes),
        namespace=f"{pipeline}.{name}",
        prefix_datasets_with_namespace=False,
        tags=name,
    )
