"""Tiny, randomly initialised SDXL components built from configs, saved as a StableDiffusionXLPipeline folder.

Two CLIP text encoders of different widths (so a slice mix-up between them cannot pass unnoticed), a UNet with
SDXL's "text_time" addition embedding, a tiny VAE and a DDIM scheduler; offline, seeded, 32 px images.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from probe.generators.tokenizer import write_tokenizer

from tiny_sd import WORDS

HIDDEN_L, HIDDEN_G, PROJECTION_G = 32, 48, 16  # encoder widths; the pooled (projected) width of encoder 2
TIME_EMBED = 8  # addition_time_embed_dim: each of the 6 size/crop numbers gets this many features


def _text_config(tokenizer, hidden: int, **extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                          num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                          pad_token_id=tokenizer.pad_token_id, **extra)


def build_tiny_sdxl(folder: Path, *, seed: int = 0, image_size: int = 32, steps: int = 3,
                    force_upcast: bool = True) -> Path:
    """Save a random tiny StableDiffusionXLPipeline (32 px images, 16 px latents) to ``folder``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tokenizer = write_tokenizer(folder / "_tok", list(WORDS))
    tokenizer_2 = write_tokenizer(folder / "_tok2", list(WORDS))
    text_encoder = CLIPTextModel(_text_config(tokenizer, HIDDEN_L))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer_2, HIDDEN_G, projection_dim=PROJECTION_G))
    unet = UNet2DConditionModel(
        sample_size=image_size // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=HIDDEN_L + HIDDEN_G,
        attention_head_dim=4, norm_num_groups=8, use_linear_projection=True, transformer_layers_per_block=(1, 1),
        addition_embed_type="text_time", addition_time_embed_dim=TIME_EMBED,
        projection_class_embeddings_input_dim=6 * TIME_EMBED + PROJECTION_G,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, sample_size=image_size, force_upcast=force_upcast,
    )
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler)
    pipe.save_pretrained(folder)
    (folder / "probe_generator.json").write_text(json.dumps({"default_steps": steps, "guidance_scale": 3.0}))
    return folder
