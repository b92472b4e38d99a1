"""uda, in five stages, each a namespace ``uda.<stage>`` whose nodes carry the stage's tag:

- ``data``: index -> image table and class statistics (read image by image);
- ``models``: training (source_only | self_training);
- ``scoring``: sliding-window TTA prediction streamed to per-image class maps;
- ``report``: per-class IoU accumulated image by image, mIoU, figures, and the share of the
  submission's pixels in a class mask;
- ``submission``: the RLE submission appended image by image.

Dataset and parameter names carry no namespace."""

from kedro.pipeline import Node, Pipeline

from podium.pipelines.stages import stage
from podium.pipelines.uda import nodes

PREDICTORS = {
    "val_source": nodes.predict_val_source,
    "val_target": nodes.predict_val_target,
    "test": nodes.predict_test,
}


def _stage(name: str, stage_nodes: list[Node]) -> Pipeline:
    return stage("uda", name, stage_nodes)


def create_pipeline(**kwargs) -> Pipeline:
    data = _stage(
        "data",
        [
            Node(
                nodes.index_data,
                "uda_raw",
                ["uda_index", "uda_submission_ids"],
                name="index_data",
            ),
            Node(
                nodes.inspect_images,
                ["uda_index", "params:uda.data", "params:runtime.dask"],
                ["uda_images", "uda_source_class_pixels", "uda_bad_images"],
                name="inspect_images",
            ),
        ],
    )
    models = _stage(
        "models",
        [
            Node(
                nodes.train_models,
                {
                    "images": "uda_images",
                    "class_pixels": "uda_source_class_pixels",
                    "data": "params:uda.data",
                    "models": "params:uda.models",
                    "training": "params:uda.training",
                    "seed": "params:uda.seed",
                    "deterministic": "params:uda.deterministic",
                    "runtime": "params:runtime",
                    "checkpoints": "uda_checkpoints",
                },
                ["uda_model_weights", "uda_training_curves"],
                name="train_models",
            ),
        ],
    )
    scoring = _stage(
        "scoring",
        [
            Node(
                predict,
                {
                    "weights": "uda_model_weights",
                    "images": "uda_images",
                    "data": "params:uda.data",
                    "models": "params:uda.models",
                    "inference": "params:uda.inference",
                    "runtime": "params:runtime",
                },
                f"uda_{split}_predictions",
                name=f"predict_{split}",
            )
            for split, predict in PREDICTORS.items()
        ],
    )
    report = _stage(
        "report",
        [
            Node(
                nodes.score_predictions,
                [
                    "uda_images",
                    "uda_val_source_predictions",
                    "uda_val_target_predictions",
                    "params:uda.evaluation",
                ],
                "uda_class_iou",
                name="score_predictions",
            ),
            Node(nodes.iou_metrics, "uda_class_iou", "uda_eval_metrics", name="iou_metrics"),
            Node(nodes.plot_iou, "uda_class_iou", "uda_iou_figure", name="plot_iou"),
            Node(
                nodes.plot_target_overlays,
                ["uda_images", "uda_val_target_predictions", "params:uda.evaluation"],
                "uda_target_overlays",
                name="plot_target_overlays",
            ),
            Node(
                nodes.submission_metrics,
                "uda_test_predictions",
                "uda_submission_metrics",
                name="submission_metrics",
            ),
        ],
    )
    submission = _stage(
        "submission",
        [
            Node(
                nodes.write_submission,
                ["uda_test_predictions", "uda_submission_ids", "uda_bad_images"],
                "uda_submission",
                name="write_submission",
            ),
        ],
    )
    return Pipeline([data, models, scoring, report, submission], tags="uda")
