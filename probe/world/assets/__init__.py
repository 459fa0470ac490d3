"""Paths of the shapes world's bundled files (generator, classifiers, oracles)."""

from __future__ import annotations

import json
from pathlib import Path

from probe.errors import ProbeError

ASSETS = Path(__file__).resolve().parent
CLASSIFIER_NAMES = ("biased", "clean")


def bundled_generator_path() -> Path:
    """The bundled diffusers StableDiffusionPipeline folder of the shapes world."""
    path = ASSETS / "generator"
    if not (path / "model_index.json").is_file():
        raise ProbeError(f"the bundled shapes-world generator is missing at {path}: reinstall probe or train it with `python -m probe.world.training.train`")
    return path


def bundled_classifier_path(name: str = "biased") -> Path:
    """The bundled world classifier ``name`` ("biased" or "clean"): a torch.export .pt2 file."""
    if name not in CLASSIFIER_NAMES:
        raise ProbeError(f"unknown bundled classifier {name!r}: use one of {list(CLASSIFIER_NAMES)}")
    path = ASSETS / "classifiers" / f"{name}.pt2"
    if not path.is_file():
        raise ProbeError(f"the bundled classifier {name!r} is missing at {path}: reinstall probe or run `probe world classifier`")
    return path


def bundled_bias(name: str = "biased") -> dict:
    """The cues planted in bundled classifier ``name``, e.g. {"star": {"background": "grass"}}."""
    path = bundled_classifier_path(name).with_suffix("").with_suffix(".bias.json")
    data = json.loads(path.read_text())
    return data["bias"]


def oracles_path() -> Path:
    return ASSETS / "oracles.safetensors"


def bundled_concepts_path() -> Path:
    """The world's own concept model: a tiny CLIP folder (transformers layout), ``--concepts world``."""
    path = ASSETS / "concepts"
    if not (path / "config.json").is_file():
        raise ProbeError(f"the world's concept model is missing at {path}: reinstall probe or train it with "
                         "`python -m probe.world.training.concepts --export probe/world/assets/concepts`")
    return path
