"""A tiny, randomly initialised Stable Diffusion pipeline built from configs, saved as a diffusers folder.

It has the layout of SD 1.x (CLIP text encoder and tokenizer, UNet2DConditionModel, AutoencoderKL, DDIM
scheduler) at a size that runs on 2 CPU cores: 32 px images, 16 px latents. Its images mean nothing; it
exercises exactly the code path a real SD checkpoint takes, offline. The engine tests build it
(tests/tiny_sd.py) and so do the benchmarks that run an audit end to end without real weights
(benchmarks/imagenet_1000.py, with a vocabulary covering the ImageNet class names).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

#: The tokenizer's whole words by default (the audit's prompt templates, the tests' cue words); any
#: other text still tokenizes, byte by byte, never to <unk>.
WORDS = ("a photo of close-up picture the an on with red blue green circle square star heart "
         "grass sand water snow cat dog tabby tiger").split()


def build_tiny_sd(folder: str | Path, *, seed: int = 0, image_size: int = 32, steps: int = 4,
                  words: Iterable[str] | None = None) -> Path:
    """Save a random tiny StableDiffusionPipeline (``image_size`` px images, half that in latents) to ``folder``.

    ``words``: the words the tokenizer keeps whole (default :data:`WORDS`); pass the class names' words so that
    prompts about them stay short (the tokenizer's context is 32 tokens).
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from probe.generators.tokenizer import write_tokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = write_tokenizer(folder / "_tok", list(WORDS if words is None else words))
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
