#!/usr/bin/env bash
# Auditing a real ImageNet classifier with Stable Diffusion on a CUDA GPU.
# Needs the generator's weights on disk (or a reachable Hugging Face hub) and a GPU with >= 12 GB.
set -euo pipefail

# 1. Fetch the generator once, where the hub is reachable (any diffusers StableDiffusionPipeline layout works).
#    hf download CompVis/stable-diffusion-v1-4 --local-dir /models/sd14
# 2. Save your classifier as a state dict (or export it: examples/export_program.py).
# A folder keeps its pipeline's own scheduler (PNDM for SD 1.4): --scheduler ddim --steps 15 samples as the sd14
# alias does (or: PROBE_SD14_BASE=/models/sd14 probe audit ... --generator sd14).

probe audit \
  --model resnet50_weights.pth --arch timm:resnet50 --labels imagenet \
  --classes "tabby,tiger cat,husky,lobster" \
  --generator /models/sd14 --scheduler ddim --steps 15 --device cuda --dtype fp16 \
  --eval-model vit_weights.pth --eval-arch timm:vit_base_patch16_224 \
  --out runs/imagenet-pets

# Faster, non-commercial licence: distilled SD-Turbo, 2 sampling steps, no guidance.
#   probe audit ... --generator sd-turbo --steps 2 --guidance-scale 0
# Re-render the report anywhere, without models or a GPU:
#   probe report runs/imagenet-pets
