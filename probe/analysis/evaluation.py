"""Does the token make the class more recognisable? Its evaluation images against the plain prompt's, paired.

Each finished class's metrics.json holds one record per evaluation image (``images``: ``kind`` "baseline" or
"token", ``prompt_index``, ``seed``, ``correct``). Both kinds are drawn from the same templates on the same fresh
seeds, so an image of one kind has a twin of the other with the same noise: the accuracy change is a difference of
*paired* proportions, and a few images per class decide little. ``token_gain`` pools the pairs of every class given:

1. pair each class's baseline and token images by (prompt index, seed); an image without its twin, or whose
   ``correct`` is not a yes/no, is left out;
2. the change is mean(token correct) − mean(baseline correct) over the pairs, with Newcombe's interval and the exact
   McNemar p-value (``probe.analysis.stats.paired_proportions``).

Torch-free: the report, the demo's headline and the notebook read it from the records alone.
"""

from __future__ import annotations

from typing import Any, Iterable

from probe.analysis.stats import Effect, paired_proportions


def eval_pairs(metrics: dict | None) -> list[tuple[bool, bool]]:
    """Step 1 for one class: (baseline correct, token correct) per (prompt index, seed) both kinds were drawn at."""
    images = metrics.get("images") if isinstance(metrics, dict) else None
    kinds: dict[str, dict[tuple[Any, Any], bool]] = {"baseline": {}, "token": {}}
    for record in images if isinstance(images, (list, tuple)) else ():
        if not isinstance(record, dict) or record.get("kind") not in kinds or not isinstance(record.get("correct"), bool):
            continue
        key = (record.get("prompt_index"), record.get("seed"))
        if isinstance(key[1], int) and not isinstance(key[1], bool):
            kinds[record["kind"]][key] = record["correct"]
    base, token = kinds["baseline"], kinds["token"]
    return [(base[k], token[k]) for k in sorted(base.keys() & token.keys(), key=repr)]


def token_gain(metrics: Iterable[dict | None]) -> Effect | None:
    """Step 2: the accuracy change from the plain prompt to the token over every class's pairs; None without any."""
    pairs = [pair for m in metrics for pair in eval_pairs(m)]
    if not pairs:
        return None
    return paired_proportions([b for b, _ in pairs], [t for _, t in pairs])


def gain_text(effect: Effect | None) -> str:
    """One clause: "-8 pts (95% CI -25 to +9; exact McNemar p 0.45; 36 pairs)", or "" without pairs."""
    if effect is None:
        return ""
    pts = lambda v: f"{100 * v:+.0f}"  # noqa: E731
    return (f"{pts(effect.mean)} pts ({round(100 * effect.confidence)}% CI {pts(effect.ci_low)} to "
            f"{pts(effect.ci_high)}; exact McNemar p {effect.p:.2g}; {effect.n} pairs)")
