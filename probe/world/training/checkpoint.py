"""The world generator's training checkpoint and noise schedulers, shared by training and export.

Kept apart so that ``train`` (which writes checkpoints) and ``export`` (which turns one into a diffusers
pipeline) depend on this module and not on each other.
"""

from __future__ import annotations

from pathlib import Path

import torch

from probe.world import models


def load_state(out: Path) -> dict | None:
    """The checkpoint in ``out`` (state.pt, or state.pt.partNN pieces reassembled), or None."""
    path = out / "state.pt"
    pieces = sorted(out.glob("state.pt.part*"))
    if not path.exists() and pieces:
        path.write_bytes(b"".join(p.read_bytes() for p in pieces))
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def make_scheduler(kind: str = "ddpm"):
    from diffusers import DDIMScheduler, DDPMScheduler

    if kind == "ddpm":
        return DDPMScheduler(**models.SCHEDULE)
    return DDIMScheduler(**models.SCHEDULE, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         timestep_spacing="trailing")
