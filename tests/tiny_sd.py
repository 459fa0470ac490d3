"""Tiny, randomly initialised Stable Diffusion components built from configs, saved as a diffusers folder.

Used by the engine tests: everything is offline, seeded and small enough to run on 2 CPU cores. The builder
lives in probe/generators/tiny.py so that the benchmarks build the same pipeline without importing tests/.
"""

from __future__ import annotations

from probe.generators.tiny import WORDS, build_tiny_sd

__all__ = ["WORDS", "build_tiny_sd"]
