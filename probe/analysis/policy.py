"""The decision policy: what the statistics of :mod:`probe.analysis.stats` decide.

The statistics say how large an effect is, how sure we can be of it, and how
that holds up over the whole audit's tests (p, interval, q). The policy says
what a reviewer is shown:

- :class:`Thresholds`: the bars (effect, q, pairs) and :meth:`Thresholds.judge_q`,
  which turns one effect into (passes, strength);
- :func:`verdict`: the status of a confirmed test (passes, weak, inconclusive),
  used by the audit (``engine``) and by the tests after it (``retest``) alike;
- :data:`EXCLUDED_LIMIT` and :func:`excluded_limit`: a test whose interventions failed for more than that
  share of the pairs the generator usually gets right is inconclusive, never a finding;
- :func:`checked`: a finding nobody checked never passes: it is *unverified*;
- :func:`describe_rule`: the rule in one plain sentence, for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probe.analysis.errors import AnalysisError
from probe.analysis.stats import FDR_METHODS, Effect
from probe.run.records import SHARE_KINDS, UNCHECKED

__all__ = ["EXCLUDED_LIMIT", "MAX_FAILURE", "UNCHECKED", "Thresholds", "attempt_budget", "checked", "describe_rule",
           "excluded_limit", "failure_rate", "verdict"]


EXCLUDED_LIMIT = 0.5  # a test whose interventions failed for more than half of its pairs is inconclusive ...
MAX_FAILURE = 0.8  # ... of the pairs left after the generator's own failure rate, taken as at most this much


def failure_rate(shares) -> float:
    """The generator's own failure rate for one class: the median share of excluded pairs over the class's screens.

    A generator that drifts (draws a fish for "underwater", drops the object) fails some pairs whatever the cue; the
    median over a class's ~30 screened cues reads that rate and is not moved by the few cues that break the object
    themselves. 0 for a faithful generator (the shapes world), so nothing changes there.
    """
    values = sorted(float(s) for s in shares)
    if not values:
        return 0.0
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return min(max(median, 0.0), MAX_FAILURE)


def excluded_limit(failure: float = 0.0) -> float:
    """The share of excluded pairs above which a test is inconclusive, given the generator's failure rate.

    Failures the generator makes whatever the cue leave a random subset of pairs, which still estimates the effect
    without bias: they only cost pairs. Failures the *cue* causes select the pairs that survive, and that is what
    the limit guards: more than half of the pairs the generator would otherwise keep. With ``failure`` 0 this is
    :data:`EXCLUDED_LIMIT`; at 0.5 (half the pairs lost anyway) it is 0.75.
    """
    failure = min(max(float(failure), 0.0), MAX_FAILURE)
    return 1.0 - (1.0 - EXCLUDED_LIMIT) * (1.0 - failure)


def attempt_budget(max_pairs: int, failure: float = 0.0) -> int:
    """Pairs a confirmation may attempt: ``max_pairs`` valid pairs' worth at the generator's failure rate (the
    budget counts valid pairs, not attempts), at most 3 × ``max_pairs``."""
    failure = min(max(float(failure), 0.0), MAX_FAILURE)
    return min(3 * max_pairs, math.ceil(max_pairs / (1.0 - failure)))


@dataclass(frozen=True)
class Thresholds:
    """What makes a finding *pass* (strong) or be shown as *weak*.

    Cue findings (sufficiency, necessity, token-shift; effects are changes in
    probability or frequency), judged by :meth:`judge_q`, pass when all of:

    - the effect is at least ``min_effect`` in the claimed direction: positive
      for sufficiency and necessity (a cue that *lowers* the class probability
      does not support "the class relies on the cue"), either direction for
      the kinds in ``two_sided_kinds`` ("the token adds snow" and "the token
      removes snow" are both claims);
    - its q-value, over the audit's confirmed tests (screening selects them on
      other pairs, so the confirmed family is a valid two-stage design), is at
      most ``fdr_q`` under ``fdr_method``; the p-value tests "effect = 0", so
      the effect bar above applies to the point estimate, not to a test: "by" (Benjamini–Yekutieli) by default because the tests
      of one audit share images and their dependence cannot be assumed
      positive; BY controls the false discovery rate under any dependence, at
      the price of a factor c(m) = 1 + 1/2 + ... + 1/m on the p-values;
    - it rests on at least ``min_pairs`` pairs: with n pairs the smallest
      attainable p-value is 2 / 2**n, so a handful of pairs cannot survive a
      correction over ~70 tests, and a finding on fewer pairs should not look
      as if it could.

    Findings that miss a bar but reach ``weak_effect`` (in the claimed
    direction) are kept as weak evidence; below that they are not reported.
    Off-object findings are judged by the same rule: their effect is the
    excess of attribution mass outside the object over the share of the area
    outside it (0 for attribution spread evenly), measured on at least
    ``min_pairs`` fresh images, and their one-sided p-value for "no excess"
    is in the same false-discovery-rate family.

    ``min_ci_low``, ``off_object_min_share``, ``off_object_weak_share`` and
    ``min_images`` are read by no rule since the q-value rule replaced the
    interval rules; they stay fields because saved runs' config.json carry
    them and read them back into this class.
    """

    min_effect: float = 0.15
    min_ci_low: float = 0.0
    weak_effect: float = 0.05
    off_object_min_share: float = 0.5
    off_object_weak_share: float = 0.35
    min_images: int = 4
    fdr_q: float = 0.05
    fdr_method: str = "by"
    min_pairs: int = 16
    two_sided_kinds: tuple[str, ...] = ("token-shift",)

    def __post_init__(self) -> None:
        for name in ("min_effect", "weak_effect", "off_object_min_share", "off_object_weak_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                shown = "--min-effect" if name == "min_effect" else f"Thresholds.{name}"  # the one with a CLI flag
                raise AnalysisError(f"{shown} {v} must lie in [0, 1]; effects are probabilities or shares.")
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
        if not 0.0 < self.fdr_q < 1.0:
            raise AnalysisError(f"--fdr-q {self.fdr_q} must lie in (0, 1); 0.05 is the usual level.")
        if self.fdr_method not in FDR_METHODS:
            raise AnalysisError(
                f"Thresholds.fdr_method={self.fdr_method!r} is not one of {FDR_METHODS}; "
                "'by' (Benjamini–Yekutieli) is valid for the dependent tests of one audit."
            )
        if self.min_pairs < 1:
            raise AnalysisError(f"Thresholds.min_pairs={self.min_pairs} must be at least 1.")
        kinds = self.two_sided_kinds
        if isinstance(kinds, str) or not isinstance(kinds, (tuple, list)) or not all(isinstance(k, str) for k in kinds):
            raise AnalysisError(
                f"Thresholds.two_sided_kinds={kinds!r} must be a sequence of finding kinds, e.g. ('token-shift',)."
            )
        # A JSON round trip turns the tuple into a list; keep the field hashable.
        object.__setattr__(self, "two_sided_kinds", tuple(kinds))

    def judge_q(self, kind: str, effect: Effect) -> tuple[bool, str | None]:
        """Return (passes, strength) under the false-discovery-rate rule (see the class docstring).

        ``effect.q`` must have been set by :func:`apply_fdr` over the audit's
        confirmed tests; an effect without a q-value never passes.
        """
        if effect.n < 1 or not np.isfinite(effect.mean):
            return False, None
        size = abs(effect.mean) if kind in self.two_sided_kinds else effect.mean
        if (
            effect.n >= self.min_pairs
            and np.isfinite(effect.q)
            and effect.q <= self.fdr_q
            and size >= self.min_effect
        ):
            return True, "strong"
        if size >= self.weak_effect:
            return False, "weak"
        return False, None


def describe_rule(thresholds: Thresholds, family: str = "audit") -> str:
    """What "passes" means under ``thresholds``, in the words the report, the README and the docs use.

    Exactly what the code tests (:meth:`Thresholds.judge_q`), including what it does not test: the null
    hypothesis is "effect = 0", not "effect below the bar", so the bar applies to the point estimate.
    ``family`` (``AnalysisConfig.fdr_family``): "audit", one false-discovery-rate family over the audit's
    confirmed tests; "per-class", one per class with the classes selected first (Benjamini–Bogomolov), whose
    guarantee is a different one and is said so.
    """
    t = thresholds
    method = {"by": "Benjamini–Yekutieli", "bh": "Benjamini–Hochberg"}[t.fdr_method]
    dependence = "valid for dependent tests" if t.fdr_method == "by" else "assuming independent or positively related tests"
    either = f" (either way for {', '.join(t.two_sided_kinds)})" if t.two_sided_kinds else ""
    if family == "per-class":
        control = (f"per-class selective inference (Benjamini–Bogomolov): a class is selected when Benjamini–Hochberg "
                   f"over the classes' Simes p-values keeps it at {t.fdr_q:g}, then {method} within each selected "
                   f"class at {t.fdr_q:g} × selected classes / classes tested; it keeps the expected share of selected "
                   f"classes with no real effect, and the average over selected classes of the share of false findings "
                   f"within a class, at most {t.fdr_q:g} when the classes' tests are independent of each other — not "
                   f"the share of false findings over the whole audit; screening chose which tests to confirm and is "
                   f"not part of the families")
    else:
        control = (f"{method} false-discovery-rate control over the audit's confirmed tests, {dependence}; screening "
                   f"chose which tests to confirm and is not part of that family")
    return (
        f"A finding passes when, on at least {t.min_pairs} fresh image pairs (images, for off-object) that played no "
        f"part in choosing it, its effect differs from 0 with a q-value of at most {t.fdr_q:g} ({control}) "
        f"and its point estimate is at least {t.min_effect:g} in the claimed "
        f"direction{either}; a token shift also needs the cue's own fresh sufficiency pairs to move the class by at "
        f"least {t.min_effect:g} the same way. The test is of 'no effect', not of 'effect below {t.min_effect:g}': a passing effect near "
        f"the bar may truly be smaller (its interval says how much smaller), and passing estimates can lean upward because "
        f"large ones are the ones kept. Effects of at least {t.weak_effect:g} that miss a bar are shown as weak. A "
        f"finding whose generated images nothing checked (no world oracles, no concept model) meets the bars at most as "
        f"unverified: it never passes. A test is inconclusive, never a finding, when its interventions failed the "
        f"check on more than half of the pairs the generator usually draws right (half of all pairs for a generator "
        f"that draws what it is asked); pairs the generator loses whatever the cue are replaced by fresh ones."
    )


def verdict(thresholds: Thresholds, kind: str, effect: Effect, inconclusive: bool) -> tuple[str, bool, str | None]:
    """(status, passes, strength) of a confirmed test with its q-value set.

    ``inconclusive`` (its interventions mostly failed their check): "inconclusive", never a pass, whatever
    the effect. Otherwise :meth:`Thresholds.judge_q`: "passes" or "weak"; ``strength`` is None when the
    effect is below the weak bar (the audit then reports nothing).
    """
    if inconclusive:
        return "inconclusive", False, "weak"
    passes, strength = thresholds.judge_q(kind, effect)
    return ("passes" if passes else "weak"), passes, strength


def checked(finding, checked_by: str):
    """``finding`` with who checked its images (``checked_by``: "world oracles", "concepts: MODEL" or
    :data:`UNCHECKED`). When nobody did, a cue finding that would pass is "unverified": its statistics stand, but
    nothing showed that the generated images held the object and the cue, so it does not pass; the gate counts
    it only when asked (``--include-unverified``)."""
    from dataclasses import replace

    from probe.analysis.finding import sentence_prefix

    if checked_by != UNCHECKED or finding.status != "passes" or finding.kind in SHARE_KINDS:
        # off-object findings measure the token's own images, no intervention: there is nothing to check
        return replace(finding, checked_by=checked_by)
    return replace(finding, checked_by=checked_by, status="unverified", passes=False,
                   sentence=sentence_prefix("unverified") + finding.sentence)
