"""What did the token add? Concept scores of token vs baseline images, and the
vocabulary words nearest to the learned token embedding.

A *concept scorer* is any object with ``predict(images01) -> {attribute: [value per image]}``:
the shapes world's attribute oracles are one; a concept model's check
(probe/analysis/checks.py ``ConceptModelCheck``: CLIP or SigLIP, ``--concepts``) is the other, reading
for each cue attribute the value whose phrase scores highest. Without a scorer the token-shift test is
skipped with a note; nearest words are always computed.
"""

from __future__ import annotations


import numpy as np
import torch

from probe.analysis.cues import Cue
from probe.analysis.errors import AnalysisError
from probe.analysis.sample import Sample

__all__ = ["shift_samples", "read_concepts", "nearest_words", "cue_concept"]


def cue_concept(cue: Cue) -> tuple[str, str]:
    """The (attribute, value) a scorer reports for this cue (a cue without an attribute: its name for both)."""
    if cue.attribute is not None and cue.value is not None:
        return cue.attribute, cue.value
    return cue.name, cue.name


def _presence(concepts: list[dict], cue: Cue) -> np.ndarray | None:
    attribute, value = cue_concept(cue)
    if not concepts or attribute not in concepts[0]:
        return None
    return np.array([c.get(attribute) == value for c in concepts], dtype=bool)


def shift_samples(class_index: int, cues: list[Cue], baseline: list[dict], token: list[dict], *,
                  object_attribute: str | None = None, object_value: str | None = None,
                  evidence: list[str] = (), keys: list[str] | None = None) -> dict[str, Sample]:
    """Token-shift samples from what a scorer read on paired baseline/token images (row i shares prompt and seed).

    A pair counts only when both images show the class's object (when the scorer can tell): a token that
    turned the object into another one says nothing about the cue. ``keys`` names row i's pair
    (``"s{seed}:p{prompt index}"``); the samples keep the names of their valid pairs.
    """
    if len(baseline) != len(token):
        raise AnalysisError(f"token shift needs paired images: {len(baseline)} baseline vs {len(token)} token images.")
    ok = np.ones(len(baseline), dtype=bool)
    if object_attribute and object_value and baseline and object_attribute in baseline[0]:
        ok = np.array([b.get(object_attribute) == object_value and t.get(object_attribute) == object_value
                       for b, t in zip(baseline, token)], dtype=bool)
    out = {}
    for cue in cues:
        before, after = _presence(baseline, cue), _presence(token, cue)
        if before is None or after is None:
            continue
        out[cue.name] = Sample("token-shift", class_index, cue.name, before=before[ok], after=after[ok],
                               attempted=len(ok), excluded=int((~ok).sum()), evidence=list(evidence),
                               extra={"freq_baseline": float(before[ok].mean()) if ok.any() else None,
                                      "freq_token": float(after[ok].mean()) if ok.any() else None},
                               keys=[k for k, kept in zip(keys, ok) if kept] if keys is not None else [])
    return out


def read_concepts(scorer, images: torch.Tensor) -> list[dict]:
    """What ``scorer`` reads on each image: ``[{attribute: value}, ...]``."""
    if images.shape[0] == 0:
        return []
    try:
        predicted = scorer.predict(images)
    except Exception as e:
        raise AnalysisError(f"the concept scorer failed: {type(e).__name__}: {e}") from e
    return [{a: values[i] for a, values in predicted.items()} for i in range(images.shape[0])]


def nearest_words(tokenizer, text_encoder, vector: torch.Tensor, k: int = 10) -> list[dict]:
    """The ``k`` vocabulary words whose input embeddings are closest (cosine) to ``vector``.

    Added tokens (other classes' learned tokens) are excluded.
    """
    emb = text_encoder.get_input_embeddings().weight.detach().float().cpu()
    v = vector.detach().float().cpu().reshape(-1)
    if v.shape[0] != emb.shape[1]:
        raise AnalysisError(
            f"token vector has dimension {v.shape[0]} but the text encoder's embeddings have {emb.shape[1]}; "
            "was the token learned with another generator?"
        )
    added = set()
    try:
        added = set(tokenizer.get_added_vocab().values())
    except Exception:
        pass
    n_base = len(tokenizer.encoder) if hasattr(tokenizer, "encoder") else emb.shape[0]
    sims = torch.nn.functional.cosine_similarity(emb, v[None], dim=1)
    order = torch.argsort(sims, descending=True).tolist()
    out: list[dict] = []
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    for i in order:
        if i in added or i in special or i >= n_base:
            continue
        word = tokenizer.convert_ids_to_tokens(i)
        word = str(word).replace("</w>", "")
        if not any(ch.isalnum() for ch in word):
            continue
        out.append({"word": word, "id": int(i), "cosine": round(float(sims[i]), 4)})
        if len(out) >= k:
            break
    return out
