"""Shared by the examples: the bundled shapes-world classifier as plain PyTorch, and a quick check of a loaded one.

The shapes world (``--generator world``) is probe's built-in 32-pixel domain: six shape classes drawn with
colours, backgrounds and corner tags. Its bundled ``biased`` classifier learned planted cues (star <-
grass background, triangle <- water, heart <- dot tag), so an audit of any copy of it has something to find,
offline, on a CPU. Each example re-saves that classifier in one format and checks that probe reads it back.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import numpy as np
import torch

import probe
from probe.world import SHAPES, bundled_classifier_path, render_batch, sample_attributes
from probe.world.classifiers import Thumbnail, build_classifier

BUNDLED = bundled_classifier_path("biased")  # a torch.export .pt2 with .labels.txt / .data.json / .bias.json sidecars
LABELS = list(SHAPES)  # output index -> class name
DATA = json.loads(BUNDLED.with_suffix(".data.json").read_text())  # input_size, mean, std, interpolation, crop_pct


def arguments(doc: str, name: str) -> Path:
    """Parse ``--out DIR`` (default runs/examples/NAME), create it and return it."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/examples") / name, help="folder for every file written")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    return out


def world_network() -> torch.nn.Module:
    """The bundled classifier rebuilt as ordinary Python: timm's test_resnet looking at a 4x average-pooled
    thumbnail. It takes *normalised* 32x32 images (mean/std of DATA), like any timm model."""
    recipe = json.loads(BUNDLED.with_suffix(".bias.json").read_text())["config"]  # how it was trained
    net = Thumbnail(build_classifier(recipe["arch"], num_classes=len(LABELS)), pool=recipe["pool"])
    net.load_state_dict(torch.export.load(str(BUNDLED)).state_dict)  # same parameter names: net.conv1...
    return net.eval()


def write_sidecars(model_path: Path, data: dict | None = None) -> None:
    """MODEL.labels.txt (one class name per output) and MODEL.data.json (preprocessing) next to MODEL.ext."""
    stem = model_path.with_suffix("")
    Path(f"{stem}.labels.txt").write_text("\n".join(LABELS) + "\n")
    Path(f"{stem}.data.json").write_text(json.dumps(data or DATA, indent=2) + "\n")


@torch.no_grad()
def accuracy(clf: probe.Classifier, n: int = 96, seed: int = 0) -> float:
    """Fraction of ``n`` rendered scenes (uniform shapes, colours, backgrounds, tags) classified as their shape."""
    attrs = sample_attributes(n, np.random.default_rng(seed))
    images, _ = render_batch(attrs, generator=torch.Generator().manual_seed(seed))  # (n, 3, 32, 32) in [0, 1]
    predicted = [clf.labels[i] for i in clf(images).argmax(dim=1).tolist()]  # the Classifier preprocesses
    return float(np.mean([p == SHAPES[s] for p, s in zip(predicted, attrs["shape"])]))


def audit_command(model: str | Path, out: Path, *flags: str, env: str = "", run: str = "audit") -> str:
    """The `probe audit` command line that audits ``model`` for the class "star" in the shapes world."""
    words = ["probe", "audit", "--model", str(model), *flags, "--generator", "world", "--classes", "star",
             "--out", str(out / run)]
    return (env + " " if env else "") + shlex.join(words)


def report(clf: probe.Classifier, command: str, carried: bool = True) -> None:
    """Print the loaded classifier, its accuracy on rendered scenes and the audit command."""
    print(clf)
    acc = accuracy(clf)
    if carried:  # the same weights as the bundled .pt2: the same answers
        print(f"accuracy on 96 rendered scenes: {acc:.2f} (the bundled biased.pt2: "
              f"{accuracy(probe.load_classifier(BUNDLED)):.2f})")
    else:
        print(f"accuracy on 96 rendered scenes: {acc:.2f} (random weights: about 1/{len(LABELS)} is chance)")
    print("audit it with:")
    print(command)
