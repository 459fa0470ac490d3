"""A class's nearest confusers: the other classes the classifier itself gives probability to on the class's
baseline images.

In a 1000-way softmax a cue added to a class name spread over the label list ("a photo of a tench on a sofa")
moves P(tabby) by nothing whatever the cue, so a sufficiency test on such carriers has no power. The classes a
cue could plausibly pull towards the target are the ones the classifier already confuses with it. They are read
from what the audit saved, no model needed:

1. the class's baseline images (``kind == "baseline"``: its plain prompt, no token) in metrics.json, each with
   the classifier's top-k (index, probability) at evaluation time;
2. every other class's mean probability over those images, an entry outside an image's top-k counting as 0
   (the mean softmax of the other classes on the baseline gallery, truncated at the top-k the audit kept);
3. the ``k`` largest, ties broken by class index; classes never seen in a top-k are never confusers.

metrics.json is data from a run directory: entries that are not (index within the label list, probability in
[0, 1]) are skipped, never trusted.
"""

from __future__ import annotations

import math

__all__ = ["confusers"]


def confusers(metrics: dict, class_index: int, n_labels: int, k: int) -> list[int]:
    """The ``k`` other classes with the largest mean probability on the class's baseline images (fewer when the
    saved top-k names fewer), nearest first."""
    # 1. the baseline images' saved top-k
    records = [r for r in (metrics.get("images") or []) if isinstance(r, dict) and r.get("kind") == "baseline"]
    total: dict[int, float] = {}
    for record in records:
        # 2. every other class's probability, summed over the images (absent: 0)
        for entry in record.get("topk") or []:
            if not isinstance(entry, dict):
                continue
            index, prob = entry.get("index"), entry.get("prob")
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n_labels or index == class_index:
                continue
            if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not math.isfinite(prob) \
                    or not 0.0 <= prob <= 1.0:
                continue
            total[index] = total.get(index, 0.0) + float(prob)
    # 3. the largest means (the sums over the same images order them alike)
    return [i for i, _ in sorted(total.items(), key=lambda item: (-item[1], item[0]))[:max(0, int(k))]]
