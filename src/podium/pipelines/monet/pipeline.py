"""monet: index -> check -> CycleGAN -> images.zip -> FID, MiFID; curves and sample grid.

The images come from the jpg folders or the TFRecord shards (``monet.source``).

The stages, by node name (``kedro run --pipelines=monet --nodes=...``): ``index_images``
and ``check_images`` (prepare: the tables of readable photos and Monets, no pixels kept),
``train_cyclegan`` (train), ``write_images_zip`` (translate), ``score_images`` (FID, MiFID).
Each stage reads what the one before wrote to disk, so each can run in its own process.
"""

from kedro.pipeline import Node, Pipeline

from podium.pipelines.monet import nodes

SUB_MODELS = [
    "monet_generator_photo_to_monet",
    "monet_generator_monet_to_photo",
    "monet_discriminator_monet",
    "monet_discriminator_photo",
]


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
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
            Node(
                nodes.plot_training_curves,
                "monet_history",
                "monet_loss_curves_plot",
                name="plot_training_curves",
            ),
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
        tags="monet",
    )
