"""The world generator's training checkpoint and noise schedulers, shared by training and export.

Kept apart so that ``train`` (which writes checkpoints) and ``export`` (which turns one into a diffusers
pipeline) depend on this module and not on each other.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from probe.world import models


def load_state(out: Path, parts: Path | None = None) -> dict | None:
    """The checkpoint in ``out``: its state.pt, else the state.pt.partNN pieces in ``out`` or in ``parts`` (where
    ``--parts`` wrote them) reassembled into ``out``; None when there is none. Read with ``weights_only``: a
    checkpoint holds tensors, numbers and text, and a crafted one runs no code."""
    path = out / "state.pt"
    if not path.exists():
        for folder in (out, parts):
            pieces = sorted(folder.glob("state.pt.part[0-9][0-9]")) if folder is not None else []
            if pieces:
                out.mkdir(parents=True, exist_ok=True)
                tmp = out / "state.pt.tmp"
                tmp.write_bytes(b"".join(p.read_bytes() for p in pieces))
                os.replace(tmp, path)
                break
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def make_scheduler(kind: str = "ddpm"):
    from diffusers import DDIMScheduler, DDPMScheduler

    if kind == "ddpm":
        return DDPMScheduler(**models.SCHEDULE)
    return DDIMScheduler(**models.SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         timestep_spacing="trailing")
