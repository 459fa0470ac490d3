"""Hand probe a Hugging Face transformers image classifier as a folder written by save_pretrained.

probe loads the folder with AutoModelForImageClassification (offline, local files only). It reads the
class names from config.json's id2label and the preprocessing from preprocessor_config.json (the image
processor's size, image_mean, image_std, resample), so no sidecars are needed.

The model here is a tiny ViT built from a config with RANDOM weights (nothing is downloaded): the
shapes-world weights belong to a timm CNN and do not fit a ViT, so its accuracy is chance and an audit of
it shows only how the command runs. Your fine-tuned model's folder works the same way.

    python examples/huggingface_folder.py --out runs/examples/huggingface_folder
"""

from __future__ import annotations

import torch
from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor
from transformers.utils.logging import disable_progress_bar

import probe
from _world import DATA, LABELS, arguments, audit_command, report


def main() -> None:
    out = arguments(__doc__, "huggingface_folder")
    disable_progress_bar()  # transformers' bars for writing and loading weights
    torch.manual_seed(0)
    folder = out / "tiny-vit"
    config = ViTConfig(
        image_size=32, patch_size=8, num_channels=3,  # 32 px scenes: a 4x4 grid of 8 px patches
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,  # tiny
        id2label=dict(enumerate(LABELS)), label2id={name: i for i, name in enumerate(LABELS)},
    )
    model = ViTForImageClassification(config)  # random weights; yours: from_pretrained(...) then fine-tune
    model.save_pretrained(folder)  # config.json + model.safetensors
    processor = ViTImageProcessor(size={"height": 32, "width": 32}, resample=2,  # 2: PIL bilinear
                                  image_mean=DATA["mean"], image_std=DATA["std"])
    processor.save_pretrained(folder)  # preprocessor_config.json
    clf = probe.load_classifier(folder)  # a folder with config.json is a Hugging Face model
    report(clf, audit_command(folder, out), carried=False)


if __name__ == "__main__":
    main()
