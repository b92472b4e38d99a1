"""uda: index -> image table and class statistics (read image by image) -> training
(source_only | self_training) -> sliding-window TTA prediction streamed to per-image class
maps -> per-class IoU accumulated image by image, figures -> RLE submission appended image
by image, and the share of its pixels in a class mask."""

from kedro.pipeline import Node, Pipeline

from podium.pipelines.uda import nodes

PREDICTORS = {
    "val_source": nodes.predict_val_source,
    "val_target": nodes.predict_val_target,
    "test": nodes.predict_test,
}


def create_pipeline(**kwargs) -> Pipeline:
    predictions = [
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
            name=f"uda_predict_{split}",
        )
        for split, predict in PREDICTORS.items()
    ]
    return Pipeline(
        [
            Node(
                nodes.index_data,
                "uda_raw",
                ["uda_index", "uda_submission_ids"],
                name="uda_index_data",
            ),
            Node(
                nodes.inspect_images,
                ["uda_index", "params:uda.data", "params:runtime.dask"],
                ["uda_images", "uda_source_class_pixels", "uda_bad_images"],
                name="uda_inspect_images",
            ),
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
                name="uda_train_models",
            ),
            *predictions,
            Node(
                nodes.score_predictions,
                [
                    "uda_images",
                    "uda_val_source_predictions",
                    "uda_val_target_predictions",
                    "params:uda.evaluation",
                ],
                "uda_class_iou",
                name="uda_score_predictions",
            ),
            Node(nodes.iou_metrics, "uda_class_iou", "uda_eval_metrics", name="uda_iou_metrics"),
            Node(nodes.plot_iou, "uda_class_iou", "uda_iou_figure", name="uda_plot_iou"),
            Node(
                nodes.plot_target_overlays,
                ["uda_images", "uda_val_target_predictions", "params:uda.evaluation"],
                "uda_target_overlays",
                name="uda_plot_target_overlays",
            ),
            Node(
                nodes.write_submission,
                ["uda_test_predictions", "uda_submission_ids", "uda_bad_images"],
                "uda_submission",
                name="uda_write_submission",
            ),
            Node(
                nodes.submission_metrics,
                "uda_test_predictions",
                "uda_submission_metrics",
                name="uda_submission_metrics",
            ),
        ],
        tags="uda",
    )
