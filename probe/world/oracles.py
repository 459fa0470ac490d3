"""Attribute oracles: one small CNN per attribute (shape, color, background, tag) of a render.

They are the shapes world's ground-truth "concept scorer": the fidelity benchmark checks
generated images with them, and the analysis uses them to name what a class token draws.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from probe.errors import ProbeError
from probe.world.models import OracleNet
from probe.world.scenes import VOCAB

ATTRIBUTES: tuple[str, ...] = ("shape", "color", "background", "tag")


class OracleError(ProbeError):
    """The oracle weights are missing or do not fit the shapes world."""


class Oracles(nn.Module):
    """Four attribute classifiers; ``predict(images01)`` -> {attribute: [value name per image]}."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.nets = nn.ModuleDict({a: OracleNet(len(VOCAB[a]), width) for a in ATTRIBUTES})
        self.vocab = {a: VOCAB[a] for a in ATTRIBUTES}

    def _check(self, images01: torch.Tensor) -> torch.Tensor:
        if images01.ndim != 4 or images01.shape[1] != 3:
            raise OracleError(f"images01 has shape {tuple(images01.shape)}: pass a float tensor (B, 3, 32, 32) in [0, 1]")
        if images01.shape[-2:] != (32, 32):
            images01 = nn.functional.interpolate(images01, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        return images01.float()

    def forward(self, images01: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute, each (B, number of values)."""
        x = self._check(images01)
        return {a: net(x) for a, net in self.nets.items()}

    @torch.no_grad()
    def probabilities(self, images01: torch.Tensor) -> dict[str, torch.Tensor]:
        """Softmax probabilities per attribute, each (B, number of values); columns follow ``vocab``."""
        was = self.training
        self.eval()
        try:
            return {a: logits.softmax(-1) for a, logits in self(images01).items()}
        finally:
            self.train(was)

    def predict(self, images01: torch.Tensor) -> dict[str, list[str]]:
        """The most probable value name of every attribute for each image."""
        probs = self.probabilities(images01)
        return {a: [self.vocab[a][i] for i in p.argmax(-1).tolist()] for a, p in probs.items()}

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.parameters())
        return f"Oracles({', '.join(f'{a}:{len(v)}' for a, v in self.vocab.items())}; {n / 1e3:.0f}k parameters)"


def save_oracles(oracles: Oracles, path: str | Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous().cpu()
             for k, v in oracles.state_dict().items()}
    save_file(state, str(path), metadata={"attributes": ",".join(ATTRIBUTES)})
    return path


def load_oracles(path: str | Path | None = None, device: str | torch.device = "cpu") -> Oracles:
    """Load the bundled oracles (or the safetensors file at ``path``) in eval mode."""
    from safetensors.torch import load_file

    from probe.world.assets import oracles_path

    path = Path(path) if path is not None else oracles_path()
    if not path.is_file():
        raise OracleError(f"oracle weights {str(path)!r} not found: train them with `python -m probe.world.training.train` or reinstall probe")
    state = load_file(str(path))
    oracles = Oracles()
    try:
        oracles.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as e:
        raise OracleError(f"oracle weights {str(path)!r} do not fit the shapes world: retrain them") from e
    return oracles.to(device).eval()
