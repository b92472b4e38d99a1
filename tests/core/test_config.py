from __future__ import annotations

import pytest

from podium.core.config import ParameterError, check_choice, check_keys, check_range, parameter_file


def test_check_choice_returns_allowed_value():
    assert check_choice("mask.loss", "focal", ["ce", "focal"]) == "focal"


def test_check_choice_names_parameter_value_allowed_and_file():
    with pytest.raises(ParameterError) as info:
        check_choice("deepfake.model.pooling", "meen", ["mean", "max", "median"])
    message = str(info.value)
    assert "deepfake.model.pooling" in message
    assert "'meen'" in message
    assert "max, mean, median" in message  # sorted
    assert "did you mean 'mean'" in message
    assert "conf/base/parameters_deepfake.yml" in message
    assert isinstance(info.value, ValueError)
    assert info.value.parameter == "deepfake.model.pooling"


def test_check_choice_long_list_suggests_close_matches_and_count():
    allowed = [f"model_{i:04d}" for i in range(500)] + ["efficientnet_b0"]
    with pytest.raises(ParameterError) as info:
        check_choice("x.backbone", "efficientnet-b0", allowed, hint="see the list")
    message = str(info.value)
    assert "efficientnet_b0" in message and "501 allowed values" in message
    assert "model_0001" not in message.split("Fix")[0].replace("did you mean", "")
    assert "see the list" in message


def test_check_choice_rejects_non_string_even_if_equal_text():
    with pytest.raises(ParameterError):
        check_choice("x.n", 1, ["1", "2"])


def test_check_keys_unknown_and_missing():
    assert check_keys("mask.optimizer", {"lr": 1}, ["lr", "momentum"]) == {"lr": 1}
    with pytest.raises(
        ParameterError, match=r"unknown key\(s\) 'mometum'.*did you mean 'momentum'"
    ):
        check_keys("mask.optimizer", {"mometum": 0.9}, ["lr", "momentum"])
    with pytest.raises(ParameterError, match="missing required key.*lr"):
        check_keys("mask.optimizer", {}, ["lr"], required=["lr"])
    with pytest.raises(ParameterError, match="expected a mapping"):
        check_keys("mask.optimizer", ["lr"], ["lr"])  # type: ignore[arg-type]


def test_check_range():
    assert check_range("uda.ema", 0.99, low=0, high=1) == 0.99
    with pytest.raises(ParameterError, match=r"outside \[0, 1\]"):
        check_range("uda.ema", 1.5, low=0, high=1)
    with pytest.raises(ParameterError, match="expected a number"):
        check_range("uda.ema", True, low=0)


def test_parameter_file_and_where_override():
    assert parameter_file("monet.loss.cycle") == "conf/base/parameters_monet.yml"
    assert parameter_file("seed") == "conf/base/parameters_<pipeline>.yml"
    with pytest.raises(ParameterError, match="conf/local/x.yml"):
        check_choice("a.b", "z", ["y"], where="conf/local/x.yml")


def test_integers_and_image_sizes_are_checked_with_the_parameter_named():
    import numpy as np

    from podium.core.config import check_int, check_size

    assert check_int("x.n", np.int64(3), low=1) == 3
    for bad in (True, 2.5, "3", 0):
        with pytest.raises(ParameterError, match="x.n"):
            check_int("x.n", bad, low=1)
    assert check_size("x.size", 64) == (64, 64)
    assert check_size("x.size", [48, 64]) == (48, 64)
    for bad in ("64", [64], [64, 64.0], 4):
        with pytest.raises(ParameterError, match="x.size"):
            check_size("x.size", bad, minimum=8)
