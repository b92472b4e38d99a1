"""sample_data: one seeded generator per competition, then a contact sheet of each."""

from kedro.pipeline import Node, Pipeline

from podium.pipelines.sample_data import nodes
from podium.sample_data import deepfake, mask, monet, uda

GENERATORS = {
    "deepfake": (deepfake.generate_deepfake_sample, nodes.deepfake_contact_sheet),
    "mask": (mask.generate_mask_sample, nodes.mask_contact_sheet),
    "uda": (uda.generate_uda_sample, nodes.uda_contact_sheet),
    "monet": (monet.generate_monet_sample, nodes.monet_contact_sheet),
}


def create_pipeline(**kwargs) -> Pipeline:
    wired = []
    for competition, (generate, contact_sheet) in GENERATORS.items():
        wired += [
            Node(
                generate,
                inputs=[f"params:sample_data.{competition}", "params:sample_data.seed"],
                outputs=f"{competition}_raw",
                name=f"generate_{competition}_sample",
                tags=[competition],
            ),
            Node(
                contact_sheet,
                inputs=f"{competition}_raw",
                outputs=f"{competition}_sample_contact_sheet",
                name=f"draw_{competition}_contact_sheet",
                tags=[competition],
            ),
        ]
    # Each competition's nodes carry its name as a tag: `--tags=mask` regenerates one.
    return Pipeline(wired, tags="sample_data")
