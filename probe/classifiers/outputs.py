"""Find the logits in whatever the user's model returns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from probe.errors import ClassifierError

_FIX = "make the model return the (batch, num_classes) logits tensor (wrap it in a small nn.Module)"


def _describe(out: Any) -> str:
    if torch.is_tensor(out):
        return f"a tensor of shape {tuple(out.shape)}"
    if isinstance(out, Mapping):
        return f"a {type(out).__name__} with keys {list(out)[:6]}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} items"
    return f"a {type(out).__name__}"


def _is_logits(t: Any, batch: int) -> bool:
    return torch.is_tensor(t) and t.dim() == 2 and t.shape[0] == batch and t.is_floating_point()


def extract_logits(out: Any, batch: int, name: str = "classifier") -> torch.Tensor:
    """Return the (batch, K) logits in ``out`` or raise :class:`ClassifierError`.

    Unwrapped where unambiguous: a tensor (a (batch,) one is a logit per image,
    returned as (batch, 1)); an object with a ``.logits`` tensor (Hugging Face
    outputs, torchvision's ``InceptionOutputs``); a dict with a ``"logits"`` key or
    a single tensor; a tuple/list of one item, or whose first item is (batch, K)
    logits and no other item is.
    """
    if torch.is_tensor(out):
        if _is_logits(out, batch):
            return out
        if out.dim() == 1 and out.shape[0] == batch and out.is_floating_point():
            return out[:, None]  # one score per image: a binary classifier's single logit
        if out.dim() == 1 and out.shape[0] == batch and out.is_floating_point():
            return out[:, None]  # one score per image: a binary classifier's single logit
        raise ClassifierError(
            f"{name} returned {_describe(out)} for a batch of {batch}; expected floating (batch, num_classes) "
            f"logits; {_FIX}"
        )
    logits = getattr(out, "logits", None)
    if torch.is_tensor(logits):
        return extract_logits(logits, batch, name)
    if isinstance(out, Mapping):
        if torch.is_tensor(out.get("logits")):
            return extract_logits(out["logits"], batch, name)
        tensors = [v for v in out.values() if torch.is_tensor(v)]
        if len(tensors) == 1:
            return extract_logits(tensors[0], batch, name)
        raise ClassifierError(f"{name} returned {_describe(out)} and none is called 'logits'; {_FIX}")
    if isinstance(out, (tuple, list)):
        if len(out) == 1:
            return extract_logits(out[0], batch, name)
        candidates = [i for i, item in enumerate(out) if _is_logits(item, batch)]
        if candidates == [0]:
            return out[0]
        raise ClassifierError(
            f"{name} returned {_describe(out)} ({len(candidates)} look like logits), so the logits are "
            f"ambiguous; {_FIX}"
        )
    raise ClassifierError(f"{name} returned {_describe(out)}; {_FIX}")
