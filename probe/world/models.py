"""Architectures of the shapes world's generator parts and attribute oracles (built from configs)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

VAE_CONFIG: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    block_out_channels=(64, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=32,
)

UNET_CONFIG: dict[str, Any] = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(64, 96, 128),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=128,
    attention_head_dim=8,
    norm_num_groups=32,
)

TEXT_CONFIG: dict[str, Any] = dict(
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=4,
    num_attention_heads=4,
    max_position_embeddings=32,
    hidden_act="quick_gelu",
)

# DDPM training schedule (also the DDIM sampling schedule saved with the pipeline).
SCHEDULE: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_schedule="linear",
    beta_start=0.0001,
    beta_end=0.02,
    prediction_type="epsilon",
)


def build_vae(config: dict | None = None):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**(config or VAE_CONFIG))


def build_unet(config: dict | None = None):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**(config or UNET_CONFIG))


def build_text_encoder(tokenizer, config: dict | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = dict(config or TEXT_CONFIG)
    cfg.update(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(CLIPTextConfig(**cfg))


class OracleNet(nn.Module):
    """A small CNN that recognises one attribute of a 32x32 render (input in [0, 1])."""

    def __init__(self, num_classes: int, width: int = 32):
        super().__init__()
        w = width

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            block(3, w, 1), block(w, w, 1), block(w, 2 * w, 2), block(2 * w, 2 * w, 1),
            block(2 * w, 4 * w, 2), block(4 * w, 4 * w, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - 0.5) / 0.25))
