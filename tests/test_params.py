"""Typed parameters across the project: conf/base and conf/full validate for every
registered pipeline, every block a node reads is typed, each typed block's defaults are
conf/base's, and a typed block reaches MLflow leaf by leaf."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import get_type_hints

import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.project import find_pipelines
from kedro.framework.startup import bootstrap_project
from kedro.validation.utils import _unwrap_optional

from podium.core.params import ParametersInvalid, Params, TypedBlock
from podium.hooks import TypedParametersHooks, check_typed_parameters
from podium.settings import CONFIG_LOADER_ARGS
from tests.conftest import REPO

bootstrap_project(REPO)
PIPELINES = find_pipelines(raise_errors=True)
NAMES = sorted(name for name in PIPELINES if name != "__default__")


def parameters(env: str) -> dict:
    args = {k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    return OmegaConfigLoader(conf_source=str(REPO / "conf"), default_run_env=env, **args)[
        "parameters"
    ]


def _resolve(tree: Mapping, key: str):
    for part in key.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return None
        tree = tree[part]
    return tree


def typed_inputs(pipeline) -> dict[str, type]:
    """``{parameter key: annotation}`` for every ``params:`` input of the pipeline's nodes."""
    found: dict[str, type] = {}
    for node in pipeline.nodes:
        hints = get_type_hints(node.func)
        names = list(inspect.signature(node.func).parameters)
        inputs = node._inputs  # {argument: dataset}, or datasets in argument order
        if isinstance(inputs, dict):
            pairs = [(dataset, argument) for argument, dataset in inputs.items()]
        else:
            pairs = list(zip(node.inputs, names, strict=False))
        for dataset, argument in pairs:
            if dataset.startswith("params:"):
                found[dataset.removeprefix("params:")] = hints.get(argument)
    return found


@pytest.mark.parametrize("env", ["base", "full"])
@pytest.mark.parametrize("name", NAMES)
def test_each_environment_validates_for_each_pipeline(name, env):
    check_typed_parameters(parameters(env), {name: PIPELINES[name]})


@pytest.mark.parametrize("name", NAMES)
def test_every_block_a_node_reads_is_typed(name):
    """A mapping read as ``params:<block>`` without a model would be checked by nothing
    before its node runs; a sub-block of a typed block is checked with it."""
    config = parameters("base")
    inputs = typed_inputs(PIPELINES[name])
    typed = {key for key, hint in inputs.items() if hint and _is_block(hint)}
    untyped = [
        key
        for key, hint in inputs.items()
        if isinstance(_resolve(config, key), Mapping | list)
        and key not in typed
        and not any(key.startswith(f"{parent}.") for parent in _all_typed())
    ]
    assert not untyped, f"{name}: blocks read without a typed model: {untyped}"


def _is_block(hint) -> bool:
    model = _unwrap_optional(hint)
    return inspect.isclass(model) and issubclass(model, TypedBlock)


def _all_typed() -> set[str]:
    return {
        key
        for pipeline in PIPELINES.values()
        for key, hint in typed_inputs(pipeline).items()
        if hint and _is_block(hint)
    }


def test_no_block_is_typed_together_with_one_of_its_sub_blocks():
    """Kedro's validator cannot set a sub-block's model inside a block's model it built."""
    typed = _all_typed()
    nested = sorted(k for k in typed if any(k.startswith(f"{p}.") for p in typed))
    assert not nested


def _models() -> dict[str, type[Params]]:
    out = {}
    for pipeline in PIPELINES.values():
        for key, hint in typed_inputs(pipeline).items():
            if hint and _is_block(hint):
                out[key] = _unwrap_optional(hint)
    return out


@pytest.mark.parametrize("key", sorted(_models()))
def test_a_blocks_model_names_its_path_and_its_defaults_are_conf_base(key):
    model = _models()[key]
    assert model.block == key, f"{model.__name__}.block is {model.block!r}, read at {key!r}"
    if not issubclass(model, Params):
        return  # a list (albumentations): no defaults
    base = _resolve(parameters("base"), key)
    try:
        defaults = model()
    except ParametersInvalid:
        pytest.skip(f"{model.__name__} has required keys")
    except Exception:  # pydantic's own error: required keys
        pytest.skip(f"{model.__name__} has required keys")
    assert model.model_validate(base).as_dict() == defaults.as_dict(), (
        f"{model.__name__}'s defaults differ from conf/base's {key}"
    )


def test_a_typo_in_one_pipelines_file_is_reported_whichever_pipeline_runs():
    config = parameters("base")
    config["mask"]["train"]["epochz"] = 3
    config["runtime"]["num_worker"] = 1
    with pytest.raises(ParametersInvalid) as error:
        check_typed_parameters(config, dict(PIPELINES))
    text = str(error.value)
    assert "mask.train.epochz: unknown key; did you mean 'epochs'?" in text
    assert "runtime.num_worker: unknown key; did you mean 'num_workers'?" in text
    assert "conf/base/parameters.yml" in text and "conf/base/parameters_mask.yml" in text


def test_a_block_under_its_former_name_is_told_where_it_went():
    config = parameters("base")
    config["sample_data"]["dfdc"] = config["sample_data"].pop("deepfake")
    with pytest.raises(ParametersInvalid, match=r"sample_data\.dfdc: renamed: write it as "
                       r"sample_data\.deepfake"):  # fmt: skip
        check_typed_parameters(config, dict(PIPELINES))


def test_typed_blocks_reach_kedro_mlflow_as_the_dictionaries_the_configuration_wrote():
    from podium.core.params import RuntimeParams

    runtime = RuntimeParams.model_validate({"device": "cpu", "dask": {"n_workers": 3}})
    inputs = {"params:runtime": runtime, "data": [1, 2]}
    TypedParametersHooks().before_node_run(node=None, inputs=inputs)
    assert inputs == {"params:runtime": {"device": "cpu", "dask": {"n_workers": 3}}, "data": [1, 2]}


def test_a_block_another_block_switched_off_is_not_logged_by_the_node_reading_both():
    from typing import ClassVar, Literal

    from kedro_mlflow.framework.hooks.mlflow_hook import _flatten_dict

    from podium.core.params import Params

    class Split(Params):
        block: ClassVar[str] = "demo.split"
        strategy: Literal["folder", "person_cluster"] = "folder"

    class Embedding(Params):
        block: ClassVar[str] = "demo.embedding"
        only_when = ("demo.split", "strategy", ("person_cluster",))
        size: int = 32

    embedding = Embedding.model_validate({"size": 16})
    for strategy, logged in (("folder", {}), ("person_cluster", {"demo.embedding.size": 16})):
        split = Split.model_validate({"strategy": strategy})
        inputs = {"params:demo.split": split, "params:demo.embedding": embedding}
        TypedParametersHooks().before_node_run(node=None, inputs=inputs)
        flat = _flatten_dict({k[7:]: v for k, v in inputs.items()}, recursive=True, sep=".")
        assert flat == {"demo.split.strategy": strategy, **logged}
    alone = {"params:demo.embedding": embedding}  # the chooser not read here: logged as it is
    TypedParametersHooks().before_node_run(node=None, inputs=alone)
    assert alone == {"params:demo.embedding": {"size": 16}}


def test_a_list_of_blocks_is_logged_entry_by_entry_and_reproduce_compares_it_so():
    from podium.ablation.reproduce import param_drift
    from podium.core.augment import Transforms

    augment = Transforms.at("mask.augment").model_validate([{"name": "HorizontalFlip", "p": 0.5}])
    inputs = {"params:mask.augment": augment}
    TypedParametersHooks().before_node_run(node=None, inputs=inputs)
    assert inputs == {"params:mask.augment": {"0": {"name": "HorizontalFlip", "p": 0.5}}}
    logged = {"mask.augment.0.name": "HorizontalFlip", "mask.augment.0.p": "0.5"}
    now = {"mask": {"augment": [{"name": "HorizontalFlip", "p": 0.7}]}}
    assert param_drift(logged, now) == {"mask.augment.0.p": ("0.5", "0.7")}


def test_the_fix_names_where_each_bad_value_was_set(tmp_path):
    from podium.hooks import ParameterSources

    conf = tmp_path / "conf"
    (conf / "full").mkdir(parents=True)
    (conf / "full" / "parameters_deepfake.yml").write_text(
        "deepfake:\n  training:\n    epochz: 3\n    models: [{backbone: resnet10t}]\n"
    )
    sources = ParameterSources(conf, "full", {"mask": {"train": {"epochz": 1}}})
    assert sources("deepfake.training.epochz") == "conf/full/parameters_deepfake.yml"
    assert sources("deepfake.training.models[0].architecture") == (
        "conf/full/parameters_deepfake.yml"  # the list was written whole there
    )
    assert sources("mask.train.epochz") == "--params"
    assert sources("uda.training.iterations") == "conf/base/parameters_uda.yml"
    error = ParametersInvalid([("mask.train.epochz", "unknown key")])
    assert str(error).endswith(
        "Fix: edit conf/base/parameters_mask.yml (or override with --params)."
    )
    told = str(error.told_where(sources))
    assert told.endswith("Fix: correct the --params value (the block's file: "
                         "conf/base/parameters_mask.yml).")  # fmt: skip
    both = ParametersInvalid([("mask.train.epochz", "x"), ("deepfake.training.epochz", "y")])
    assert str(both.told_where(sources)).endswith(
        "Fix: correct the --params value, and edit conf/full/parameters_deepfake.yml."
    )
