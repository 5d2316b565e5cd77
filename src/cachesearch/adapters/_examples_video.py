"""Example inputs of the video transformers (see :mod:`._examples`), one builder per model family, each modelled on
the ``get_dummy_inputs`` of diffusers' test of that class. Sizes are VAE latent pixels and latent frames; the
defaults are each family's published default resolution and clip length."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ._examples import Make, Sizes, example

__all__: list[str] = []


@example("WanTransformer3DModel", height=60, width=104, frames=21, text=512, video=True)
def _wan(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Wan 2.1 / 2.2 (480 × 832, 81 frames: 60 × 104 latents, 21 latent frames; UMT5 512 tokens); image-to-video
    checkpoints (``image_dim``) also take 257 CLIP image tokens."""
    inputs = {
        "hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
        "encoder_hidden_states": m.data(s.batch, s.text, c["text_dim"]),
        "timestep": m.full(500.0, s.batch),
    }
    if c.get("image_dim"):
        inputs["encoder_hidden_states_image"] = m.data(s.batch, 257, c["image_dim"])
    return inputs


@example("HunyuanVideoTransformer3DModel", height=68, width=120, frames=33, text=256, video=True)
def _hunyuan_video(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """HunyuanVideo (544 × 960, 129 frames: 68 × 120 latents, 33 latent frames; Llama 256 tokens + CLIP pooled);
    the pipeline passes the guidance scale × 1000 to guidance-distilled checkpoints."""
    inputs = {
        "hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
        "timestep": m.full(500.0, s.batch),
        "encoder_hidden_states": m.data(s.batch, s.text, c["text_embed_dim"]),
        "encoder_attention_mask": m.ones(s.batch, s.text),
        "pooled_projections": m.data(s.batch, c["pooled_projection_dim"]),
    }
    if c.get("guidance_embeds"):
        inputs["guidance"] = m.full(6000.0, s.batch)
    return inputs


@example("LTXVideoTransformer3DModel", height=15, width=22, frames=21, text=128, video=True)
def _ltx(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """LTX-Video (480 × 704, 161 frames: 15 × 22 latents, 21 latent frames; T5 128 tokens): the pipeline packs
    latents into ``frames × height × width`` tokens and passes the grid size."""
    return {
        "hidden_states": m.data(s.batch, s.frames * s.height * s.width, c["in_channels"]),
        "encoder_hidden_states": m.data(s.batch, s.text, c["caption_channels"]),
        "timestep": m.full(500.0, s.batch),
        "encoder_attention_mask": m.ones(s.batch, s.text),
        "num_frames": s.frames,
        "height": s.height,
        "width": s.width,
    }


def _cogvideox_size(c: Mapping[str, Any]) -> tuple[int, int, int]:
    """CogVideoX's learned positional embeddings fix the latent size: ``sample_frames`` pixel frames compressed
    ``temporal_compression_ratio`` times, ``sample_height`` × ``sample_width`` latents."""
    return (c["sample_frames"] - 1) // c["temporal_compression_ratio"] + 1, c["sample_height"], c["sample_width"]


@example("CogVideoXTransformer3DModel", text=226, video=True, config_size=_cogvideox_size)
def _cogvideox(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """CogVideoX (480 × 720, 49 frames: 60 × 90 latents, 13 latent frames; T5 226 tokens); latents are
    ``[B, F, C, H, W]``; CogVideoX 1.5 image-to-video (``ofs_embed_dim``) also takes the ``ofs`` scale."""
    text = c.get("max_text_seq_length") or s.text  # the pipeline pads the prompt to it (positional embeddings)
    inputs = {
        "hidden_states": m.data(s.batch, s.frames, c["in_channels"], s.height, s.width),
        "encoder_hidden_states": m.data(s.batch, text, c["text_embed_dim"]),
        "timestep": m.full(500.0, s.batch),
    }
    if c.get("ofs_embed_dim"):
        inputs["ofs"] = m.full(2.0, s.batch)
    return inputs


@example("ChronoEditTransformer3DModel", "SkyReelsV2Transformer3DModel", height=60, width=104, frames=21, text=512,
         video=True)
def _wan_like(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Wan 2.1 derivatives (ChronoEdit, SkyReels-V2): Wan's inputs."""
    return _wan(m, c, s)


@example("WanVACETransformer3DModel", height=60, width=104, frames=21, text=512, video=True)
def _wan_vace(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Wan-VACE: Wan's inputs plus the control video latents (``vace_in_channels``)."""
    inputs = _wan(m, c, s)
    inputs["control_hidden_states"] = m.data(s.batch, c["vace_in_channels"], s.frames, s.height, s.width)
    return inputs


@example("WanAnimateTransformer3DModel", height=60, width=104, frames=21, text=512, video=True)
def _wan_animate(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Wan-Animate: a reference frame before the clip's latents, pose latents per frame, face crops per pixel frame
    (4 per latent frame after the first) at the motion encoder's size, CLIP image tokens."""
    frames = s.frames - 1  # the first latent frame is the reference image
    face = c["motion_encoder_size"]
    return {
        "hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
        "timestep": m.full(500.0, s.batch),
        "encoder_hidden_states": m.data(s.batch, s.text, c["text_dim"]),
        "encoder_hidden_states_image": m.data(s.batch, 257, c["image_dim"]),
        "pose_hidden_states": m.data(s.batch, c["latent_channels"], frames, s.height, s.width),
        "face_pixel_values": m.data(s.batch, 3, 4 * frames - 3, face, face),
    }


@example("AnyFlowTransformer3DModel", height=60, width=104, frames=21, text=512, video=True)
def _anyflow(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """AnyFlow: Wan's layout with frames first ``[B, F, C, H, W]``, per-frame timesteps and the timestep each
    frame jumps to (``r_timestep``)."""
    return {"hidden_states": m.data(s.batch, s.frames, c["in_channels"], s.height, s.width),
            "timestep": m.full(500.0, s.batch, s.frames),
            "r_timestep": m.full(250.0, s.batch, s.frames),
            "encoder_hidden_states": m.data(s.batch, s.text, c["text_dim"])}


@example("AnyFlowFARTransformer3DModel", height=60, width=104, frames=21, text=512, video=True)
def _anyflow_far(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """AnyFlow-FAR: AnyFlow's inputs, the clip in one chunk."""
    return {**_anyflow(m, c, s), "chunk_partition": [s.frames]}


@example("AllegroTransformer3DModel", height=90, width=160, frames=22, text=512, video=True)
def _allegro(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Allegro (720 × 1280, 88 frames: 90 × 160 latents, 22 latent frames; T5 512 tokens)."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["caption_channels"]),
            "timestep": m.full(500.0, s.batch)}


@example("ConsisIDTransformer3DModel", text=226, video=True, config_size=_cogvideox_size)
def _consisid(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """ConsisID: CogVideoX's layout plus the face identity (ArcFace embedding, EVA-CLIP hidden states per scale)."""
    inputs = _cogvideox(m, c, s)
    if c.get("is_train_face"):
        inputs["id_cond"] = m.data(s.batch, c["LFE_id_dim"])
        inputs["id_vit_hidden"] = [m.data(s.batch, 2, c["LFE_vit_dim"]) for _ in range(c["LFE_num_scale"])]
    return inputs


@example("CosmosTransformer3DModel", height=88, width=160, frames=16, text=512, video=True)
def _cosmos(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Cosmos 1.0 / Predict2 (704 × 1280, 121 frames: 88 × 160 latents, 16 latent frames; T5 512 tokens), with
    the padding mask where the config concatenates it."""
    inputs = {"hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
              "timestep": m.full(500.0, s.batch),
              "encoder_hidden_states": m.data(s.batch, s.text, c["text_embed_dim"]),
              "attention_mask": m.ones(s.batch, s.text), "fps": 30}
    if c.get("concat_padding_mask"):
        inputs["padding_mask"] = m.zeros(s.batch, 1, s.height * 8, s.width * 8)
    return inputs


@example("EasyAnimateTransformer3DModel", height=84, width=84, frames=13, text=256, video=True)
def _easyanimate(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """EasyAnimate V5 (672 × 672, 49 frames; Qwen2-VL text, T5 text where ``text_embed_dim_t5`` is set)."""
    inputs = {"hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
              "timestep": m.full(500.0, s.batch),
              "encoder_hidden_states": m.data(s.batch, s.text, c["text_embed_dim"])}
    if c.get("text_embed_dim_t5"):
        inputs["encoder_hidden_states_t5"] = m.data(s.batch, s.text, c["text_embed_dim_t5"])
    return inputs


@example("HeliosTransformer3DModel", height=48, width=80, frames=9, text=512, video=True)
def _helios(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Helios: Wan's inputs (no history frames: the first chunk of a clip)."""
    return _wan(m, c, s)


@example("HunyuanVideo15Transformer3DModel", height=30, width=53, frames=31, text=1000, video=True)
def _hunyuan_video15(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """HunyuanVideo 1.5 (480p, 121 frames on its 16× autoencoder; Qwen2.5-VL and ByT5 text, a SigLIP image
    embedding: zeros for text-to-video, as the pipeline passes)."""
    text_2 = 256
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
            "timestep": m.full(500.0, s.batch),
            "encoder_hidden_states": m.data(s.batch, s.text, c["text_embed_dim"]),
            "encoder_hidden_states_2": m.data(s.batch, text_2, c["text_embed_2_dim"]),
            "encoder_attention_mask": m.ones(s.batch, s.text),
            "encoder_attention_mask_2": m.ones(s.batch, text_2),
            "image_embeds": m.zeros(s.batch, 729, c["image_embed_dim"])}


@example("HunyuanVideoFramepackTransformer3DModel", height=80, width=80, frames=9, text=256, video=True)
def _hunyuan_framepack(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """HunyuanVideo FramePack: HunyuanVideo's inputs, a SigLIP image embedding, and the clean context the pipeline
    packs with each section (the image latent and 1 + 2 + 16 history frames at 1×, 2×, 4× compression; the
    pipeline's default ``history_sizes``), each frame with its time index."""
    h, w = s.height, s.width
    c_ = c["in_channels"]
    index = m.arange(1 + 1 + 2 + 16 + s.frames)
    inputs = _hunyuan_video(m, c, s)
    inputs.update({
        "image_embeds": m.data(s.batch, 729, c["image_proj_dim"]),
        "indices_latents": index[20:],
        "latents_clean": m.data(s.batch, c_, 2, h, w), "indices_latents_clean": index[:2],
        "latents_history_2x": m.data(s.batch, c_, 2, h, w), "indices_latents_history_2x": index[2:4],
        "latents_history_4x": m.data(s.batch, c_, 16, h, w), "indices_latents_history_4x": index[4:20],
    })
    inputs.setdefault("guidance", m.full(10000.0, s.batch))
    return inputs


@example("LatteTransformer3DModel", text=120, video=True,
         config_size=lambda c: (c["video_length"], c["sample_size"], c["sample_size"]))
def _latte(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Latte (512 × 512, 16 frames; T5 120 tokens): spatial then temporal blocks."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["caption_channels"]),
            "timestep": m.full(500.0, s.batch), "enable_temporal_attentions": True}


@example("MochiTransformer3DModel", height=60, width=106, frames=28, text=256, video=True)
def _mochi(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Mochi 1 (480 × 848, 163 frames: 60 × 106 latents, 28 latent frames; T5 256 tokens)."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["text_embed_dim"]),
            "timestep": m.full(500.0, s.batch),
            "encoder_attention_mask": m.ones(s.batch, s.text, dtype=torch.bool)}


@example("MotifVideoTransformer3DModel", height=45, width=80, frames=31, text=512, video=True)
def _motif_video(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Motif-Video: latents with the image-conditioning channels already concatenated (``in_channels``)."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["text_embed_dim"]),
            "timestep": m.full(500.0, s.batch)}


@example("SanaVideoTransformer3DModel", height=15, width=26, frames=21, text=300, video=True)
def _sana_video(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """SANA-Video (480 × 832, 81 frames on its 32× autoencoder; Gemma 300 tokens)."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
            "encoder_hidden_states": m.data(s.batch, s.text, c["caption_channels"]),
            "timestep": m.full(500.0, s.batch)}


@example("LTX2VideoTransformer3DModel", height=16, width=24, frames=16, text=1024, video=True)
def _ltx2(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """LTX-2: LTX-Video's packed video tokens plus the audio latents of the same clip (here 4 audio frames per
    video frame: 25 fps video, the audio VAE's frame rate) and their text stream."""
    audio = 4 * s.frames + 1
    return {
        "hidden_states": m.data(s.batch, s.frames * s.height * s.width, c["in_channels"]),
        "audio_hidden_states": m.data(s.batch, audio, c["audio_in_channels"]),
        "encoder_hidden_states": m.data(s.batch, s.text, c["caption_channels"]),
        "audio_encoder_hidden_states": m.data(s.batch, s.text, c["caption_channels"]),
        "timestep": m.full(500.0, s.batch),
        "encoder_attention_mask": m.ones(s.batch, s.text, dtype=torch.bool),
        "num_frames": s.frames, "height": s.height, "width": s.width, "audio_num_frames": audio, "fps": 25.0,
    }


def _kandinsky_rope(m: Make, c: Mapping[str, Any], s: Sizes) -> list[torch.Tensor]:
    """Visual RoPE positions per axis after the model's patching (frames, rows, columns), as the pipelines make."""
    pt, ph, pw = c["patch_size"]
    return [m.arange(s.frames // pt), m.arange(s.height // ph), m.arange(s.width // pw)]


def _kandinsky_latents(m: Make, c: Mapping[str, Any], s: Sizes) -> torch.Tensor:
    """Channels-last latents ``[B, F, H, W, C]``; visually conditioned checkpoints take the noise, the condition
    latents and their mask concatenated (``in_visual_dim``)."""
    return m.data(s.batch, s.frames, s.height, s.width, c["in_visual_dim"])


@example("Kandinsky5Transformer3DModel", height=64, width=96, frames=31, text=256, video=True)
def _kandinsky5(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Kandinsky 5.0 Video (512 × 768, 121 frames: 64 × 96 latents, 31 latent frames; Qwen2.5-VL text, CLIP
    pooled text)."""
    return {"hidden_states": _kandinsky_latents(m, c, s),
            "encoder_hidden_states": m.data(s.batch, s.text, c["in_text_dim"]),
            "pooled_projections": m.data(s.batch, c["in_text_dim2"]),
            "timestep": m.full(500.0, s.batch),
            "visual_rope_pos": _kandinsky_rope(m, c, s), "text_rope_pos": m.arange(s.text),
            "scale_factor": (1.0, 2.0, 2.0)}


@example("Kandinsky6Transformer3DModel", height=64, width=96, frames=31, text=256, video=True)
def _kandinsky6(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Kandinsky 6 (video without the optional audio stream)."""
    return {"hidden_states": _kandinsky_latents(m, c, s),
            "encoder_hidden_states": m.data(s.batch, s.text, c["in_text_dim"]),
            "pooled_projections": m.data(s.batch, c["in_text_dim2"]),
            "timestep": m.full(500.0, s.batch),
            "visual_rope_pos": _kandinsky_rope(m, c, s),
            "encoder_attention_mask": m.ones(s.batch, s.text, dtype=torch.bool)}


@example("Kandinsky6SRTransformer3DModel", height=64, width=64, frames=8, text=1, video=True)
def _kandinsky6_sr(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Kandinsky 6 super-resolution: one 512 px tile of a clip, the noisy latents, the low-resolution clip's
    latents and their mask concatenated (``2 · in_visual_dim + 1`` channels), no text."""
    return {"hidden_states": m.data(s.batch, s.frames, s.height, s.width, 2 * c["in_visual_dim"] + 1),
            "timestep": m.full(500.0, s.batch)}


@example("SanaWMTransformer3DModel", height=22, width=40, frames=21, text=300, video=True)
def _sana_wm(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """SANA-WM (704 × 1280 on its 32× autoencoder; Gemma 300 tokens): per-frame timesteps ``[B, 1, F]``, no camera
    trajectory (the camera branch is optional)."""
    return {"hidden_states": m.data(s.batch, c["in_channels"], s.frames, s.height, s.width),
            "timestep": m.full(500.0, s.batch, 1, s.frames),
            "encoder_hidden_states": m.data(s.batch, s.text, c["caption_channels"]),
            "encoder_attention_mask": m.ones(s.batch, s.text)}


@example("MiniMaxH3Transformer3DModel", height=30, width=52, frames=31, text=512, video=True, timestep_scale=1.0)
def _minimax_h3(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """MiniMax-H3: one packed sequence of text, audio (4 tokens per latent frame here) and patchified video rows,
    each row tagged with its modality (0 video, 1 text, 2 audio) and the index of its timestep (video and text
    rows 0, audio rows 1), positions (row, then the video rows' grid); the pipeline packs the same."""
    pt, ph, pw = c["patch_size"]
    grid = (s.frames // pt, s.height // ph, s.width // pw)
    video = grid[0] * grid[1] * grid[2]
    audio = 4 * s.frames
    length = s.text + audio + video
    text_idx, audio_idx, video_idx = m.arange(s.text), m.arange(s.text + audio)[s.text:], m.arange(length)[-video:]
    tags = m.zeros(length, dtype=torch.long)
    tags[text_idx], tags[audio_idx] = 1, 2
    steps = m.zeros(length, dtype=torch.long)
    steps[audio_idx] = 1
    pos = m.zeros(length, 3)
    pos[:, 0] = m.arange(length).to(m.dtype)
    pos[video_idx, 1:] = torch.cartesian_prod(m.arange(grid[1]), m.arange(grid[2])).repeat(grid[0], 1).to(m.dtype)
    return {"hidden_states": m.data(s.batch, video, c["in_channels"] * pt * ph * pw),
            "audio_hidden_states": m.data(s.batch, audio, c["audio_in_channels"]),
            "encoder_hidden_states": m.data(s.batch, s.text, c["text_dim"]),
            "timestep": m.full(0.5, 2), "timestep_indices": steps, "token_tags": tags, "position_ids": pos,
            "video_indices": video_idx, "audio_indices": audio_idx, "text_indices": text_idx}


@example("Cosmos3OmniTransformer", height=44, width=80, frames=8, text=256, video=True, latent="vision_tokens",
         timestep="vision_timesteps", timestep_scale=1.0)
def _cosmos3_omni(m: Make, c: Mapping[str, Any], s: Sizes) -> dict[str, Any]:
    """Cosmos 3 Omni: one packed sequence of the prompt's token ids, then the clip's vision tokens (per-token
    timesteps); one sample per call, as the pipeline packs it."""
    p = c["latent_patch_size"]
    f, h, w = s.frames, s.height // p, s.width // p
    vision = f * h * w
    length = s.text + vision
    index = m.arange(length)[s.text:]
    return {"input_ids": m.zeros(s.text, dtype=torch.long), "text_indexes": m.arange(s.text),
            "position_ids": m.zeros(3, length, dtype=torch.long), "und_len": s.text, "sequence_length": length,
            "vision_tokens": [m.data(1, c["latent_channel"], f, s.height, s.width)],
            "vision_token_shapes": [(f, h, w)], "vision_sequence_indexes": index, "vision_mse_loss_indexes": index,
            "vision_timesteps": m.ones(vision), "vision_noisy_frame_indexes": [m.arange(f)]}
