"""Effect sizes with paired bootstrap confidence intervals, and the thresholds
that decide whether a finding is reported as strong, weak or not at all.

Every effect in probe's findings is the mean of *paired* differences: the same
seed and prompt rendered with and without a cue, with and without the token.
Resampling the pairs (not the two sides independently) keeps the pairing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probe.analysis.errors import AnalysisError

__all__ = ["Effect", "Thresholds", "paired_bootstrap", "bootstrap_columns"]


@dataclass(frozen=True)
class Effect:
    """Mean of paired differences with a percentile bootstrap interval."""

    mean: float
    ci_low: float
    ci_high: float
    n: int

    def __repr__(self) -> str:
        return f"Effect({self.mean:+.3f}, 95% CI [{self.ci_low:+.3f}, {self.ci_high:+.3f}], n={self.n})"


def _check_boot(n_boot: int, confidence: float) -> None:
    if n_boot < 100:
        raise AnalysisError(f"n_boot={n_boot} is too small for a stable interval; use at least 100 (default 1000).")
    if not 0.5 < confidence < 1.0:
        raise AnalysisError(f"confidence={confidence} must lie in (0.5, 1); use 0.95 for a 95% interval.")


def paired_bootstrap(diffs, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0) -> Effect:
    """Mean of the paired differences ``diffs`` (1-D) with a percentile bootstrap CI."""
    d = np.asarray(diffs, dtype=np.float64).reshape(-1)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return Effect(float("nan"), float("nan"), float("nan"), 0)
    return bootstrap_columns(d[:, None], n_boot=n_boot, confidence=confidence, seed=seed)[0]


def bootstrap_columns(
    diffs, mask=None, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0, chunk: int = 256
) -> list[Effect]:
    """Bootstrap every column of ``diffs`` (pairs × columns) with one shared resampling.

    ``mask`` (same shape, bool) excludes pairs per column, e.g. the pairs whose
    carrier prompt names the class itself. Columns are processed in chunks so
    1000-class models stay within memory.
    """
    _check_boot(n_boot, confidence)
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 2:
        raise AnalysisError(f"diffs has shape {d.shape}; pass a 2-D array of pairs × columns.")
    m = np.ones_like(d, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    m = m & np.isfinite(d)
    d = np.where(m, d, 0.0)
    n_pairs, n_cols = d.shape
    if n_pairs == 0:
        return [Effect(float("nan"), float("nan"), float("nan"), 0) for _ in range(n_cols)]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_pairs, size=(n_boot, n_pairs))
    alpha = (1.0 - confidence) / 2.0
    # hist[b, i] = how often pair i was drawn in resample b; resampled sums are then
    # one matrix product, without materialising a (n_boot, n_pairs, n_cols) array.
    hist = np.zeros((n_boot, n_pairs))
    np.add.at(hist, (np.repeat(np.arange(n_boot), n_pairs), idx.reshape(-1)), 1.0)
    out: list[Effect] = []
    for start in range(0, n_cols, chunk):
        dc, mc = d[:, start : start + chunk], m[:, start : start + chunk].astype(np.float64)
        counts = mc.sum(0)
        means = np.divide(dc.sum(0), counts, out=np.full(dc.shape[1], np.nan), where=counts > 0)
        bsum, bcnt = hist @ dc, hist @ mc
        bmeans = np.divide(bsum, bcnt, out=np.full(bsum.shape, np.nan), where=bcnt > 0)
        lo = np.nanquantile(bmeans, alpha, axis=0) if n_pairs > 1 else means
        hi = np.nanquantile(bmeans, 1 - alpha, axis=0) if n_pairs > 1 else means
        for j in range(dc.shape[1]):
            out.append(Effect(float(means[j]), float(lo[j]), float(hi[j]), int(counts[j])))
    return out


@dataclass(frozen=True)
class Thresholds:
    """What makes a finding *pass* (strong) or be shown as *weak*.

    Cue findings (sufficiency, necessity, token-shift; effects are changes in
    probability or frequency) pass when the effect is at least ``min_effect``
    and the interval excludes zero (``ci_low > min_ci_low``), on at least
    ``min_images`` pairs; they are kept as weak evidence when the effect is at
    least ``weak_effect`` without passing, and not reported below that.
    Off-object findings (effect = share of attribution mass outside the object)
    pass when the interval's lower end reaches ``off_object_min_share``, i.e.
    most of the evidence lies off the object; weak from ``off_object_weak_share``.
    """

    min_effect: float = 0.15
    min_ci_low: float = 0.0
    weak_effect: float = 0.05
    off_object_min_share: float = 0.5
    off_object_weak_share: float = 0.35
    min_images: int = 4

    def __post_init__(self) -> None:
        for name in ("min_effect", "weak_effect", "off_object_min_share", "off_object_weak_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise AnalysisError(f"Thresholds.{name}={v} must lie in [0, 1]; effects are probabilities or shares.")
        if self.weak_effect > self.min_effect:
            raise AnalysisError(
                f"Thresholds.weak_effect={self.weak_effect} exceeds min_effect={self.min_effect}; "
                "the weak bar must be the lower one."
            )
        if self.off_object_weak_share > self.off_object_min_share:
            raise AnalysisError(
                f"Thresholds.off_object_weak_share={self.off_object_weak_share} exceeds "
                f"off_object_min_share={self.off_object_min_share}; the weak bar must be the lower one."
            )
        if self.min_images < 1:
            raise AnalysisError(f"Thresholds.min_images={self.min_images} must be at least 1.")

    def judge(self, kind: str, effect: Effect) -> tuple[bool, str | None]:
        """Return (passes, strength) where strength is "strong", "weak" or None (not reported)."""
        if effect.n < 1 or not np.isfinite(effect.mean):
            return False, None
        enough = effect.n >= self.min_images
        if kind == "off-object":
            if enough and effect.ci_low >= self.off_object_min_share:
                return True, "strong"
            return (False, "weak") if effect.mean >= self.off_object_weak_share else (False, None)
        if enough and effect.mean >= self.min_effect and effect.ci_low > self.min_ci_low:
            return True, "strong"
        if effect.mean >= self.weak_effect:
            return False, "weak"
        return False, None
