"""UNet2D adapter: block lists, DeepCache branches and MAC sums on the embedded model, SD1.5 and SDXL."""

from __future__ import annotations

import pytest

from cachesearch.models import block_space, build_arch_pipeline, load_model
from cachesearch.schedule import BlockKind

STAGES_4 = ("down_blocks.0", "down_blocks.1", "down_blocks.2", "down_blocks.3", "mid_block",
            "up_blocks.0", "up_blocks.1", "up_blocks.2", "up_blocks.3")
STAGES_3 = ("down_blocks.0", "down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.0", "up_blocks.1", "up_blocks.2")


_LAYER_CLASSES = {"resnets": "ResnetBlock2D", "attentions": "Transformer2DModel", "downsamplers": "Downsample2D",
                  "upsamplers": "Upsample2D"}


@pytest.mark.parametrize(
    ("name", "stages", "n_layers", "n_branches", "branch0"),
    [("sd15", STAGES_4, 44, 12, ["up_blocks.3.attentions.2", "up_blocks.3.resnets.2"]),
     ("sdxl", STAGES_3, 32, 9, ["up_blocks.2.resnets.2"])],
)
def test_arch_block_lists_on_meta(name, stages, n_layers, n_branches, branch0):
    unet = build_arch_pipeline(name, device="meta", components="unet")
    space = block_space(unet)
    assert space.names(BlockKind.STAGE) == stages
    assert len(space.names(BlockKind.LAYER)) == n_layers
    assert len(space.deepcache_branches) == n_branches
    # Branch 0 keeps only the outermost up block's last layers (official DeepCache semantics); SDXL's last
    # up block has no attentions, SD1.5's has.
    assert sorted(space.deepcache_branches[0]) == branch0
    for layer in space.names(BlockKind.LAYER):
        role = layer.split(".")[-2]
        assert type(unet.get_submodule(layer)).__name__ == _LAYER_CLASSES[role], layer


def test_embedded_block_list_and_macs_sum():
    """The block space's MACs (meta replica) add up to an independent count of the real model on CPU."""
    import torch

    from cachesearch.models import module_macs, unet2d_example_inputs

    unet = load_model("embedded").denoiser
    space = block_space(unet, with_costs=True)
    assert space.names(BlockKind.STAGE) == STAGES_3
    assert len(space.deepcache_branches) == 9
    stages = [b for b in space.blocks if b.kind is BlockKind.STAGE]
    inputs = unet2d_example_inputs(unet)
    with torch.no_grad():
        independent = module_macs(unet, lambda: unet(**inputs, return_dict=False), ["mid_block"]).total_macs
    assert sum(b.macs for b in stages) + space.other_macs == independent
    for stage in stages:
        kids = [space.get(k).macs for k in space.children(stage.name)]
        assert sum(kids) == stage.macs, stage.name
