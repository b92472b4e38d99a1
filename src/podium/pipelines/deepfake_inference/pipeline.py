"""deepfake_inference: a folder of new mp4s + a trained deepfake ensemble -> faces ->
frame probabilities -> video scores -> calibration -> submission, fanned out over Dask.
Wiring only: the nodes are the deepfake package's (``deepfake/nodes.py``, its inference
section), so scoring shares the training run's code.

Each node is in a namespace ``deepfake_inference.<stage>`` and tagged ``<stage>`` (and
``inference``), as the deepfake pipeline's: ``data`` (the videos to score), ``scoring``
(faces, frame probabilities, video scores, calibration), ``submission`` (the submission,
its per-video report, seconds per video and costs) and ``report`` (the scoring budget).
"""

from kedro.pipeline import Node, Pipeline

from podium.pipelines.deepfake import nodes
from podium.pipelines.stages import stage

#: The inference pipeline's inputs that a training run saves (inference name -> training
#: name): the MLflow model logged by a training run carries these files as its artifacts.
INFERENCE_ARTIFACTS = {
    "deepfake_inference_frame_models": "deepfake_frame_models",
    "deepfake_inference_scorer": "deepfake_scorer",
}
#: What the MLflow model is given to predict: video paths (a list or a ``path`` column).
INFERENCE_INPUT = "deepfake_inference_videos"
INFERENCE_SETTINGS = "params:deepfake_inference"


def create_pipeline(**kwargs) -> Pipeline:
    """deepfake_inference: a folder of mp4s + a trained ensemble (the latest local one,
    or an MLflow run's) -> per-video results, saved as they finish -> submission, report,
    seconds per video and cost table. Wiring only; see nodes.py."""
    data = stage(
        "deepfake_inference",
        "data",
        [
            Node(
                nodes.list_videos_to_score,
                INFERENCE_SETTINGS,
                INFERENCE_INPUT,
                name="list_videos_to_score",
            ),
        ],
    )
    scoring = stage(
        "deepfake_inference",
        "scoring",
        [
            Node(
                nodes.score_new_videos,
                [
                    INFERENCE_INPUT,
                    *INFERENCE_ARTIFACTS,
                    "deepfake_inference_results_cache",
                    INFERENCE_SETTINGS,
                    "params:runtime.dask",
                ],
                ["deepfake_inference_results", "deepfake_inference_timing"],
                name="score_new_videos",
            ),
        ],
    )
    submission = stage(
        "deepfake_inference",
        "submission",
        [
            Node(
                nodes.write_inference_submission,
                [
                    INFERENCE_INPUT,
                    "deepfake_inference_results",
                    "deepfake_inference_timing",
                    "deepfake_inference_scorer",
                    INFERENCE_SETTINGS,
                ],
                [
                    "deepfake_inference_submission",
                    "deepfake_inference_report",
                    "deepfake_inference_metrics",
                    "deepfake_inference_costs",
                ],
                name="write_inference_submission",
            ),
        ],
    )
    report = stage(
        "deepfake_inference",
        "report",
        [
            Node(
                nodes.check_scoring_budget,
                ["deepfake_inference_report", "deepfake_inference_timing", INFERENCE_SETTINGS],
                None,
                name="check_scoring_budget",
            ),
        ],
    )
    return Pipeline([data, scoring, submission, report], tags="inference")


def create_scoring_model_pipeline() -> Pipeline:
    """The pipeline inside the MLflow model a training run logs: video paths in, one
    ``filename, label, status, reason`` row per video out, nothing stored. Its one node is
    ``deepfake_inference.scoring.score_video_files``."""
    scoring = stage(
        "deepfake_inference",
        "scoring",
        [
            Node(
                nodes.score_video_files,
                [INFERENCE_INPUT, *INFERENCE_ARTIFACTS, INFERENCE_SETTINGS, "params:runtime.dask"],
                "deepfake_inference_predictions",
                name="score_video_files",
            )
        ],
    )
    return Pipeline([scoring], tags="inference")
