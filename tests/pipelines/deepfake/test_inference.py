"""deepfake inference: scoring new videos as the training run scores its test videos,
resumably, over Dask (a worker killed mid-run loses no video), with timings and costs."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch

from podium.core.config import ParameterError
from podium.core.distributed import dask_client, iter_items
from podium.pipelines.deepfake import inference, nodes
from podium.pipelines.deepfake.data import extract_videos, face_index, face_rows
from podium.pipelines.deepfake.params import InferenceParams, TrainingParams
from podium.pipelines.deepfake.submission import submission_table
from podium.pipelines.deepfake.train import _network, predict_frame_models
from podium.sample_data.deepfake import encode_mp4, generate_deepfake_sample
from tests.conftest import ONE_FAMILY

EXTRACTION = {"n_frames": 4, "crop_size": 64}
TRAINING = {
    "models": [
        {"name": "a", "architecture": "classifier", "backbone": "resnet10t", "seed_offset": 0},
        {"name": "b", "architecture": "classifier", "backbone": "resnet10t", "seed_offset": 1},
    ],
    "image_size": 48,
    "predict_batch_size": 3,  # smaller than a video's crops: batches must not span videos
    "progress": False,
}
VIDEO_SCORE = {"rule": "confident_strategy", "band_low": 0.2, "band_high": 0.8}
CALIBRATION = {"factor": 0.7, "shift": -0.3, "low": 0.01, "high": 0.99}
RUNTIME = {"device": "cpu", "num_workers": 0}
SETTINGS = {"videos_per_task": 2, "prefetch": 1, "window": 4, "device": "cpu"}


def _state_dicts() -> dict:
    """Two models x two folds of untrained networks, each its own seed."""
    config = TrainingParams.model_validate(TRAINING)
    out = {}
    for i, spec in enumerate(config["models"]):
        for fold in range(2):
            torch.manual_seed(10 * i + fold)
            net = _network(spec, config, pretrained=False)
            out[f"{spec['name']}/fold{fold}"] = {k: v.clone() for k, v in net.state_dict().items()}
    return out


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Six real mp4s (the sample generator's faces), a truncated one and a face-less one."""
    root = tmp_path_factory.mktemp("score")
    sample = {
        "n_parts": 1,
        "reals_per_part": 3,
        "fakes_per_real": 1,
        "actors_per_part": 3,
        "n_test_videos": 0,
        "seconds": 1.0,
        "width": 160,
        "height": 120,
    }
    folder = root / "videos"
    folder.mkdir()
    for relpath, data in generate_deepfake_sample({**sample, **ONE_FAMILY}, seed=3).items():
        if relpath.endswith(".mp4"):
            (folder / relpath.rsplit("/", 1)[-1]).write_bytes(data)
    first = sorted(folder.glob("*.mp4"))[0].read_bytes()
    (folder / "truncated.mp4").write_bytes(first[: len(first) // 3])
    rng = np.random.default_rng(1)
    frames = [np.clip(rng.normal(110, 25, (120, 160, 3)), 0, 255).astype(np.uint8)] * 8
    (folder / "noface.mp4").write_bytes(encode_mp4(frames, fps=15))
    return folder


@pytest.fixture(scope="module")
def ensemble():
    state_dicts = _state_dicts()
    scorer = inference.build_scorer(
        training=TRAINING,
        extraction=EXTRACTION,
        video_score=VIDEO_SCORE,
        prior=0.75,
        calibration=CALIBRATION,
        stacker=None,
        replace_mean=False,
        weights=inference.weights_digest(state_dicts),
    )
    return state_dicts, scorer


def _scored(table, state_dicts, scorer, dask=None, **settings):
    results = {}
    for chunk in inference.stream_scores(
        table, state_dicts, scorer, {**SETTINGS, **settings}, dask or {"n_workers": 0},
        progress=False,
    ):  # fmt: skip
        results.update((r["video"], r) for r in chunk)
    return results


def _training_path(table, state_dicts, scorer):
    """The probabilities the training pipeline gives these videos as its test videos:
    extraction's records, predict_frame_models, score_videos, ensemble_and_calibrate."""
    listed = table.assign(folder="test", label=None, original=None)
    records, bad, _ = extract_videos(listed, EXTRACTION, n_workers=0, progress=False)
    index = face_index(face_rows(p, r) for p, r in records.items())
    loaders = {p: (lambda r=r: r) for p, r in records.items()}
    probs = predict_frame_models(loaders, index, state_dicts, TRAINING, RUNTIME)
    test = pd.DataFrame({"video": table["video"], "partition": "test/" + table["video"].str[:-4]})
    prior = scorer["prior"]
    folds = pd.DataFrame({"target": [1, 1, 1, 0], "partition": list("wxyz")})  # prior 0.75
    oof_probs = {m: {p: np.array([0.5], np.float32) for p in folds["partition"]} for m in probs}
    oof, test_scores = nodes.score_videos(oof_probs, probs, folds, test, VIDEO_SCORE)
    calibration = {
        "factor": CALIBRATION["factor"],
        "shift": CALIBRATION["shift"],
        "scale_bounds": [0.05, 1.0],
        "clip_low": CALIBRATION["low"],
        "clip_high": CALIBRATION["high"],
    }
    _, predictions, _, _ = nodes.ensemble_and_calibrate(
        oof, test_scores, None, None, {"enabled": False}, calibration
    )
    assert prior == folds["target"].mean()
    return dict(zip(predictions["video"], predictions["prob"], strict=True)), bad


def test_a_video_scores_exactly_as_the_training_run_scores_its_test_videos(videos, ensemble):
    state_dicts, scorer = ensemble
    table = inference.video_table(videos)
    expected, bad = _training_path(table, state_dicts, scorer)
    alone = _scored(table.iloc[[2]], state_dicts, scorer)  # one video, in a task of its own
    together = _scored(table, state_dicts, scorer)
    assert set(bad["video"]) == {"truncated.mp4", "noface.mp4"}
    for video, prob in expected.items():
        assert together[video]["prob"] == prob, video  # exactly: same crops, same batches
    name = table["video"].iloc[2]
    assert alone[name]["prob"] == together[name]["prob"]
    # faceless and unreadable: the fallback is the prior through the same calibration
    assert together["noface.mp4"]["status"] == "no_face"
    assert together["truncated.mp4"]["status"] == "unreadable"
    assert together["noface.mp4"]["prob"] == expected["noface.mp4"]
    scored = [r for r in together.values() if r["status"] == "scored"]
    assert len(scored) == len(table) - 2
    assert all(r["model_s"] > 0 and r["decode_s"] > 0 and r["n_faces"] > 0 for r in scored)


def test_two_dask_workers_give_the_same_probabilities(videos, ensemble):
    state_dicts, scorer = ensemble
    table = inference.video_table(videos)
    here = _scored(table, state_dicts, scorer)
    spread = _scored(table, state_dicts, scorer, {"n_workers": 2, "scheduler_address": None})
    assert {v: r["prob"] for v, r in spread.items()} == {v: r["prob"] for v, r in here.items()}


def test_a_worker_killed_mid_run_loses_no_video(videos, ensemble):
    state_dicts, scorer = ensemble
    table = inference.video_table(videos)
    with dask_client(None, n_workers=2, processes=True) as client:
        pids = list(client.run(os.getpid).values())
        address = client.scheduler.address
        results, killed = {}, False
        for chunk in inference.stream_scores(
            table, state_dicts, scorer, {**SETTINGS, "videos_per_task": 1},
            {"scheduler_address": address}, progress=False,
        ):  # fmt: skip
            results.update((r["video"], r) for r in chunk)
            if not killed:  # the other tasks are in flight on both workers
                os.kill(pids[0], signal.SIGKILL)
                killed = True
    assert killed and set(results) == set(table["video"])
    assert {r["status"] for r in results.values()} == {"scored", "no_face", "unreadable"}


def test_only_videos_without_a_current_result_are_pending(videos, ensemble, tmp_path):
    state_dicts, scorer = ensemble
    table = inference.video_table(videos).iloc[:3]
    digest = inference.scorer_digest(scorer)
    results = _scored(table, state_dicts, scorer)
    stored = {inference.result_partition(digest, v): (lambda r=r: r) for v, r in results.items()}
    todo, stale = inference.pending_videos(table, stored, digest)
    assert todo.empty and not stale
    # a copy with new bytes under an old name, and a result that does not load
    changed = tmp_path / table["video"].iloc[0]
    changed.write_bytes(open(table["path"].iloc[1], "rb").read())
    moved = table.assign(path=[str(changed), *table["path"].iloc[1:]])

    def broken():
        raise EOFError("cut short")

    stored[inference.result_partition(digest, table["video"].iloc[1])] = broken
    todo, stale = inference.pending_videos(moved, stored, digest)
    assert list(todo["video"]) == list(table["video"].iloc[:2])
    assert set(stale) == set(table["video"].iloc[:2])
    # another scorer: nothing of this one's counts
    other = inference.scorer_digest({**scorer, "prior": 0.5})
    assert len(inference.pending_videos(table, stored, other)[0]) == 3


def test_the_submission_has_one_row_per_video_and_no_nan(ensemble):
    _, scorer = ensemble
    table = pd.DataFrame({"video": ["a.mp4", "b.mp4", "c.mp4"], "path": ["a", "b", "c"]})
    results = {
        "a.mp4": {"video": "a.mp4", "status": "scored", "prob": 0.9, "reason": None},
        "b.mp4": {"video": "b.mp4", "status": "failed", "prob": None, "reason": "lost"},
    }
    submission, report = submission_table(table, results, scorer, 0.5)
    assert list(submission.columns) == ["filename", "label"]
    assert list(submission["filename"]) == ["a.mp4", "b.mp4", "c.mp4"]
    assert list(submission["label"]) == [0.9, 0.5, 0.5]
    assert list(report["status"]) == ["scored", "failed", "failed"]
    assert report["reason"].iloc[2] == "no result (not scored)"
    prior_fill = submission_table(table, {}, scorer, "prior")[0]["label"]
    assert prior_fill.nunique() == 1 and 0.5 < prior_fill.iloc[0] < 0.75  # calibrated prior


def test_timings_budget_and_costs_are_computed_from_the_report():
    report = pd.DataFrame(
        {
            "status": ["scored", "scored", "no_face"],
            "decode_s": [1.0, 3.0, 2.0],
            "detect_s": [2.0, 2.0, 2.0],
            "model_s": [0.5, 1.5, 0.0],
            "total_s": [4.0, 6.0, 5.0],
        }
    )
    summary = inference.timing_summary(report, 30.0, 3, 2, 4000)
    assert summary["model_seconds_per_video"] == 1.0  # over the videos with faces only
    assert summary["decode_seconds_per_video"] == 2.0
    assert summary["wall_seconds_per_video"] == 10.0 and summary["videos_per_hour"] == 360
    assert summary["projected_hours"] == pytest.approx(4000 * 10 / 3600)
    assert inference.budget_verdict(10.0, 8.1).startswith("scoring took 10.00 s a video")
    assert inference.budget_verdict(8.0, 8.1) is None
    costs = inference.cost_table(
        {"p3": {"price_per_hour": 3.0, "videos_per_hour": 400}, "mine": {"price_per_hour": 1.0}},
        360.0,
        4000,
        "here",
    )
    assert list(costs["instance"]) == ["here", "p3", "mine"]
    assert costs["hours"].tolist() == pytest.approx([4000 / 360, 10.0, 4000 / 360])
    assert costs["cost"].iloc[1] == 30.0 and pd.isna(costs["cost"].iloc[0])  # no price given


def test_bad_settings_and_inputs_name_the_fix(tmp_path):
    with pytest.raises(ParameterError, match="videos_per_tsk.*did you mean 'videos_per_task'") as e:
        InferenceParams.model_validate({"videos_per_tsk": 2})
    assert "conf/base/parameters_deepfake_inference.yml" in str(e.value)
    with pytest.raises(ParameterError, match="deepfake_inference.fallback"):
        InferenceParams.model_validate({"fallback": "half"})
    with pytest.raises(ParameterError, match="budget_action"):
        InferenceParams.model_validate({"budget_action": "abort"})
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    for folder in ("x", "y"):
        (tmp_path / folder / "same.mp4").write_bytes(b"0")
    with pytest.raises(ValueError, match="unique"):
        inference.video_table([tmp_path / "x" / "same.mp4", tmp_path / "y" / "same.mp4"])
    with pytest.raises(FileNotFoundError, match="do not exist"):
        inference.video_table([tmp_path / "missing.mp4"])
    with pytest.raises(ValueError, match="no \\*.mp4"):
        inference.video_table(tmp_path)
    with pytest.raises(ValueError, match="not a deepfake scorer"):
        inference.check_scorer({"format": 0})


def test_the_scorer_and_the_weights_must_come_from_one_run(ensemble):
    state_dicts, scorer = ensemble
    other = {k: {n: t + 1 for n, t in v.items()} for k, v in state_dicts.items()}
    with pytest.raises(ValueError, match="different training runs"):
        nodes._checked_ensemble(other, scorer, {})


def test_inference_thresholds_replace_the_training_crops_and_key_other_results(ensemble):
    state_dicts, scorer = ensemble
    same = nodes._checked_ensemble(state_dicts, scorer, {"thresholds": None})
    looser = nodes._checked_ensemble(state_dicts, scorer, {"thresholds": [0.7, 0.8, 0.8]})
    assert inference.scorer_digest(same) == inference.scorer_digest(scorer)
    assert looser["extraction"]["thresholds"] == [0.7, 0.8, 0.8]
    assert inference.scorer_digest(looser) != inference.scorer_digest(scorer)
    with pytest.raises(ParameterError, match="thresholds"):
        inference.scoring_scorer(scorer, {"thresholds": [0.7, 1.8, 0.8]})


def test_prefetching_keeps_order_and_holds_at_most_depth_results():
    held, peak, lock = [0], [0], threading.Lock()

    def work(item):
        with lock:
            held[0] += 1
            peak[0] = max(peak[0], held[0])
        return item * 2

    out = []
    for item, value in inference._prefetched(list(range(20)), work, 2):
        time.sleep(0.005)  # a slower consumer: the producer must wait for it
        out.append((item, value))
        with lock:
            held[0] -= 1
    assert out == [(i, 2 * i) for i in range(20)]
    assert peak[0] <= 2 + 2  # the queue, plus one being put and one being consumed
    stopped = inference._prefetched(list(range(100)), work, 1)
    next(stopped)
    stopped.close()  # an early stop ends the producer instead of blocking it for ever


def _pid_and_size(item, shared):
    return os.getpid(), len(shared["blob"]), item


def test_shared_values_reach_each_worker_once_and_every_item_sees_them():
    shared = {"blob": b"x" * 1_000_000}
    with dask_client(None, n_workers=2, processes=True) as client:
        results = [
            r for _, r in iter_items(client, _pid_and_size, range(8), 4, False, shared=shared)
        ]
    assert sorted(r[2] for r in results) == list(range(8))
    assert {r[1] for r in results} == {1_000_000}
    here = [r for _, r in iter_items(None, _pid_and_size, range(2), 1, False, shared=shared)]
    assert [r[2] for r in here] == [0, 1]
