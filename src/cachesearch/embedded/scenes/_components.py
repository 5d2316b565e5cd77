"""Architecture of the embedded ``scenes`` pipeline: vocabulary and component configs.

The UNet, text encoder and DDIM scheduler are those of ``shapes`` (same configs, so DeepCache branches and
block spaces match; the UNet's in/out channels follow the autoencoder's latent channels); the autoencoder has one
more downsampling stage than ``shapes``': 64 px RGB <-> 16x16xC latents. The shipped one (shared with
``shapes-flux``) has C = 4 (48x compression, as Stable Diffusion's VAE); the repository's
``training/scenes_autoencoder.py`` trains one with C = 8 and a sub-pixel decoder (:mod:`._vae`) that carries the
objects' textures, for a retrained model.
"""

from __future__ import annotations

from ..shapes._components import WORDS as SHAPES_WORDS

WORDS: tuple[str, ...] = (*SHAPES_WORDS, "and")
"""Every word a scenes caption can contain; each is one token (a caption is 13 tokens with BOS/EOS)."""

LATENT_FACTOR = 4
"""Pixels per latent cell along each side."""


def vae_config(size: int, *, latent_channels: int = 4) -> dict:
    """Config kwargs of the ``AutoencoderKL``: two 2x downsamples, (size, size, 3) -> (size/4, size/4, C).

    ``latent_channels`` 4 is the first autoencoder's (still ``shapes-flux``'s); the textured one
    (``training/scenes_autoencoder.py``) has 8."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 3,
        "up_block_types": ("UpDecoderBlock2D",) * 3,
        "block_out_channels": (32, 64, 64),
        "layers_per_block": 1,
        "latent_channels": latent_channels,
        "norm_num_groups": 16,
        "sample_size": size,
    }
