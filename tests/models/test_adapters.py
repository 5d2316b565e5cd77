"""UNet2D adapter: block lists, DeepCache branches and MAC sums on the embedded model, SD1.5 and SDXL."""

from __future__ import annotations

import pytest

from cachesearch.models import block_space, build_arch_pipeline, load_model
from cachesearch.schedule import BlockKind

STAGES_4 = ("down_blocks.0", "down_blocks.1", "down_blocks.2", "down_blocks.3", "mid_block",
            "up_blocks.0", "up_blocks.1", "up_blocks.2", "up_blocks.3")
STAGES_3 = ("down_blocks.0", "down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.0", "up_blocks.1", "up_blocks.2")


@pytest.mark.parametrize(("name", "stages", "n_layers", "n_branches"), [("sd15", STAGES_4, 44, 12),
                                                                          ("sdxl", STAGES_3, 32, 9)])
def test_arch_block_lists_on_meta(name, stages, n_layers, n_branches):
    unet = build_arch_pipeline(name, device="meta", components="unet")
    space = block_space(unet)
    assert space.names(BlockKind.STAGE) == stages
    assert len(space.names(BlockKind.LAYER)) == n_layers
    assert len(space.deepcache_branches) == n_branches
    # Branch 0 keeps only the outermost up block's last layers (official DeepCache semantics).
    assert sorted(space.deepcache_branches[0]) == [f"{stages[-1]}.attentions.2", f"{stages[-1]}.resnets.2"] or sorted(
        space.deepcache_branches[0]) == [f"{stages[-1]}.resnets.2"]
    for layer in space.names(BlockKind.LAYER):
        assert unet.get_submodule(layer) is not None


def test_embedded_block_list_and_macs_sum():
    unet = load_model("embedded").denoiser
    space = block_space(unet, with_costs=True)
    assert space.names(BlockKind.STAGE) == STAGES_3
    assert len(space.deepcache_branches) == 9
    stages = [b for b in space.blocks if b.kind is BlockKind.STAGE]
    from cachesearch.models import unet2d_costs

    macs, other = unet2d_costs(unet)
    total = other + sum(macs[b.name] for b in stages)
    assert abs(sum(b.macs for b in stages) + space.other_macs - total) <= 0.02 * total
    for stage in stages:
        kids = [space.get(k).macs for k in space.children(stage.name)]
        assert abs(sum(kids) - stage.macs) <= 0.02 * stage.macs
