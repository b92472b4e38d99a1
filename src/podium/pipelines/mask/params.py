"""The mask pipeline's parameter blocks (conf/base/parameters_mask.yml), typed: Kedro
checks them when the session starts, before the first node (see podium.core.params)."""

from __future__ import annotations

from podium.core.optim import OptimizerParams, SchedulerParams

MaskOptimizerParams = OptimizerParams.at("mask.optimizer")
MaskSchedulerParams = SchedulerParams.at("mask.scheduler")
