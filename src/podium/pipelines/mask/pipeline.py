"""mask: index -> crop (each photo into the crop store) -> person folds -> cross-validated
models (crops read lazily) -> votes -> scores, submission.

Each stage of the write-up is a namespace ``mask.<stage>`` and a tag ``<stage>``:
``data`` (index the photos), ``crops`` (each photo into the crop store), ``split`` (person
folds), ``models`` (cross-validated
training), ``scoring`` (fold models' predictions and votes), ``submission`` and ``report``
(crop counts, scores and confusion matrices). ``kedro run --namespaces=mask.scoring`` or
``--pipelines=mask --tags=scoring`` runs one; a node's full name is
``mask.<stage>.<name>``. Dataset and parameter names carry no namespace."""

from kedro.pipeline import Node, Pipeline

from podium.pipelines.mask import nodes
from podium.pipelines.stages import stage

#: The stages, in the write-up's order.
STAGES = ("data", "crops", "split", "models", "scoring", "submission", "report")


def _stage(name: str, *stage_nodes: Node) -> Pipeline:
    return stage("mask", name, stage_nodes)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            _stage(
                "data",
                Node(
                    nodes.index_training_images,
                    ["mask_raw", "params:mask.age_threshold"],
                    "mask_train_index",
                    name="index_training_images",
                ),
                Node(
                    nodes.index_evaluation_images,
                    "mask_raw",
                    "mask_eval_index",
                    name="index_evaluation_images",
                ),
            ),
            _stage(
                "crops",
                Node(
                    nodes.crop_photos,
                    ["mask_train_index", "mask_train_crops", "params:mask.crop", "params:runtime"],
                    ["mask_train_crop_index", "mask_train_crop_report"],
                    name="crop_training_images",
                ),
                Node(
                    nodes.crop_evaluation_photos,
                    [
                        "mask_eval_index",
                        "mask_eval_crops",
                        "params:mask.crop",
                        "params:runtime",
                        "params:mask.ensemble",
                    ],
                    ["mask_eval_crop_index", "mask_eval_crop_report"],
                    name="crop_evaluation_images",
                ),
            ),
            _stage(
                "split",
                Node(
                    nodes.assign_person_folds,
                    [
                        "mask_train_index",
                        "mask_train_crop_index",
                        "params:mask.folds",
                        "params:mask.seed",
                    ],
                    "mask_training_table",
                    name="assign_person_folds",
                ),
            ),
            _stage(
                "models",
                Node(
                    nodes.train_models,
                    {
                        "crops": "mask_train_crops",
                        "table": "mask_training_table",
                        "checkpoints": "mask_checkpoints",
                        "model": "params:mask.model",
                        "loss": "params:mask.loss",
                        "optimizer": "params:mask.optimizer",
                        "scheduler": "params:mask.scheduler",
                        "train": "params:mask.train",
                        "resampling": "params:mask.resampling",
                        "augment": "params:mask.augment",
                        "preprocess": "params:mask.preprocess",
                        "seed": "params:mask.seed",
                        "deterministic": "params:mask.deterministic",
                        "runtime": "params:runtime",
                    },
                    ["mask_model_weights", "mask_out_of_fold_predictions", "mask_training_curves"],
                    name="train_models",
                ),
            ),
            _stage(
                "scoring",
                Node(
                    nodes.vote_out_of_fold,
                    ["mask_out_of_fold_predictions", "mask_training_table", "params:mask.ensemble"],
                    "mask_out_of_fold_votes",
                    name="vote_out_of_fold",
                ),
                Node(
                    nodes.predict_evaluation_images,
                    {
                        "weights": "mask_model_weights",
                        "crops": "mask_eval_crops",
                        "crop_index": "mask_eval_crop_index",
                        "eval_index": "mask_eval_index",
                        "crop": "params:mask.crop",
                        "model": "params:mask.model",
                        "preprocess": "params:mask.preprocess",
                        "train": "params:mask.train",
                        "seed": "params:mask.seed",
                        "deterministic": "params:mask.deterministic",
                        "runtime": "params:runtime",
                    },
                    "mask_eval_predictions",
                    name="predict_evaluation_images",
                ),
                Node(
                    nodes.vote_evaluation_images,
                    ["mask_eval_predictions", "params:mask.ensemble"],
                    "mask_eval_votes",
                    name="vote_evaluation_images",
                ),
            ),
            _stage(
                "submission",
                Node(
                    nodes.write_submission,
                    [
                        "mask_eval_index",
                        "mask_eval_votes",
                        "params:mask.ensemble",
                        "mask_eval_crop_index",
                    ],
                    ["mask_submission", "mask_submission_report"],
                    name="write_submission",
                ),
            ),
            _stage(
                "report",
                Node(
                    nodes.count_crop_outcomes,
                    ["mask_train_crop_report", "mask_eval_crop_report"],
                    "mask_crop_metrics",
                    name="count_crop_outcomes",
                ),
                Node(
                    nodes.score_out_of_fold,
                    "mask_out_of_fold_votes",
                    "mask_out_of_fold_metrics",
                    name="score_out_of_fold",
                ),
                Node(
                    nodes.plot_out_of_fold_confusion,
                    ["mask_out_of_fold_votes", "params:mask.ensemble"],
                    {
                        task: f"mask_oof_confusion_{task}"
                        for task in ("classes", "mask", "gender", "age")
                    },
                    name="plot_out_of_fold_confusion",
                ),
                Node(
                    nodes.score_evaluation,
                    ["mask_submission", "mask_eval_votes", "mask_raw"],
                    "mask_eval_metrics",
                    name="score_evaluation",
                ),
            ),
        ],
        tags="mask",
    )
