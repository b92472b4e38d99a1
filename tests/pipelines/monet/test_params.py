"""The monet parameter blocks, typed (podium.pipelines.monet.params): conf/base and
conf/full validate, every ablation point validates, a bad key or value is refused naming
its full path, the allowed values and the file, before any node runs; the defaults are
conf/base's; the checkpoint folder's digest is what the plain dictionaries gave."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, get_args

import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from mlflow.tracking import MlflowClient

from podium.ablation.grid import check_against_project, load_grid
from podium.ablation.plan import nest, plan_runs
from podium.core.config import ParameterError
from podium.core.params import ParametersInvalid, RuntimeParams
from podium.core.resume import CHECKPOINT_FORMAT, short_digest
from podium.hooks import check_typed_parameters
from podium.layouts.monet import SOURCES
from podium.pipelines.monet import nodes
from podium.pipelines.monet import train as training
from podium.pipelines.monet.params import (
    MonetDataParams,
    MonetEvaluationParams,
    MonetGenerateParams,
    MonetLossParams,
    MonetModelParams,
    MonetOptimizerParams,
    MonetReportParams,
    MonetTrainParams,
    Source,
)
from podium.pipelines.monet.pipeline import create_pipeline
from podium.sample_data.monet import generate_monet_sample
from podium.settings import CONFIG_LOADER_ARGS
from tests.conftest import (
    TINY_SAMPLE,
    assert_refused_at_the_door,
    data_files,
    kedro_run,
    make_project,
    soft_merged,
    write_tree,
)

REPO = Path(__file__).resolve().parents[3]
FILE = "conf/base/parameters_monet.yml"
MODELS = {
    "data": MonetDataParams,
    "model": MonetModelParams,
    "loss": MonetLossParams,
    "optimizer": MonetOptimizerParams,
    "train": MonetTrainParams,
    "generate": MonetGenerateParams,
    "evaluation": MonetEvaluationParams,
    "report": MonetReportParams,
}
GRIDS = sorted((REPO / "conf" / "base" / "ablations").glob("monet_*.yml"))


def parameters(env: str) -> dict[str, Any]:
    """The project's parameters for ``env`` (conf/base alone, or conf/base + conf/<env>),
    merged as podium's settings merge them."""
    loader = OmegaConfigLoader(
        conf_source=str(REPO / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env}
    )
    return loader["parameters"]


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return parameters("base")


def check(params: dict[str, Any]) -> None:
    """What the session does when it starts: every typed block of the monet pipeline."""
    check_typed_parameters(params, {"monet": create_pipeline()})


merged = soft_merged  # as --params and conf/full merge into conf/base


# ------------------------------------------------------------------ (a) the conf validates


@pytest.mark.parametrize("env", ["base", "full"])
def test_conf_base_and_full_validate(env):
    params = parameters(env)
    check(params)  # raises ParametersInvalid otherwise
    monet = params["monet"]
    blocks = {name: model.model_validate(monet[name]) for name, model in MODELS.items()}
    assert {type(b) for b in blocks.values()} == set(MODELS.values())
    training.check_training(*(monet[k] for k in ("data", "train", "loss", "optimizer", "model")))
    RuntimeParams.model_validate(params["runtime"])
    assert monet["source"] in get_args(Source)


def test_the_source_choices_are_the_layouts():
    assert set(get_args(Source)) == set(SOURCES)


def test_the_nodes_read_their_blocks_as_the_models():
    """Kedro builds the models from these annotations: every block a node reads is typed."""
    from kedro.validation.type_extractor import TypeExtractor

    found = TypeExtractor({"monet": create_pipeline()}).extract_types_from_pipelines()
    expected = {f"monet.{name}": model for name, model in MODELS.items()}
    assert found == expected | {"runtime": RuntimeParams}


@pytest.mark.parametrize("env", ["base", "full"])
@pytest.mark.parametrize("grid_path", GRIDS, ids=lambda p: p.stem)
def test_every_ablation_point_validates(grid_path, env):
    grid = load_grid(grid_path)
    params = parameters(env)
    check_against_project(grid, ["monet", "__default__"], params)
    runs = plan_runs(grid, grid.seeds or (0,), {})
    assert {run.point for run in runs} == set(grid.points) and len(grid.points) > 1
    for run in runs:
        point = merged(params, nest(run.overrides))
        check(point)
        monet = point["monet"]
        blocks = training.check_training(
            *(monet[k] for k in ("data", "train", "loss", "optimizer", "model"))
        )
        for key, value in run.overrides.items():  # each override reached its block
            _, block, *leaf = key.split(".")
            if block in blocks:
                assert blocks[block][leaf[0]] == value, (run.label, key)


def test_a_grid_point_with_a_bad_value_would_be_refused(base):
    """The grid check above can fail: a point spelling a padding wrong is refused."""
    point = merged(base, nest({"monet.model.padding": "zeros"}))
    with pytest.raises(ParametersInvalid, match=r"monet\.model\.padding.*did you mean 'zero'"):
        check(point)


# -------------------------------------------------------- (b) bad keys and values, named

#: (overrides, the full path named, what the message says about it)
BAD = [
    ({"data": {"crop_sise": 64}}, "monet.data.crop_sise", "did you mean 'crop_size'"),
    ({"data": {"crop_size": 4}}, "monet.data.crop_size", ">= 8"),
    ({"data": {"load_size": 32}}, "monet.data.load_size", "smaller than crop_size 64"),
    ({"data": {"flip": "yes"}}, "monet.data.flip", "valid boolean"),
    ({"model": {"n_block": 9}}, "monet.model.n_block", "did you mean 'n_blocks'"),
    ({"model": {"generator": "resnet9"}}, "monet.model.generator", "allowed values: resnet, unet"),
    ({"model": {"padding": "same"}}, "monet.model.padding", "reflect, replicate, zero"),
    ({"model": {"ngf": 1.5}}, "monet.model.ngf", "valid integer"),
    ({"loss": {"lambda_cycel": 5.0}}, "monet.loss.lambda_cycel", "did you mean 'lambda_cycle'"),
    ({"loss": {"lambda_identity": -1.0}}, "monet.loss.lambda_identity", ">= 0"),
    ({"optimizer": {"beta_1": 0.5}}, "monet.optimizer.beta_1", "did you mean 'beta1'"),
    ({"optimizer": {"beta2": 1.5}}, "monet.optimizer.beta2", "<= 1"),
    ({"train": {"n_epoch": 9}}, "monet.train.n_epoch", "did you mean 'n_epochs'"),
    ({"train": {"resume_form": "latest"}}, "monet.train.resume_form", "'resume_from'"),
    ({"train": {"epoch_size": "all"}}, "monet.train.epoch_size", "allowed values: max, min"),
    (
        {"train": {"lr_decay_timing": "late"}},
        "monet.train.lr_decay_timing",
        "allowed values: after_n_epochs, reference",
    ),
    ({"train": {"resume_from": True}}, "monet.train.resume_from", "valid string"),
    ({"train": {"epochs_this_run": 0}}, "monet.train.epochs_this_run", ">= 1"),
    ({"generate": {"jpeg_qualty": 90}}, "monet.generate.jpeg_qualty", "'jpeg_quality'"),
    ({"generate": {"jpeg_quality": 100}}, "monet.generate.jpeg_quality", "<= 95"),
    ({"generate": {"input_size": 4}}, "monet.generate.input_size", ">= 8"),
    ({"evaluation": {"batch_sise": 8}}, "monet.evaluation.batch_sise", "'batch_size'"),
    ({"evaluation": {"image_size": 64}}, "monet.evaluation.image_size", ">= 75"),
    ({"evaluation": {"fid_method": "sqrtm"}}, "monet.evaluation.fid_method", "torchmetrics"),
    ({"report": {"grid_photo": 2}}, "monet.report.grid_photo", "did you mean 'grid_photos'"),
    ({"report": {"grid_photos": 0}}, "monet.report.grid_photos", ">= 1"),
]


@pytest.mark.parametrize(("overrides", "path", "says"), BAD, ids=[b[1] for b in BAD])
def test_a_bad_key_or_value_is_refused_naming_it(base, overrides, path, says):
    with pytest.raises(ParametersInvalid) as caught:
        check(merged(base, {"monet": overrides}))
    error = caught.value
    assert [p for p, _ in error.problems] == [path]
    line = next(line for line in str(error).splitlines() if line.strip().startswith(path))
    assert re.search(says, line), line
    assert FILE in str(error)


def test_every_bad_block_is_reported_at_once_and_runtime_names_its_own_file(base):
    bad = {
        "monet": {"train": {"n_epoch": 9}, "evaluation": {"batch_size": 0}},
        "runtime": {"precison": "fp32"},
    }
    with pytest.raises(ParametersInvalid) as caught:
        check(merged(base, bad))
    paths = {p for p, _ in caught.value.problems}
    assert paths == {"monet.train.n_epoch", "monet.evaluation.batch_size", "runtime.precison"}
    assert FILE in str(caught.value) and "conf/base/parameters.yml" in str(caught.value)
    assert "did you mean 'precision'" in str(caught.value)


def test_a_plain_dict_is_validated_where_a_building_block_takes_it():
    """From a notebook: the builders and scorers validate a dictionary as the block."""
    from podium.pipelines.monet.model import build_generator

    with pytest.raises(ParametersInvalid, match=r"monet\.model\.generator.*resnet, unet"):
        build_generator({"generator": "resnet9"})
    with pytest.raises(ParametersInvalid, match=r"monet\.train\.epoch_size.*max, min"):
        training.check_training({}, {"epoch_size": "all"}, {}, {}, {})
    with pytest.raises(ParameterError, match=r"monet\.model\.unet_downs.*crop_size"):
        training.check_training({}, {}, {}, {}, {"generator": "unet", "unet_downs": 7})
    net = build_generator({"ngf": 4, "n_blocks": 1})  # the rest from the defaults
    assert sum(p.numel() for p in net.parameters()) > 0


# ---------------------------------------------------------------- (d) defaults = conf/base


@pytest.mark.parametrize("name", MODELS)
def test_the_defaults_are_conf_base(base, name):
    written = base["monet"][name]
    defaults = MODELS[name]().as_dict()
    assert set(written) == set(defaults)  # conf/base sets every key of the block
    assert defaults == written
    assert MODELS[name].model_validate({}) == MODELS[name].model_validate(written)


# ------------------------------------------- the checkpoint digest: as the dictionaries'

PHOTOS = pd.DataFrame({"domain": ["photo"] * 2, "path": ["p/a.jpg", "p/b.jpg"], "name": ["a", "b"]})
MONETS = pd.DataFrame({"domain": ["monet"], "path": ["m/c.jpg"], "name": ["c"]})
RUNTIME = {"device": "cpu", "precision": "fp32", "num_workers": 0}
#: The folder conf/base's plain dictionaries gave before the blocks were typed.
BASE_DIGEST = "6a6404bc7d27449c"


class Stop(Exception):
    pass


def _folder(monkeypatch, tmp_path, blocks: dict, runtime: Any) -> str:
    """The checkpoint folder train_cyclegan names for ``blocks`` (no training run)."""

    def stop(*args, checkpoint, **kwargs):
        raise Stop(Path(checkpoint).parent.name)

    monkeypatch.setattr(training, "train_cyclegan", stop)
    monkeypatch.setattr(nodes, "_resume_file", lambda *args: None)  # nothing saved here
    with pytest.raises(Stop) as caught:
        nodes.train_cyclegan(
            PHOTOS, MONETS, {}, tmp_path, **blocks, seed=42, deterministic=True, runtime=runtime
        )
    return str(caught.value)


def test_the_checkpoint_folder_digest_is_unchanged_and_ignores_the_run_keys(
    base, monkeypatch, tmp_path
):
    names = ("data", "model", "loss", "optimizer", "train")
    plain = {name: base["monet"][name] for name in names}
    typed = {name: MODELS[name].model_validate(plain[name]) for name in names}
    runtime = RuntimeParams.model_validate(RUNTIME)
    assert _folder(monkeypatch, tmp_path, typed, runtime) == BASE_DIGEST
    assert _folder(monkeypatch, tmp_path, plain, RUNTIME) == BASE_DIGEST
    # the old computation, from the dictionaries as Kedro handed them
    settings = nodes.resolve_runtime(RUNTIME)
    shaping = nodes._shaping(PHOTOS, MONETS, settings, seed=42, deterministic=True, **plain)
    assert short_digest({"format": CHECKPOINT_FORMAT, **shaping}) == BASE_DIGEST
    # how far a run goes is no part of what it trains: latest finds the same folder
    for train in ({"resume_from": "latest"}, {"epochs_this_run": 1, "resume_from": "v1"}):
        again = typed | {"train": MonetTrainParams.model_validate(plain["train"] | train)}
        assert _folder(monkeypatch, tmp_path, again, runtime) == BASE_DIGEST
    # what it trains is
    other = typed | {"train": MonetTrainParams.model_validate(plain["train"] | {"pool_size": 0})}
    assert _folder(monkeypatch, tmp_path, other, runtime) != BASE_DIGEST


# ----------------------------------------- (c) a late block's typo stops the run at once


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    root = make_project(tmp_path / "project", {"runtime": {"num_workers": 0}}, git=False)
    write_tree(
        generate_monet_sample(TINY_SAMPLE["sample_data"]["monet"], seed=3),
        root / "data" / "01_raw" / "monet",
    )
    monkeypatch.chdir(root)
    return root


def test_a_typo_in_the_scoring_block_stops_the_run_before_any_node(project):
    # A project's MLflow store exists after its first run; creating one (kedro-mlflow does
    # it when the context is created) takes seconds of schema migrations, no part of this.
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    client.search_experiments()
    raw = data_files(project)
    assert raw and all("01_raw" in p.parts for p in raw)
    started = time.monotonic()
    with pytest.raises(ParametersInvalid) as caught:
        # monet.evaluation is read by monet.report.score_images, the last node
        kedro_run(project, "monet", {"monet": {"evaluation": {"batch_sise": 8}}})
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert "monet.evaluation.batch_sise" in message and "did you mean 'batch_size'" in message
    assert FILE in message
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert_refused_at_the_door(project, raw)  # nothing indexed, checked, trained or scored


def test_the_other_generators_depth_is_not_logged():
    both = {"n_blocks": 9, "unet_downs": 5}
    resnet = MonetModelParams.model_validate({"generator": "resnet", **both})
    unet = MonetModelParams.model_validate({"generator": "unet", **both})
    assert resnet.as_logged() == {"generator": "resnet", "n_blocks": 9}
    assert unet.as_logged() == {"generator": "unet", "unet_downs": 5}
