"""deepfake: DFDC videos -> faces -> folds -> CNNs -> video scores -> stacking ->
calibrated ensemble -> submission and report. Wiring only; see nodes.py.

The nodes are grouped in the write-up's stages (podium.pipelines.stages): each a namespace
``deepfake.<stage>`` and a tag ``<stage>``; a node's full name is
``deepfake.<stage>.<name>``.

* ``data``: index the videos.
* ``faces``: extract the faces (into the face cache, video by video) and index them.
* ``split``: the folds (person clustering, ...), the split diagnostics and the fakes a
  leave-one-family-out run holds out (``deepfake.diagnostics.hold_out_family``).
* ``models``: the frame models, fold by fold.
* ``scoring``: test frame predictions, video scores, stacking, ensemble and calibration,
  the scorer package.
* ``submission``: DFDC's submission file.
* ``report``: metrics, per-family figures, figures and the detection recall.
"""

from kedro.pipeline import Node, Pipeline

from podium.pipelines.deepfake import nodes
from podium.pipelines.stages import stage

EXTRACTION = "params:deepfake.extraction"
HELD_OUT = "deepfake_held_out"
#: The stages of the deepfake pipelines, in the write-up's words.
STAGES = ("data", "faces", "split", "models", "scoring", "submission", "report")


def create_pipeline(**kwargs) -> Pipeline:
    data = stage(
        "deepfake",
        "data",
        [
            Node(
                nodes.index_training_videos,
                "deepfake_raw",
                ["deepfake_videos", "deepfake_unlisted_videos"],
                name="index_training_videos",
            ),
            Node(
                nodes.index_test, "deepfake_raw", "deepfake_test_videos", name="index_test_videos"
            ),
        ],
    )
    faces = stage(
        "deepfake",
        "faces",
        [
            Node(
                nodes.extract_faces,
                [
                    "deepfake_videos",
                    "deepfake_test_videos",
                    "deepfake_face_rows_cache",
                    EXTRACTION,
                    "params:runtime.dask",
                    "deepfake_faces_cache",
                ],
                [
                    "deepfake_faces",
                    "deepfake_face_rows",
                    "deepfake_bad_videos",
                    "deepfake_extraction_metrics",
                ],
                name="extract_faces",
            ),
            Node(
                nodes.index_faces,
                ["deepfake_face_rows", "deepfake_videos", "deepfake_test_videos", EXTRACTION],
                "deepfake_face_index",
                name="index_faces",
            ),
        ],
    )
    split = stage(
        "deepfake",
        "split",
        [
            Node(
                nodes.assign_folds,
                [
                    "deepfake_videos",
                    "deepfake_face_index",
                    "deepfake_faces",
                    "params:deepfake.split",
                    "params:deepfake.embedding",
                    "params:deepfake.person_cluster",
                    EXTRACTION,
                    "params:deepfake.seed",
                ],
                "deepfake_folds",
                name="assign_folds",
            ),
            Node(
                nodes.split_diagnostics,
                ["deepfake_folds", "deepfake_raw"],
                "deepfake_split_metrics",
                name="split_diagnostics",
            ),
            Node(
                nodes.hold_out_family,
                ["deepfake_folds", "deepfake_raw", "params:deepfake.diagnostics"],
                HELD_OUT,
                name="hold_out_family",
            ),
        ],
    )
    models = stage(
        "deepfake",
        "models",
        [
            Node(
                nodes.train_models,
                [
                    "deepfake_faces",
                    "deepfake_face_index",
                    "deepfake_folds",
                    "params:deepfake.training",
                    "params:runtime",
                    EXTRACTION,
                    "params:deepfake.seed",
                    "params:deepfake.deterministic",
                    "deepfake_checkpoints",
                    HELD_OUT,
                ],
                [
                    "deepfake_frame_models",
                    "deepfake_training_history",
                    "deepfake_oof_frame_probs",
                    "deepfake_training_curves",
                ],
                name="train_frame_models",
            ),
        ],
    )
    scoring = stage(
        "deepfake",
        "scoring",
        [
            Node(
                nodes.predict_test_frames,
                [
                    "deepfake_faces",
                    "deepfake_face_index",
                    "deepfake_test_videos",
                    "deepfake_frame_models",
                    "params:deepfake.training",
                    "params:runtime",
                    EXTRACTION,
                ],
                "deepfake_test_frame_probs",
                name="predict_test_frames",
            ),
            Node(
                nodes.score_videos,
                [
                    "deepfake_oof_frame_probs",
                    "deepfake_test_frame_probs",
                    "deepfake_folds",
                    "deepfake_test_videos",
                    "params:deepfake.video_score",
                    HELD_OUT,
                ],
                ["deepfake_oof_video_scores", "deepfake_test_video_scores"],
                name="score_videos",
            ),
            Node(
                nodes.stack_videos,
                [
                    "deepfake_oof_frame_probs",
                    "deepfake_test_frame_probs",
                    "deepfake_folds",
                    "deepfake_test_videos",
                    "deepfake_face_index",
                    "params:deepfake.stacking",
                    "params:deepfake.evaluation.eps",
                    "params:deepfake.seed",
                    HELD_OUT,
                ],
                [
                    "deepfake_oof_stacked",
                    "deepfake_test_stacked",
                    "deepfake_stacking_metrics",
                    "deepfake_stacker",
                ],
                name="stack_videos",
            ),
            Node(
                nodes.ensemble_and_calibrate,
                [
                    "deepfake_oof_video_scores",
                    "deepfake_test_video_scores",
                    "deepfake_oof_stacked",
                    "deepfake_test_stacked",
                    "params:deepfake.stacking",
                    "params:deepfake.calibration",
                    HELD_OUT,
                    "params:deepfake.evaluation.eps",  # DFDC's clipping, one value for all
                ],
                [
                    "deepfake_oof_predictions",
                    "deepfake_test_predictions",
                    "deepfake_calibration_metrics",
                    "deepfake_calibration",
                ],
                name="ensemble_and_calibrate",
            ),
            Node(
                nodes.package_scorer,
                [
                    "deepfake_frame_models",
                    "deepfake_folds",
                    "deepfake_stacker",
                    "deepfake_calibration",
                    "params:deepfake.training",
                    EXTRACTION,
                    "params:deepfake.video_score",
                    "params:deepfake.stacking",
                    "params:runtime",
                    HELD_OUT,
                ],
                "deepfake_scorer",
                name="package_scorer",
            ),
        ],
    )
    submission = stage(
        "deepfake",
        "submission",
        [
            Node(
                nodes.write_submission,
                "deepfake_test_predictions",
                "deepfake_submission",
                name="write_submission",
            ),
        ],
    )
    report = stage(
        "deepfake",
        "report",
        [
            Node(
                nodes.evaluate,
                [
                    "deepfake_oof_predictions",
                    "deepfake_test_predictions",
                    "params:deepfake.evaluation.eps",
                    HELD_OUT,
                    "params:deepfake.calibration",
                ],
                ["deepfake_metrics", "deepfake_per_folder_log_loss"],
                name="evaluate",
            ),
            Node(
                nodes.family_metrics,
                [
                    "deepfake_oof_predictions",
                    "deepfake_raw",
                    HELD_OUT,
                    "params:deepfake.evaluation.eps",
                ],
                ["deepfake_family_metrics", "deepfake_family_table"],
                name="family_metrics",
            ),
            Node(
                nodes.plot_reliability,
                ["deepfake_oof_predictions", "params:deepfake.evaluation.reliability_bins"],
                "deepfake_reliability_diagram",
                name="plot_reliability",
            ),
            Node(nodes.plot_roc, "deepfake_oof_predictions", "deepfake_roc_curve", name="plot_roc"),
            Node(
                nodes.plot_face_grid,
                [
                    "deepfake_faces",
                    "deepfake_oof_predictions",
                    EXTRACTION,
                    "params:deepfake.evaluation.grid_videos",
                ],
                "deepfake_face_grid",
                name="plot_face_grid",
            ),
            Node(
                nodes.measure_detection_recall,
                ["deepfake_face_index", "deepfake_raw", "params:deepfake.diagnostics"],
                "deepfake_detection_metrics",
                name="measure_detection_recall",
            ),
        ],
    )
    return data + faces + split + models + scoring + submission + report
