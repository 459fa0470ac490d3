"""One test's data: the valid paired observations of (kind, class, cue), and how many interventions failed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from probe.analysis.stats import Effect, paired_effect, paired_proportions



@dataclass
class Sample:
    """Paired observations for one test.

    ``diffs`` holds one value per valid pair (sufficiency, necessity: a change in P(class)); token-shift
    holds ``before``/``after`` booleans per valid pair (cue shown by the baseline / token image).
    ``attempted`` pairs were generated, ``excluded`` of them failed the intervention check. ``keys`` names
    each valid pair by what made it (``"s7003:circle"``: seed and carrier; ``"s7003:p0"``: seed and prompt
    index), in the order of the values, so that two runs measured on the same seeds can be paired
    (``probe.compare``).
    """

    kind: str
    class_index: int
    cue: str
    diffs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    before: np.ndarray | None = None
    after: np.ndarray | None = None
    attempted: int = 0
    excluded: int = 0
    evidence: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.before.size) if self.before is not None else int(self.diffs.size)

    @property
    def excluded_share(self) -> float:
        return self.excluded / self.attempted if self.attempted else 0.0

    def effect(self, confidence: float = 0.95, seed: int = 0) -> Effect:
        if self.before is not None:
            return paired_proportions(self.before, self.after, confidence=confidence)
        return paired_effect(self.diffs, confidence=confidence, seed=seed)

    @property
    def mean(self) -> float:
        if self.n == 0:
            return float("nan")
        if self.before is not None:
            return float(self.after.mean() - self.before.mean())
        return float(self.diffs.mean())

    def values(self) -> np.ndarray:
        """One value per valid pair: the difference (sufficiency, necessity), or after − before (token shift)."""
        if self.before is not None:
            return self.after.astype(np.float64) - self.before.astype(np.float64)
        return np.asarray(self.diffs, np.float64)

    def pairs(self, digits: int = 5) -> dict:
        """The per-pair record kept in analysis.json: keys, rounded values, pairs attempted and excluded."""
        values = [round(float(v), digits) for v in self.values()]
        keys = list(self.keys) if len(self.keys) == len(values) else []
        return {"keys": keys, "values": values if keys else [], "attempted": int(self.attempted),
                "excluded": int(self.excluded)}

    def __add__(self, other: "Sample") -> "Sample":
        """Pool two samples of the same test (screening data is never pooled with confirmation data)."""
        both = self.before is not None
        return Sample(self.kind, self.class_index, self.cue,
                      diffs=np.concatenate([self.diffs, other.diffs]),
                      before=np.concatenate([self.before, other.before]) if both else None,
                      after=np.concatenate([self.after, other.after]) if both else None,
                      attempted=self.attempted + other.attempted, excluded=self.excluded + other.excluded,
                      evidence=(self.evidence + other.evidence), extra=_pooled(self.extra, other.extra),
                      keys=list(self.keys) + list(other.keys))


# extra fields that count images or pairs: pooled samples add them up (the rest: the later sample's value)
_COUNTS = ("images_failed_check",)


def _pooled(a: dict, b: dict) -> dict:
    """Two samples' ``extra``, the later one's values winning, except counts (``_COUNTS``), which add up: after
    top-ups and confirmation rounds ``images_failed_check`` kept only the last round's count while ``attempted``
    and ``excluded`` were summed."""
    out = {**a, **b}
    for key in _COUNTS:
        if isinstance(a.get(key), int) and isinstance(b.get(key), int):
            out[key] = a[key] + b[key]
    return out
