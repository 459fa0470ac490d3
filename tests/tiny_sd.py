"""Tiny, randomly initialised Stable Diffusion components built from configs, saved as a diffusers folder.

Used by the engine tests: everything is offline, seeded and small enough to run on 2 CPU cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from probe.world.text import write_tokenizer

WORDS = ("a photo of close-up picture the an on with red blue green circle square star heart "
         "grass sand water snow cat dog tabby tiger").split()


def build_tiny_sd(folder: Path, *, seed: int = 0, image_size: int = 32, steps: int = 4) -> Path:
    """Save a random tiny StableDiffusionPipeline (32 px images, 16 px latents) to ``folder``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = write_tokenizer(folder / "_tok", list(WORDS))
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    unet = UNet2DConditionModel(
        sample_size=image_size // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=4, norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, sample_size=image_size,
    )
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    (folder / "probe_generator.json").write_text(json.dumps({"default_steps": steps, "guidance_scale": 3.0}))
    return folder
