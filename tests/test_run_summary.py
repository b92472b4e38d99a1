"""Run names from --params, the headline metric and description, the last line."""

from __future__ import annotations

from podium.ablation.grid import flatten
from podium.run_summary import HEADLINES, description, run_name


def test_a_run_is_named_after_its_pipeline_and_what_the_command_line_changed():
    assert run_name(["deepfake"], None) == "deepfake"
    params = {"deepfake": {"split": {"strategy": "folder"}, "seed": 1}, "runtime.device": "cpu"}
    assert run_name(["deepfake"], params) == (
        "deepfake: seed=1, split.strategy=folder, runtime.device=cpu"
    )
    assert run_name(["mask", "uda"], {"mask.seed": 2}) == "mask+uda: mask.seed=2"
    long = run_name(["uda"], {"uda": {f"k{i}": "x" * 10 for i in range(20)}})
    assert len(long) == 120 and long.endswith("…")


def test_overrides_are_flattened_whether_given_nested_or_dotted():
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e.f": [1, 2]}) == {
        "a.b": 1,
        "a.c.d": None,
        "e.f": [1, 2],
    }


def test_the_description_gives_the_score_what_it_measures_and_the_settings_that_matter():
    parameters = {
        "deepfake": {
            "split": {"strategy": "person_cluster"},
            "training": {"models": [{"name": "a", "backbone": "resnet10t"}, {"backbone": "b0"}]},
            "video_score": {"rule": "confident_strategy"},
            "calibration": {"target_prior": None},
        }
    }
    text = description("deepfake", HEADLINES["deepfake"], 0.693147, parameters)
    assert text == (
        "deepfake/score = 0.6931 (test video log loss, lower is better) · split: person_cluster"
        " · models: resnet10t+b0 · video rule: confident_strategy · target prior: null"
    )
    uda = {"uda": {"training": {"regime": "self_training"}, "models": {"m1": {"encoder": "x"}}}}
    assert description("uda", HEADLINES["uda"], 0.25, uda).endswith(
        "regime: self_training · models: x"
    )
