"""Tiny, randomly initialised CLIP and SigLIP models built from configs, saved with a working processor.

The concept-model tests load them through ``load_concepts`` exactly as a user's downloaded folder would be:
everything is offline (tokenizers are written from word lists in code, no sentencepiece), seeded, well under
1 MB and built in a fraction of a second.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from probe.generators.tokenizer import write_tokenizer

WORDS = ("a photo of picture the an on with red blue green circle square star heart "
         "grass sand water snow cat dog tabby tiger").split()
IMAGE_SIZE = 32
PATCH_SIZE = 8
TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def save_tiny_clip(folder: str | Path, *, seed: int = 0) -> Path:
    """Save a random tiny ``CLIPModel`` and its ``CLIPProcessor`` (byte-level BPE tokenizer) to ``folder``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = write_tokenizer(folder, list(WORDS))
    config = CLIPConfig(
        text_config=dict(TOWER, vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(TOWER, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                         crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _gemma_tokenizer(words: list[str], max_length: int):
    """A Gemma-style BPE tokenizer (what SigLIP 2 uses) whose merges spell each ``▁word`` as one token.

    Built in code because SigLIP's own ``SiglipTokenizer`` needs a sentencepiece model and the package.
    """
    from transformers import GemmaTokenizer

    vocab: dict[str, int] = {}
    for token in ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"] + [f"<0x{b:02X}>" for b in range(256)]:
        vocab[token] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in words:
        piece = "▁" + word
        for ch in piece:
            vocab.setdefault(ch, len(vocab))
        for end in range(2, len(piece) + 1):
            if piece[:end] not in vocab:
                vocab[piece[:end]] = len(vocab)
                merges.append((piece[: end - 1], piece[end - 1]))
    return GemmaTokenizer(vocab=vocab, merges=merges, model_max_length=max_length, padding_side="right",
                          add_bos_token=False, add_eos_token=True)


def save_tiny_siglip(folder: str | Path, *, seed: int = 0, max_length: int = 16) -> Path:
    """Save a random tiny ``SiglipModel`` and a ``SiglipProcessor`` (Gemma-style tokenizer) to ``folder``."""
    from transformers import (SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor, SiglipTextConfig,
                              SiglipVisionConfig)

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = _gemma_tokenizer(list(WORDS), max_length)
    config = SiglipConfig(
        text_config=SiglipTextConfig(**TOWER, vocab_size=len(tokenizer), max_position_embeddings=max_length,
                                     pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                                     eos_token_id=tokenizer.eos_token_id),
        vision_config=SiglipVisionConfig(**TOWER, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE),
    )
    model = SiglipModel(config)
    with torch.no_grad():  # SigLIP's initial temperature and bias: a test that forgets the bias sees it
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-2.5)
    model.save_pretrained(folder)
    image_processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder
