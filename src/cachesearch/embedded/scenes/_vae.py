"""``SubpixelAutoencoderKL``: diffusers' ``AutoencoderKL`` whose decoder upsamples by sub-pixel convolution.

Why not the stock class: its decoder upsamples by nearest neighbour, then convolves. Where a region of the
latent is uniform — as it is over a texture whose period divides the latent cell (stripes of 4 px under a 4x
autoencoder) — the upsampled features are uniform too, and a translation-invariant convolution cannot draw a
pattern inside a cell from them; only variation between neighbouring cells can. Measured on the first ``scenes``
autoencoder and on a stock one trained for textures (1,200 steps, 8 latent channels, gradient loss): 4 px stripes
come back with correlation ~0, 6 px 0.22, 8 px 0.52. Sub-pixel convolution (Shi et al., CVPR 2016: a convolution
to 4x the channels, then ``pixel_shuffle``) gives each of the four output positions of a cell its own weights,
so a cell's code maps to a pattern inside it. The upsampling convolutions start as ICNR (Aitken et al. 2017):
the four positions share weights, i.e. the layer starts as "convolve, then nearest-neighbour upsample".

Sub-pixel upsampling makes such a texture drawable, not learnable: the encoder only keeps a cell's phase if the
decoder uses it, and the decoder can only use what the encoder keeps, so training sits at that symmetric point
(a stock 8-channel autoencoder continued for 1,000 steps with sub-pixel upsamplers: 4 px stripes still ~0). With
``residual_shortcut`` the latent's mean gets a parameter-free path from the pixels and back, as in DC-AE's
residual autoencoding (Chen et al., ICLR 2025): ``pixel_unshuffle`` of the image averaged over groups of
``3 * 16 / latent_channels`` values of a cell is added to the encoder's mean, and the decoder adds each latent
channel back on its group's positions (``pixel_shuffle``). Sub-cell detail then reaches the latent and the
reconstruction from the first step (from scratch, 100 steps: 4 px stripes 0.36, 6 px 0.49, 8 px 0.66, vs ~0
without the shortcut).

Everything else — encoder, latent distribution, scaling factor, ``encode``/``decode`` — is ``AutoencoderKL``'s,
so ``StableDiffusionPipeline`` uses it unchanged. Loading a folder needs this class (its upsampler weights have
another shape): ``SubpixelAutoencoderKL.from_pretrained(folder / "vae")``, which ``scenes.load_pipeline`` does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from torch import nn

__all__ = ["SubpixelAutoencoderKL", "SubpixelUpsample2D"]


class SubpixelUpsample2D(nn.Module):
    """2x upsampling: 3x3 convolution to ``4 * channels``, then ``pixel_shuffle(2)`` (ICNR-initialised)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, 4 * channels, kernel_size=3, padding=1)
        self.icnr_(nn.Conv2d(channels, channels, kernel_size=3, padding=1))

    @torch.no_grad()
    def icnr_(self, base: nn.Conv2d) -> None:
        """Set the weights so that the layer computes ``base`` then a nearest-neighbour 2x upsampling (ICNR:
        output channel ``c * 4 + k``, ``k`` the sub-position, is ``base``'s channel ``c``)."""
        self.conv.weight.copy_(base.weight.repeat_interleave(4, dim=0))
        self.conv.bias.copy_(base.bias.repeat_interleave(4))

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, 2H, 2W)."""
        return F.pixel_shuffle(self.conv(hidden_states), 2)


class SubpixelAutoencoderKL(AutoencoderKL):
    """``AutoencoderKL`` with :class:`SubpixelUpsample2D` in place of each decoder upsampler and, with
    ``residual_shortcut``, the parameter-free pixel <-> latent shortcut (see the module)."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
        shift_factor: float | None = None,
        latents_mean: tuple[float, ...] | None = None,
        latents_std: tuple[float, ...] | None = None,
        force_upcast: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = True,
        residual_shortcut: bool = False,
    ) -> None:
        factor = 2 ** (len(block_out_channels) - 1)
        if residual_shortcut and (in_channels * factor**2 % latent_channels or out_channels != in_channels):
            raise ValueError(f"residual_shortcut needs latent_channels ({latent_channels}) to divide "
                             f"in_channels x {factor}^2 = {in_channels * factor**2} and out_channels == in_channels")
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, down_block_types=down_block_types,
            up_block_types=up_block_types, block_out_channels=block_out_channels, layers_per_block=layers_per_block,
            act_fn=act_fn, latent_channels=latent_channels, norm_num_groups=norm_num_groups, sample_size=sample_size,
            scaling_factor=scaling_factor, shift_factor=shift_factor, latents_mean=latents_mean,
            latents_std=latents_std, force_upcast=force_upcast, use_quant_conv=use_quant_conv,
            use_post_quant_conv=use_post_quant_conv, mid_block_add_attention=mid_block_add_attention,
        )
        for block in self.decoder.up_blocks:
            if block.upsamplers is not None:
                block.upsamplers = nn.ModuleList(SubpixelUpsample2D(u.channels) for u in block.upsamplers)

    def _shortcut_groups(self) -> tuple[int, int]:
        if self.use_tiling:
            raise NotImplementedError("residual_shortcut autoencoders do not tile (64 px images never need it)")
        factor = 2 ** (len(self.config.block_out_channels) - 1)
        return factor, self.config.in_channels * factor**2 // self.config.latent_channels

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        moments = super()._encode(x)
        if not self.config.residual_shortcut:
            return moments
        factor, group = self._shortcut_groups()
        n, _, h, w = moments.shape
        c = self.config.latent_channels
        mean = moments[:, :c] + F.pixel_unshuffle(x, factor).view(n, c, group, h, w).mean(2)
        return torch.cat([mean, moments[:, c:]], dim=1)

    def _decode(self, z: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple[torch.Tensor]:
        dec = super()._decode(z, return_dict=False)[0]
        if self.config.residual_shortcut:
            factor, group = self._shortcut_groups()
            dec = dec + F.pixel_shuffle(z.repeat_interleave(group, dim=1), factor)
        return DecoderOutput(sample=dec) if return_dict else (dec,)

    @classmethod
    def from_nearest(cls, vae: AutoencoderKL) -> SubpixelAutoencoderKL:
        """This class with ``vae``'s weights (a stock ``AutoencoderKL`` of the same config): every upsampler
        starts as ICNR of ``vae``'s upsampling convolution (convolve, then upsample: the order swapped)."""
        out = cls(**{k: v for k, v in vae.config.items() if not k.startswith("_")})
        own = out.state_dict()
        out.load_state_dict({k: v for k, v in vae.state_dict().items() if own[k].shape == v.shape}, strict=False)
        for mine, theirs in zip(out.decoder.up_blocks, vae.decoder.up_blocks, strict=True):
            for up, stock in zip(mine.upsamplers or (), theirs.upsamplers or (), strict=True):
                up.icnr_(stock.conv)
        return out


def load_vae(folder: str, **kwargs: object) -> AutoencoderKL:
    """The autoencoder in ``folder`` as the class its ``config.json`` names (``AutoencoderKL`` or this one)."""
    import json
    from pathlib import Path

    name = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("_class_name")
    cls = SubpixelAutoencoderKL if name == SubpixelAutoencoderKL.__name__ else AutoencoderKL
    return cls.from_pretrained(str(folder), **kwargs)
