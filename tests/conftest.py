"""Shared fixtures: everything offline, tiny and seeded."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory) -> Path:
    """A random tiny StableDiffusionPipeline saved as a diffusers folder (32 px images, 4 DDIM steps)."""
    from tiny_sd import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd") / "pipe")


@pytest.fixture()
def tiny_generator(tiny_sd_path):
    """A fresh Generator per test: tokens added by one test never leak into another."""
    from probe.generators import load_generator

    return load_generator(tiny_sd_path, device="cpu")
