"""podium.core.params: typed blocks read as mappings, pickle, tell every problem under its
path, and log only what applies."""

from __future__ import annotations

import copy
import pickle
from typing import Annotated, Literal

import cloudpickle
import pytest

from podium.core.augment import Transforms
from podium.core.optim import OptimizerParams, SchedulerParams
from podium.core.params import (
    Int,
    Only,
    ParametersInvalid,
    Params,
    PositiveInt,
    RuntimeParams,
    by_position,
    configured,
)


class Member(Params):
    encoder: str
    depth: PositiveInt = 1


class Block(Params):
    block = "demo.models"
    members: dict[str, Member] = {}
    entries: list[Member] = []


def test_a_block_reads_as_a_read_only_mapping_of_every_field():
    runtime = RuntimeParams.model_validate({"device": "cpu", "dask": {"n_workers": 3}})
    assert runtime["device"] == "cpu" and runtime.get("missing", 7) == 7
    assert "num_workers" in runtime and list(runtime)[:2] == ["device", "precision"]
    assert {**runtime}["dask"]["n_workers"] == 3 and len(runtime) == len(dict(runtime))
    with pytest.raises(KeyError):
        runtime["num_worker"]
    with pytest.raises(Exception, match="frozen"):
        runtime.device = "cuda"


def test_what_was_configured_is_kept_apart_from_the_defaults():
    runtime = RuntimeParams.model_validate({"dask": {"n_workers": 3}})
    assert runtime.as_configured() == {"dask": {"n_workers": 3}}
    assert configured(runtime) == {"dask": {"n_workers": 3}} and configured({"a": 1}) == {"a": 1}
    assert runtime.num_workers == 2  # conf/base's


def test_every_problem_is_told_under_its_full_path_members_and_entries_included():
    given = {
        "members": {"m1": {"encoder": "x", "deph": 2}, "m2": {"depth": 0}},
        "entries": [{"encoder": "y"}, {"encoder": 3}],
        "extra": 1,
    }
    with pytest.raises(ParametersInvalid) as error:
        Block.model_validate(given)
    paths = [path for path, _ in error.value.problems]
    assert paths == [
        "demo.models.members.m1.deph",
        "demo.models.members.m2.encoder",
        "demo.models.members.m2.depth",
        "demo.models.entries[1].encoder",
        "demo.models.extra",
    ]
    text = str(error.value)
    assert "did you mean 'depth'?" in text and "expected a value >= 1, got 0" in text
    assert "Fix: edit conf/base/parameters_demo.yml" in text


def test_a_model_made_by_at_pickles_with_its_path_and_what_was_set():
    optimizer = OptimizerParams.at("demo.optimizer").model_validate({"name": "sgd", "lr": 0.1})
    augment = Transforms.at("demo.augment").model_validate([{"name": "HorizontalFlip"}])
    for value in (optimizer, augment):
        for again in (
            pickle.loads(pickle.dumps(value)),
            cloudpickle.loads(cloudpickle.dumps(value)),
        ):
            assert type(again) is type(value) and again == value
            assert again.as_configured() == value.as_configured()
        assert copy.deepcopy(value) == value
    assert type(optimizer).block == "demo.optimizer"


@pytest.mark.parametrize(
    ("optimizer", "logged"),
    [
        ({"name": "adamw", "lr": 0.1, "momentum": 0.9}, {"name": "adamw", "lr": 0.1}),
        ({"name": "sgd", "lr": 0.1, "momentum": 0.9, "betas": [0.9, 0.99]}, None),
    ],
)
def test_only_the_keys_the_chosen_optimizer_uses_are_logged(optimizer, logged):
    model = OptimizerParams.model_validate(optimizer)
    expected = logged or {"name": "sgd", "lr": 0.1, "momentum": 0.9}
    assert model.as_logged() == expected
    assert model.as_configured() == {
        **optimizer,
        **({"betas": [0.9, 0.99]} if "betas" in optimizer else {}),
    }


def test_only_the_keys_the_chosen_schedule_uses_are_logged():
    every = {"per": "epoch", "min_lr": 1e-6, "step_size": 2, "decay_rate": 0.5, "patience": 1}
    assert SchedulerParams.model_validate({"name": "cosine", **every}).as_logged() == {
        "name": "cosine",
        "per": "epoch",
        "min_lr": 1e-6,
    }
    assert SchedulerParams.model_validate({"name": "step", **every}).as_logged() == {
        "name": "step",
        "per": "epoch",
        "step_size": 2,
        "decay_rate": 0.5,
    }


def test_a_key_marked_only_is_logged_under_its_choices_alone_and_still_accepted():
    class Demo(Params):
        kind: Literal["a", "b", "c"] = "a"
        shared: Int = 1
        for_a: Annotated[Int, Only("kind", "a")] = 2
        for_b_or_c: Annotated[Int | None, Only("kind", "b", "c")] = None

    every = {"shared": 1, "for_a": 2, "for_b_or_c": 3}
    assert Demo.model_validate({"kind": "a", **every}).as_logged() == {
        "kind": "a", "shared": 1, "for_a": 2
    }  # fmt: skip
    for kind in ("b", "c"):
        model = Demo.model_validate({"kind": kind, **every})
        assert model.not_applicable() == {"for_a"}
        assert model.as_logged() == {"kind": kind, "shared": 1, "for_b_or_c": 3}
        assert model.as_configured() == {"kind": kind, **every}  # digests keep every key
    with pytest.raises(TypeError, match="Only\\(\\) names no field 'knd'"):

        class Misspelt(Params):
            kind: str = "a"
            size: Annotated[Int, Only("knd", "a")] = 1


def test_a_list_of_blocks_is_numbered_and_nothing_else_is():
    assert by_position([{"a": 1}, {"b": 2}]) == {"0": {"a": 1}, "1": {"b": 2}}
    assert by_position([1, 2]) is None and by_position([]) is None and by_position({}) is None
