"""monet, in four stages, each a namespace ``monet.<stage>`` whose nodes carry the stage's
tag (``kedro run --pipelines=monet --namespaces=monet.<stage>`` or ``--tags=<stage>``):

- ``data``: index the photos and Monets (the jpg folders or the TFRecord shards,
  ``monet.source``), then decode each once: the tables of readable images, no pixels kept;
- ``models``: the CycleGAN's training, resumable (the four sub-models, the training state);
- ``submission``: every photo translated by the photo -> Monet generator into images.zip;
- ``report``: FID and MiFID of images.zip, the loss curves and the translation grid.

Each stage reads what the one before wrote to disk, so each can run in its own process.
Dataset and parameter names carry no namespace.
"""

from kedro.pipeline import Node, Pipeline

from podium.pipelines.monet import nodes
from podium.pipelines.stages import stage

SUB_MODELS = [
    "monet_generator_photo_to_monet",
    "monet_generator_monet_to_photo",
    "monet_discriminator_monet",
    "monet_discriminator_photo",
]


def _stage(name: str, stage_nodes: list[Node]) -> Pipeline:
    return stage("monet", name, stage_nodes)


def create_pipeline(**kwargs) -> Pipeline:
    data = _stage(
        "data",
        [
            Node(
                nodes.index_images,
                ["monet_raw", "params:monet.source"],
                "monet_index",
                name="index_images",
            ),
            Node(
                nodes.check_images,
                ["monet_index", "params:runtime"],
                [
                    "monet_photos",
                    "monet_paintings",
                    "monet_unreadable_images",
                    "monet_data_metrics",
                ],
                name="check_images",
            ),
        ],
    )
    models = _stage(
        "models",
        [
            Node(
                nodes.train_cyclegan,
                {
                    "photos": "monet_photos",
                    "monets": "monet_paintings",
                    "saved": "monet_saved_sub_models",
                    "checkpoints": "monet_checkpoints",
                    "data": "params:monet.data",
                    "model": "params:monet.model",
                    "loss": "params:monet.loss",
                    "optimizer": "params:monet.optimizer",
                    "train": "params:monet.train",
                    "seed": "params:monet.seed",
                    "deterministic": "params:monet.deterministic",
                    "runtime": "params:runtime",
                },
                [*SUB_MODELS, "monet_training_state", "monet_training_curves", "monet_history"],
                name="train_cyclegan",
            ),
        ],
    )
    submission = _stage(
        "submission",
        [
            Node(
                nodes.write_images_zip,
                [
                    "monet_generator_photo_to_monet",
                    "monet_photos",
                    "params:monet.model",
                    "params:monet.data",
                    "params:monet.generate",
                    "params:runtime",
                ],
                "monet_images_zip",
                name="write_images_zip",
            ),
        ],
    )
    report = _stage(
        "report",
        [
            Node(
                nodes.plot_training_curves,
                "monet_history",
                "monet_loss_curves_plot",
                name="plot_training_curves",
            ),
            Node(
                nodes.plot_translation_grid,
                [
                    "monet_generator_photo_to_monet",
                    "monet_generator_monet_to_photo",
                    "monet_photos",
                    "params:monet.model",
                    "params:monet.data",
                    "params:monet.generate",
                    "params:monet.report",
                    "params:runtime",
                ],
                "monet_translation_grid_plot",
                name="plot_translation_grid",
            ),
            Node(
                nodes.score_images,
                [
                    "monet_images_zip",
                    "monet_photos",
                    "monet_paintings",
                    "params:monet.evaluation",
                    "params:runtime",
                ],
                ["monet_scores", "monet_tags", "monet_evaluation_summary"],
                name="score_images",
            ),
        ],
    )
    return Pipeline([data, models, submission, report], tags="monet")
