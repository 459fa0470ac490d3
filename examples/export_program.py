"""Hand probe your classifier as a torch.export program (.pt2), the recommended format.

An exported program loads without your model's code, and gradients flow through it, which is what
the token optimiser needs. Export with a dynamic batch dimension, and write the two sidecar files
probe reads next to the model: NAME.labels.txt and NAME.data.json (input size and normalisation).

    python examples/export_your_classifier.py --arch resnet18 --out my_model.pt2
    probe audit --model my_model.pt2 --classes all --generator sd14
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import timm
import torch


def export_classifier(model: torch.nn.Module, out: Path, labels: list[str], input_size=(3, 224, 224),
                      mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> Path:
    model = model.eval()
    example = torch.rand(2, *input_size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(out))
    out.with_suffix(".labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    out.with_suffix(".data.json").write_text(json.dumps({
        "input_size": list(input_size), "mean": list(mean), "std": list(std),
        "crop_pct": 0.875, "interpolation": "bicubic"}, indent=2))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18", help="a timm architecture (random weights here; load yours)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("my_model.pt2"))
    args = parser.parse_args()
    model = timm.create_model(args.arch, pretrained=False, num_classes=args.num_classes)
    # model.load_state_dict(torch.load("my_weights.pth", weights_only=True))   # your trained weights
    labels = [f"class {i}" for i in range(args.num_classes)]
    print(export_classifier(model, args.out, labels))


if __name__ == "__main__":
    main()
