"""Fault injection across podium (issue 19): the index of the 28 fault and bad-input cases.

``CASES`` lists each case once: its group (1-6, the issue's numbered problems, or "held":
right before the issue too), the fault, what podium does about it, and the tests that
reproduce the fault and assert that behaviour, as pytest node ids. Most live beside the
code they exercise; this module holds the tests no other module has, and checks that every
node id of the table still names a test, so the index cannot rot.
"""

from __future__ import annotations

import copy
import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import pandas as pd
import pytest

from tests.conftest import REPO


class Case(NamedTuple):
    id: str
    group: str  # "1" .. "6": the issue's numbered problems; "held": already right before
    fault: str
    expected: str
    tests: tuple[str, ...]


HERE = "tests/test_fault_injection.py"
DEEPFAKE_LAYOUT = "tests/layouts/test_deepfake_layout.py"
MASK_LAYOUT = "tests/layouts/test_mask_layout.py"
UDA_LAYOUT = "tests/layouts/test_uda_layout.py"
MONET_LAYOUT = "tests/layouts/test_monet_layout.py"
DF_FAULTS = "tests/pipelines/deepfake/test_faults.py"
RUN_STATUS = "tests/test_run_status.py"

CASES: list[Case] = [
    # ------------------------------------------------------------ held before the issue
    Case(
        "corrupt-video",
        "held",
        "a truncated or garbage .mp4 among the training videos",
        "skipped, listed in deepfake_bad_videos with its reason (VideoReadError naming the file)",
        (
            f"{DEEPFAKE_LAYOUT}::test_truncated_or_missing_mp4_names_the_file",
            f"{DEEPFAKE_LAYOUT}::test_truncated_data_with_index_up_front",
            "tests/pipelines/deepfake/test_extraction.py::test_bad_videos_are_reported_with_a_reason",
        ),
    ),
    Case(
        "empty-video",
        "held",
        "a 0-byte .mp4 among the training videos",
        "skipped and reported as a VideoReadError naming the file; the others are extracted",
        (f"{HERE}::test_an_empty_video_is_skipped_and_named_never_a_crash",),
    ),
    Case(
        "malformed-metadata",
        "held",
        "metadata.json that is not JSON or absent; entries with an unknown label, no label, "
        "a missing file, a FAKE without (or with a missing) original",
        "indexing stops with every problem at once, naming the file, the entry and the fix",
        (
            f"{DEEPFAKE_LAYOUT}::test_malformed_json_names_the_file",
            f"{DEEPFAKE_LAYOUT}::test_missing_metadata_and_missing_root",
            f"{DEEPFAKE_LAYOUT}::test_unknown_label",
            f"{DEEPFAKE_LAYOUT}::test_missing_label_field",
            f"{DEEPFAKE_LAYOUT}::test_missing_listed_file",
            f"{DEEPFAKE_LAYOUT}::test_fake_whose_original_is_missing",
            f"{DEEPFAKE_LAYOUT}::test_fake_without_original_field",
            f"{DEEPFAKE_LAYOUT}::test_all_problems_are_reported_together",
        ),
    ),
    Case(
        "test-labels-csv",
        "held",
        "test_labels.csv with a missing column or a file that is not among the test videos",
        "stops naming the csv and what is wrong",
        (f"{DEEPFAKE_LAYOUT}::test_test_label_errors",),
    ),
    Case(
        "wrong-csv-columns",
        "held",
        "mask train.csv / info.csv, a UDA split csv or a deepfake video table without a "
        "column it needs",
        "stops naming the csv, the column and the fix",
        (
            f"{MASK_LAYOUT}::test_missing_column",
            f"{MASK_LAYOUT}::test_eval_missing_column",
            f"{UDA_LAYOUT}::test_missing_column_names_csv_column_and_fix",
            f"{UDA_LAYOUT}::test_empty_cell_and_duplicate_id_name_the_csv",
            f"{UDA_LAYOUT}::test_unparsable_csv_names_it",
            "tests/pipelines/deepfake/test_extraction.py::test_a_table_without_the_needed_columns_is_rejected",
        ),
    ),
    Case(
        "mask-folders",
        "held",
        "a mask person folder missing, misnamed or disagreeing with its train.csv row; a "
        "photo missing or duplicated",
        "stops naming the folder or photo",
        (
            f"{MASK_LAYOUT}::test_missing_person_folder",
            f"{MASK_LAYOUT}::test_malformed_folder_name",
            f"{MASK_LAYOUT}::test_folder_name_disagreeing_with_row",
            f"{MASK_LAYOUT}::test_missing_photo",
            f"{MASK_LAYOUT}::test_duplicate_photo",
            "tests/pipelines/mask/test_pipeline.py::test_a_missing_image_stops_the_run_naming_the_folder",
        ),
    ),
    Case(
        "mask-unreadable-photo",
        "held",
        "a truncated, garbage or empty mask training photo",
        "the error names the file; the photo is left out of training, listed in the crop "
        "report, the rest are cropped",
        (
            f"{MASK_LAYOUT}::test_read_image_errors_name_the_file",
            "tests/pipelines/mask/test_data.py::test_an_unreadable_photo_is_reported_and_the_rest_are_cropped",
            "tests/pipelines/mask/test_nodes.py::test_folds_are_person_disjoint_and_skip_unreadable_photos",
        ),
    ),
    Case(
        "monet-unreadable-photo",
        "held",
        "a truncated or non-JPEG monet photo (also one PIL was told to load truncated)",
        "skipped, named with its reason, counted (monet/data/photo/unreadable) and listed in "
        "unreadable_images.csv; never a crash",
        (
            f"{MONET_LAYOUT}::test_read_images_reports_truncated_unreadable_and_missing",
            f"{MONET_LAYOUT}::test_truncated_jpg_reported_even_if_pil_was_told_to_load_truncated",
            "tests/pipelines/monet/test_data.py::test_check_images_lists_unreadable_jpgs_and_keeps_no_pixels",
            "tests/pipelines/monet/test_data.py::test_an_unreadable_photo_is_skipped_and_named_not_a_crash",
        ),
    ),
    Case(
        "uda-unreadable-image-or-label",
        "held",
        "a UDA image or label map that does not decode, or a colour label map",
        "a bad label map stops the run naming it; an undecodable image is skipped and "
        "reported (a test image gets empty masks)",
        (
            f"{UDA_LAYOUT}::test_colour_label_and_unreadable_files_are_refused",
            f"{UDA_LAYOUT}::test_an_undecodable_file_is_told_apart_from_a_bad_label",
            f"{UDA_LAYOUT}::test_missing_image_file_is_named",
            f"{UDA_LAYOUT}::test_missing_label_file_is_named",
            "tests/pipelines/uda/test_data.py::test_an_unreadable_image_is_skipped_and_reported_not_dropped",
            "tests/pipelines/uda/test_streaming.py::test_an_unreadable_test_image_gets_empty_masks_and_a_missing_one_stops",
        ),
    ),
    Case(
        "wrong-size-label",
        "held",
        "a UDA label map of another size than its image",
        "the run stops naming the file and both sizes",
        (
            f"{UDA_LAYOUT}::test_label_size_mismatch_names_file_and_sizes",
            "tests/pipelines/uda/test_pipeline.py::test_a_label_of_the_wrong_size_stops_the_run_naming_the_file",
        ),
    ),
    Case(
        "unknown-class",
        "held",
        "a UDA label with a class value outside the classes; a mask row with an unknown gender",
        "stops naming the file (or row) and the values",
        (
            f"{UDA_LAYOUT}::test_unknown_class_value_names_file_and_values",
            "tests/pipelines/uda/test_data.py::test_inspect_images_gives_sizes_and_class_pixels_at_the_working_size",
            f"{MASK_LAYOUT}::test_unknown_gender",
        ),
    ),
    Case(
        "out-of-range-parameter",
        "held",
        "a parameter out of range or an unknown choice (n_folds: 1, iou: 1.5, backbone, "
        "generator, augmentation)",
        "the run stops before its first node naming the parameter, the allowed values and the file",
        (
            "tests/pipelines/deepfake/test_params.py::test_each_block_names_the_bad_key_what_is_allowed_and_the_file",
            "tests/pipelines/monet/test_params.py::test_a_bad_key_or_value_is_refused_naming_it",
            "tests/pipelines/deepfake/test_pipeline.py::test_a_bad_parameter_stops_the_run_naming_it_and_the_allowed_values",
            "tests/pipelines/mask/test_pipeline.py::test_an_unknown_backbone_fails_the_run_naming_the_parameter",
            "tests/pipelines/mask/test_pipeline.py::test_an_unknown_augmentation_fails_the_run_naming_the_parameter",
            "tests/pipelines/monet/test_pipeline.py::test_an_unknown_generator_fails_the_run_naming_the_parameter",
        ),
    ),
    # ------------------------------------------------------------ 1. stale faces
    Case(
        "truncated-after-extraction",
        "1",
        "a video truncated after its first extraction",
        "its rows no longer match its content: extracted again (now bad, reported), never "
        "served its old crops; its fake's masks redone",
        (f"{DF_FAULTS}::test_a_changed_video_that_no_longer_extracts_is_not_served_its_old_faces",),
    ),
    Case(
        "regenerated-same-name",
        "1",
        "a video regenerated under the same name (new bytes, another difficulty)",
        "re-extracted and counted (reextracted_changed), as is a fake whose original "
        "changed; the untouched ones come from the cache; the data fingerprint changes",
        (
            f"{DF_FAULTS}::test_a_video_rewritten_under_its_name_is_extracted_again",
            f"{DF_FAULTS}::test_a_fake_whose_original_changed_in_an_earlier_run_gets_new_masks",
            f"{DF_FAULTS}::test_an_untouched_cache_is_reused_whole",
            "tests/test_fingerprint.py::test_one_changed_byte_or_renamed_file_changes_it",
        ),
    ),
    # ------------------------------------------------------------ 2. half-written files
    Case(
        "zero-byte-partition",
        "2",
        "SIGKILL during a partition save; a 0-byte record or rows .joblib from an older crash",
        "saves are atomic (a killed save leaves no visible partition); a 0-byte record or "
        "rows file is extracted again with a warning, and assign_folds names the file and "
        "the fix instead of a bare EOFError",
        (
            "tests/test_atomic_pickle_dataset.py::test_a_killed_save_is_invisible_to_a_partitioned_dataset",
            "tests/test_atomic_pickle_dataset.py::test_a_failed_save_keeps_the_old_file_and_leaves_no_partial",
            "tests/core/test_checkpoints.py::test_failed_write_keeps_the_old_file",
            f"{DF_FAULTS}::test_an_empty_record_is_extracted_again_and_never_an_eof_error_in_assign_folds",
            f"{DF_FAULTS}::test_empty_rows_from_an_older_crash_are_extracted_again_with_a_warning",
        ),
    ),
    Case(
        "killed-extraction",
        "2",
        "`kedro run` SIGKILLed in the middle of face extraction",
        "every video saved before the kill is kept whole; the re-run extracts only the rest",
        (f"{DF_FAULTS}::test_a_killed_extraction_keeps_what_it_saved_and_the_rerun_does_the_rest",),
    ),
    # ------------------------------------------------------------ 3. runs mix outputs
    Case(
        "concurrent-runs",
        "3",
        "two `kedro run`s in one project folder at once",
        "the second is refused before MLflow opens a run, naming the first's pid, host and "
        "MLflow run; a run reads back the versions it saved, not a newer one of another run",
        (
            f"{RUN_STATUS}::test_a_second_run_is_refused_while_the_first_trains_which_sigterm_then_kills",
            f"{RUN_STATUS}::test_the_lock_refuses_a_live_holder_and_takes_over_a_dead_one",
            "tests/test_mlflow_models.py::test_the_hook_logs_the_saved_version_and_later_loads_read_it",
        ),
    ),
    # ------------------------------------------------------------ 4. status
    Case(
        "ctrl-c",
        "4",
        "Ctrl-C (SIGINT) or SIGTERM during training",
        "the MLflow run ends KILLED with the signal and node as its reason; exit non-zero; "
        "the lock released",
        (
            f"{RUN_STATUS}::test_ctrl_c_mid_training_ends_the_run_killed",
            f"{RUN_STATUS}::test_signal_of_finds_interrupts_and_the_ddp_agents_signal_error",
            f"{RUN_STATUS}::test_the_hooks_end_the_run_whatever_kedro_mlflows_error_hook_does",
        ),
    ),
    Case(
        "sigkill-running-forever",
        "4",
        "SIGKILL during training leaves the MLflow run RUNNING",
        "`kedro prune` or the next run marks it KILLED (dead pid of this host); an error in "
        "a node ends FAILED",
        (
            f"{RUN_STATUS}::test_sigkill_leaves_running_until_prune_or_the_next_run_which_fails_in_a_node",
            f"{RUN_STATUS}::test_only_runs_of_dead_processes_of_this_host_are_marked_killed",
            f"{RUN_STATUS}::test_liveness_tells_dead_zombie_and_reused_pids_from_live_ones",
        ),
    ),
    Case(
        "no-checkpoint-inside-run",
        "4",
        "training killed mid-run restarts from the previous run's end",
        "each epoch is checkpointed; resume_from: latest continues inside the killed run, "
        "bit for bit",
        (
            "tests/core/test_resume.py::test_sigkilled_training_resumes_bit_for_bit",
            "tests/pipelines/monet/test_resume.py::test_latest_continues_a_split_run_and_then_a_killed_one_bit_for_bit",
        ),
    ),
    Case(
        "resume-finished-monet",
        "4",
        "resume_from=latest on a finished monet run (crashed in monet_training_curves: "
        "'Unexpected metric value ... got <class 'list'>')",
        "a no-op said on the console, same weights, no curves: the metrics dataset saves "
        "nothing and the run ends normally",
        (
            "tests/pipelines/monet/test_resume.py::test_latest_on_a_finished_run_is_a_no_op_with_no_curves_to_log",
            f"{HERE}::test_resuming_a_finished_monet_run_is_a_no_op_the_metrics_dataset_takes",
        ),
    ),
    # ------------------------------------------------------------ 5. wrong input accepted
    Case(
        "fractional-test-labels",
        "5",
        "test_labels.csv labels such as 0.7 (a pasted submission), FAKE or 2",
        "rejected naming the csv and its line; only exactly 0 or 1 (1.0 too) accepted",
        (f"{DF_FAULTS}::test_test_labels_must_be_exactly_0_or_1",),
    ),
    Case(
        "misspelt-keys",
        "5",
        "misspelt keys: deepfake.split.n_fold, deepfake.calibration.factr, "
        "runtime.num_worker, runtime.dask.n_worker, deepfake.trainng.epochs",
        "every block typed: the run stops before its first node naming the key, the close "
        "match and the file (a misspelt block name as well)",
        (
            f"{HERE}::test_the_misspelt_keys_of_the_issue_stop_the_run_naming_the_close_match",
            "tests/test_params.py::test_every_block_a_node_reads_is_typed",
            "tests/test_params.py::test_a_typo_in_one_pipelines_file_is_reported_whichever_pipeline_runs",
            "tests/pipelines/deepfake/test_params.py::test_each_block_names_the_bad_key_what_is_allowed_and_the_file",
            "tests/pipelines/deepfake/test_params.py::test_a_typo_in_a_late_block_stops_the_run_before_the_first_node",
            "tests/pipelines/mask/test_params.py::test_each_block_names_the_bad_key_what_is_allowed_and_the_file",
            "tests/pipelines/uda/test_params.py::test_each_block_names_the_bad_key_what_is_allowed_and_the_file",
            "tests/pipelines/monet/test_params.py::test_a_bad_key_or_value_is_refused_naming_it",
            "tests/core/test_device.py::test_a_misspelt_runtime_key_is_an_error_not_a_default",
            "tests/test_pipeline_names.py::test_kedro_run_with_a_misspelt_parameter_stops_before_the_first_node",
        ),
    ),
    Case(
        "extra-mask-person-folder",
        "5",
        "a mask person folder that train.csv does not list",
        "reported with a warning naming the folder, not silently dropped",
        (
            f"{MASK_LAYOUT}::test_a_person_folder_missing_from_train_csv_is_reported_not_silently_dropped",
        ),
    ),
    Case(
        "unreadable-eval-photo",
        "5",
        "an unreadable mask evaluation photo (was answered from a black image, unmarked)",
        "its row is marked in the submission report (blank_crop, crop_status), or the run "
        "stops with unusable_photos: stop",
        (
            "tests/pipelines/mask/test_pipeline.py::test_an_unreadable_evaluation_photo_is_marked_in_the_submission_report_or_stops_the_run",
            "tests/pipelines/mask/test_submission.py::test_the_report_marks_the_answers_made_from_a_blank_crop",
        ),
    ),
    Case(
        "video-without-truth",
        "5",
        "a video listed without a _truth.json entry (crashed split_diagnostics and the run)",
        "split_diagnostics leaves it out, counts it (videos_without_truth) and names it",
        (f"{DF_FAULTS}::test_split_diagnostics_skip_videos_without_truth",),
    ),
    # ------------------------------------------------------------ 6. quiet skips
    Case(
        "console-warnings",
        "6",
        "broken videos and unreadable photos told only in a CSV and a metric",
        "a warning on the console at the end of the node, counted, naming the files",
        (
            f"{DF_FAULTS}::test_a_changed_video_that_no_longer_extracts_is_not_served_its_old_faces",
            "tests/pipelines/mask/test_nodes.py::test_photos_without_a_usable_crop_are_told_on_the_console",
            f"{HERE}::test_unreadable_monet_and_uda_images_are_counted_on_the_console",
        ),
    ),
    Case(
        "read-only-outputs",
        "6",
        "an output folder that cannot be written (told only after extraction and training)",
        "checked at the start: the run stops before its first node naming the dataset, the "
        "folder and the fix",
        (
            f"{RUN_STATUS}::test_an_output_that_cannot_be_written_stops_the_run_before_its_first_node",
        ),
    ),
]


# ------------------------------------------------------------------ the index itself


def test_the_table_has_the_28_cases_of_the_issue_each_with_a_test():
    assert len(CASES) == 28
    assert len({case.id for case in CASES}) == 28
    assert {case.group for case in CASES} == {"held", "1", "2", "3", "4", "5", "6"}
    for case in CASES:
        assert case.fault and case.expected and case.tests, case.id


def _test_of(node_id: str):
    """The test function a node id (``path::name`` or ``path::Class::name``) names."""
    path, *names = node_id.split("::")
    assert path.startswith("tests/") and path.endswith(".py") and names, node_id
    assert (REPO / path).is_file(), f"{node_id}: no such file"
    target = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    for name in names:
        target = getattr(target, name, None)
        assert target is not None, f"{node_id}: {name} is not in {path}"
    return target


@pytest.mark.parametrize("node_id", sorted({t for c in CASES for t in c.tests}), ids=str)
def test_every_test_the_table_names_exists(node_id):
    found = _test_of(node_id)
    assert callable(found) and found.__name__.startswith("test_"), node_id


# ------------------------------------------------------------------ helpers


@contextmanager
def _warnings_of(caplog, name: str) -> Iterator[None]:
    """What logger ``name`` warned, whatever logging Kedro configured (propagate or not)."""
    logger = logging.getLogger(name)
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger=name):
            yield
    finally:
        logger.removeHandler(caplog.handler)


# ------------------------------------------------------------------ held: an empty video


def test_an_empty_video_is_skipped_and_named_never_a_crash(tmp_path):
    from podium.pipelines.deepfake.data import extract_videos

    empty = tmp_path / "dfdc_train_part_0" / "empty.mp4"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    table = pd.DataFrame(
        [{"video": "empty.mp4", "folder": empty.parent.name, "path": str(empty)}]
    ).assign(label="REAL", original=None)
    records, bad, stats = extract_videos(
        table, {"n_frames": 4, "crop_size": 64}, n_workers=0, progress=False
    )
    assert records == {} and stats["bad"] == 1 and stats["extracted"] == 0
    (reason,) = bad["reason"]
    assert reason.startswith("VideoReadError") and str(empty) in reason


# ------------------------------------------------------------------ 4. a finished monet run


def test_resuming_a_finished_monet_run_is_a_no_op_the_metrics_dataset_takes(tmp_path, caplog):
    """The crash was kedro-mlflow's metrics-history dataset refusing the empty list each
    curve had when nothing was trained; the node now gives no curves, which it saves."""
    from kedro.io.core import DatasetError
    from kedro_mlflow.io.metrics import MlflowMetricsHistoryDataset

    from tests.pipelines.monet.test_resume import _as_saved, _node, _same_weights, _weights

    raw, checkpoints = tmp_path / "raw", tmp_path / "checkpoints"
    one_epoch = {"n_epochs": 1, "n_epochs_decay": 0}
    finished = _node(raw, checkpoints, {}, **one_epoch)
    with _warnings_of(caplog, "podium.pipelines.monet.train"):
        again = _node(
            raw, checkpoints, _as_saved(finished, "v1"), resume_from="latest", **one_epoch
        )
    assert "already trained" in caplog.text and "nothing to do" in caplog.text
    assert _same_weights(_weights(finished), _weights(again))
    curves = again[-2]
    dataset = MlflowMetricsHistoryDataset(prefix="train")  # monet_training_curves
    with pytest.raises(DatasetError, match="Unexpected metric value"):
        dataset.save({name: [] for name in finished[-2]})  # what the node gave before
    dataset.save(curves)  # nothing to log: no metric, no error


# ------------------------------------------------------------------ 5. misspelt keys


ISSUE_TYPOS = {
    "deepfake.split.n_fold": "did you mean 'n_folds'?",
    "deepfake.calibration.factr": "did you mean 'factor'?",
    "runtime.num_worker": "did you mean 'num_workers'?",
    "runtime.dask.n_worker": "did you mean 'n_workers'?",
    "deepfake.trainng.epochs": "did you mean 'training'?",  # a misspelt block
}


@pytest.mark.parametrize("key", sorted(ISSUE_TYPOS))
def test_the_misspelt_keys_of_the_issue_stop_the_run_naming_the_close_match(key):
    """What the TypedParametersHooks check when the context is created, before any node:
    conf/base as every registered pipeline reads it, with one key of the issue misspelt."""
    from podium.core.params import ParametersInvalid
    from podium.hooks import check_typed_parameters
    from tests.test_params import PIPELINES, parameters

    config = copy.deepcopy(parameters("base"))
    *parents, leaf = key.split(".")
    block = config
    for part in parents:
        block = block.setdefault(part, {})
    block[leaf] = 2
    with pytest.raises(ParametersInvalid) as refused:
        check_typed_parameters(config, dict(PIPELINES))
    named = key.removesuffix(".epochs")  # the unknown block itself is what is named
    text = str(refused.value)
    assert f"{named}: unknown key; {ISSUE_TYPOS[key]}" in text, text
    head = key.split(".")[0]
    where = "conf/base/parameters.yml" if head == "runtime" else f"parameters_{head}.yml"
    assert where in text and [path for path, _ in refused.value.problems] == [named]


# ------------------------------------------------------------------ 6. told on the console


def test_unreadable_monet_and_uda_images_are_counted_on_the_console(tmp_path, caplog):
    from podium.layouts.monet import index_monet
    from podium.pipelines.monet import nodes as monet_nodes
    from podium.pipelines.uda import nodes as uda_nodes
    from tests.pipelines.monet.test_data import _write_jpgs
    from tests.pipelines.uda.test_data import _pair, _write

    raw = tmp_path / "monet"
    _write_jpgs(raw / "photo_jpg", 3, seed=1)
    _write_jpgs(raw / "monet_jpg", 2, seed=2)
    broken = raw / "photo_jpg" / "zz-broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with _warnings_of(caplog, "podium.pipelines.monet.nodes"):
        monet_nodes.check_images(index_monet(raw), {"device": "cpu", "num_workers": 0})
    assert str(broken.resolve()) in caplog.text
    assert "1 of 6 image(s) unreadable and skipped" in caplog.text  # the count, at the end
    caplog.clear()

    uda = tmp_path / "uda"
    uda.mkdir()
    rows = [_write(uda, f"S{i}", *_pair(seed=i)) for i in range(3)]
    cut = uda / "S1.png"
    cut.write_bytes(cut.read_bytes()[:60])
    with _warnings_of(caplog, "podium.pipelines.uda.nodes"):
        images, _, bad = uda_nodes.inspect_images(
            pd.DataFrame(rows), {"source_size": [10, 16], "target_size": [12, 16]}, {}
        )
    assert images["id"].tolist() == ["S0", "S2"] and bad["id"].tolist() == ["S1"]
    assert str(cut) in caplog.text and "1 unreadable image(s) skipped" in caplog.text
