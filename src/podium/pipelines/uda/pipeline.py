"""uda: index -> arrays -> class statistics -> training (source_only | self_training) ->
sliding-window TTA prediction -> per-class IoU, figures -> RLE submission."""

from kedro.pipeline import Node, Pipeline

from podium.pipelines.uda import nodes

LOADERS = {
    "train_source": nodes.load_source_training,
    "train_target": nodes.load_target_training,
    "val_source": nodes.load_source_validation,
    "val_target": nodes.load_target_validation,
    "test": nodes.load_test,
}


def create_pipeline(**kwargs) -> Pipeline:
    predictions = [
        Node(
            nodes.predict_split,
            {
                "weights": "uda_model_weights",
                "arrays": f"uda_{split}_arrays",
                "models": "params:uda.models",
                "inference": "params:uda.inference",
                "runtime": "params:runtime",
            },
            f"uda_{split}_predictions",
            name=f"uda_predict_{split}",
        )
        for split in ("val_source", "val_target", "test")
    ]
    return Pipeline(
        [
            Node(
                nodes.index_data,
                "uda_raw",
                ["uda_index", "uda_submission_ids"],
                name="uda_index_data",
            ),
            *[
                Node(
                    load,
                    ["uda_index", "params:uda.data"],
                    f"uda_{split}_arrays",
                    name=f"uda_load_{split}",
                )
                for split, load in LOADERS.items()
            ],
            Node(
                nodes.count_source_classes,
                "uda_train_source_arrays",
                "uda_source_class_pixels",
                name="uda_count_source_classes",
            ),
            Node(
                nodes.train_models,
                {
                    "source": "uda_train_source_arrays",
                    "target": "uda_train_target_arrays",
                    "class_pixels": "uda_source_class_pixels",
                    "models": "params:uda.models",
                    "training": "params:uda.training",
                    "seed": "params:uda.seed",
                    "deterministic": "params:uda.deterministic",
                    "runtime": "params:runtime",
                },
                ["uda_model_weights", "uda_training_curves"],
                name="uda_train_models",
            ),
            *predictions,
            Node(
                nodes.score_predictions,
                [
                    "uda_val_source_arrays",
                    "uda_val_source_predictions",
                    "uda_val_target_arrays",
                    "uda_val_target_predictions",
                ],
                "uda_class_iou",
                name="uda_score_predictions",
            ),
            Node(nodes.iou_metrics, "uda_class_iou", "uda_eval_metrics", name="uda_iou_metrics"),
            Node(nodes.plot_iou, "uda_class_iou", "uda_iou_figure", name="uda_plot_iou"),
            Node(
                nodes.plot_target_overlays,
                ["uda_val_target_arrays", "uda_val_target_predictions", "params:uda.evaluation"],
                "uda_target_overlays",
                name="uda_plot_target_overlays",
            ),
            Node(
                nodes.write_submission,
                ["uda_test_predictions", "uda_submission_ids"],
                "uda_submission",
                name="uda_write_submission",
            ),
        ],
        tags="uda",
    )
