"""Adaptive screening: more pairs where a screen is ambiguous, none where it is clear.

A screen measures every (class, cue) on a few pairs (2 seeds per carrier for sufficiency, 4 seeds per prompt for
necessity) to choose the candidates that confirmation measures again on fresh pairs. A few pairs cannot see an
effect near the bar: a planted cue worth +0.27 screened at +0.13 on 4 pairs and was never confirmed (validity set
fresh3, star/wood), one worth +0.25 at +0.149 on 6 sufficiency pairs (fresh3, star/bar). So, after the first pass:

1. :func:`mark_failure`: each class's generator failure rate (the median share of its screens' pairs lost to failed
   interventions) goes into its tests, which then top up what the generator loses anyway and are inconclusive only
   for failures beyond it;
   :func:`more_steps`: a class that loses at least ``MORE_STEPS_FAILURE`` of its pairs, where the audit sampled with
   fewer steps than the generator's default, is drawn from then on (top-ups, rounds, confirmation) at twice the steps,
   at most the default. Measured on fresh7-biased-1 (a world classifier with circles-with-a-dot planted, true +0.30):
   at the demo's 5 steps its circle token drew rough discs that the shape oracle read as stars, 11 of 12 screening
   pairs of circle/dot were excluded and the cue was never confirmed; at 10 steps the same token's circles read as
   circles (25 of 32 pairs valid) and the test measured +0.28;
2. :func:`top_up`: necessity screens of such a class get fresh seeds until they hold the valid pairs they were
   planned with (at most 3 times the attempts);
   :func:`name_instead`: a necessity screen still inconclusive after that (its token's images lost the object or the
   asked value in more pairs than the class's failure rate allows) is screened again with the class's name in place
   of the token, and confirmed so. Measured on fresh8-biased-0 (yellow circles planted, true +0.36): its circle
   token, asked for a red or yellow circle, drew squares, triangles and hearts (the oracles read a circle in 2 to 10
   of 32 images, at 5, 10 or 20 steps alike); 10 of 12 screening pairs were excluded and the cue was never confirmed.
   "a photo of a yellow circle ..." kept the object in 32 of 32 pairs and measured +0.31;
3. round by round (``cfg.screen_extend``), the :func:`ambiguous` screens, sufficiency and necessity, get more seeds:
   below the effect threshold in the claimed direction, but at least at the weak bar or with a one-sided 97.5%
   Student-t upper bound (:func:`upper_bound`) that still reaches the threshold. A screen whose pairs agree on
   nothing (every value near 0) or that points the other way is clear after its first pairs and costs nothing more.

The added pairs are pooled into the screen and never decide: confirmation uses fresh seeds
(``probe.analysis.plan.confirm_round``), so the selection stays apart from the estimate. A screen that spent every
round and still reaches the weak bar is a candidate (``engine._candidate``).
"""

from __future__ import annotations

import math

import numpy as np

from probe.analysis.class_evidence import load_token
from probe.analysis.config import AnalysisConfig
from probe.analysis.cues import Carrier
from probe.analysis.lab import Lab
from probe.analysis.necessity import measure_necessity
from probe.analysis.plan import Test
from probe.analysis.policy import failure_rate
from probe.analysis.sufficiency import measure_sufficiency

__all__ = ["MORE_STEPS_FAILURE", "TOP_UP_SEEDS", "ambiguous", "extend_screens", "failure_of", "mark_failure",
           "more_steps", "class_steps", "name_instead", "token_text", "top_up", "upper_bound"]

MORE_STEPS_FAILURE = 0.25  # a class losing this share of its screening pairs is drawn at more steps (more_steps)
TOP_UP_SEEDS = 50_000  # screens' top-up seeds start here: apart from the screens' (0..) and confirmation's (100,000..)
EXTENDED_KINDS = ("sufficiency", "necessity")  # one-sided tests; a token shift reads the run's own images (no seeds)

# Student t's 97.5% quantile for 1..30 degrees of freedom (beyond: the Cornish-Fisher term z + (z^3 + z) / 4df)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """Student t's 97.5% quantile with ``df`` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ValueError(f"df={df} must be at least 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df)


def upper_bound(values) -> float:
    """The one-sided 97.5% Student-t upper bound of the mean of ``values`` (inf for fewer than 2)."""
    v = np.asarray(values, np.float64)
    if v.size < 2:
        return math.inf
    return float(v.mean() + t975(v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))


def mark_failure(tests: list[Test]) -> None:
    """Step 1: each class's generator failure rate (:func:`probe.analysis.policy.failure_rate` over its sufficiency
    and necessity screens) in its tests' ``extra["generator_failure"]``, where it is above 0."""
    by_class: dict[int, list[float]] = {}
    for t in tests:
        if t.kind in EXTENDED_KINDS and t.screen.attempted:
            by_class.setdefault(t.cls.index, []).append(t.screen.excluded_share)
    rates = {c: round(failure_rate(v), 4) for c, v in by_class.items()}
    for t in tests:
        if rates.get(t.cls.index):
            t.extra["generator_failure"] = rates[t.cls.index]


def token_text(cls) -> str | None:
    """The text that marks ``cls``'s token prompts (its token, e.g. ``<probe-0>``; else its token prompts' subject),
    None when the run recorded no token prompts."""
    prompts = cls.token_prompts(1)
    if not prompts:
        return None
    subject = prompts[0][1]
    first = subject.split()[0] if subject.split() else subject
    return first if first.startswith("<") and first.endswith(">") else subject


def class_steps(lab: Lab, cls) -> int | None:
    """The sampling steps :func:`more_steps` gave ``cls``'s token prompts (None: the run's own)."""
    text = token_text(cls)
    return lab.more_steps.get(text) if text else None


def more_steps(lab: Lab, tests: list[Test], generator) -> dict[str, int]:
    """Step 1b: each class whose failure rate (:func:`mark_failure`) is at least ``MORE_STEPS_FAILURE`` has its token
    prompts drawn at twice the lab's sampling steps from now on, at most the generator's default, when the lab samples
    with fewer (``lab.more_steps``). Returns {class name: steps} of the classes moved."""
    base = lab.gen_kwargs.get("steps")
    default = getattr(getattr(generator, "defaults", None), "steps", None)
    if not base or not default or int(base) >= int(default):
        return {}
    steps = min(2 * int(base), int(default))
    moved = {}
    for cls in {t.cls.index: t.cls for t in tests if t.failure >= MORE_STEPS_FAILURE}.values():
        text = token_text(cls)
        if text and text not in lab.more_steps:
            lab.more_steps[text] = steps
            moved[cls.name] = steps
    return moved


def failure_of(tests: list[Test], class_index: int) -> float:
    """The failure rate :func:`mark_failure` gave the class's tests (0 when none)."""
    return next((t.failure for t in tests if t.cls.index == class_index and t.failure), 0.0)


def ambiguous(cfg: AnalysisConfig, test: Test) -> bool:
    """Neither clearly nothing nor clearly a candidate: a sufficiency or necessity screen with 0 <= mean < the
    effect threshold that is at least at the weak bar, or whose :func:`upper_bound` reaches the threshold."""
    s = test.screen
    if test.kind not in EXTENDED_KINDS or s.n == 0 or test.inconclusive(s):
        return False
    bar = cfg.thresholds.min_effect
    if not 0.0 <= s.mean < bar:
        return False
    return s.mean >= cfg.thresholds.weak_effect or upper_bound(s.values()) >= bar


def _necessity(cfg: AnalysisConfig, lab: Lab, test: Test, seeds: list[int], generator, object_attribute, object_of,
               n_evidence: int = 0):
    load_token(generator, test.cls)
    return measure_necessity(lab, test.cls.index, test.cue, test.necessity_prompts(cfg.necessity_templates), seeds,
                             object_value=object_of(test.cls), object_attribute=object_attribute or "object",
                             evidence_dir=test.cls.dir / "analysis" / "necessity", n_evidence=n_evidence)


def _sufficiency(cfg: AnalysisConfig, lab: Lab, test: Test, carriers: list[Carrier], seeds: list[int],
                 object_attribute):
    return measure_sufficiency(lab, [test.cue], [test.cls.index], carriers, seeds, template=cfg.carrier_template,
                               object_attribute=object_attribute or "object", n_evidence=0)[(test.cue.name,
                                                                                             test.cls.index)]


def top_up(cfg: AnalysisConfig, lab: Lab, tests: list[Test], generator, object_attribute, object_of) -> set[int]:
    """Step 2: necessity screens of a class whose generator loses pairs whatever the cue (``Test.failure`` > 0) get
    fresh seeds, round by round, until they hold the valid pairs they were planned with or have attempted 3 times
    that many (:func:`probe.analysis.policy.attempt_budget`'s cap), as confirmation does. Without it, a 4-pair
    screen at a 30% failure rate keeps one or two pairs and reads as inconclusive, and the planted cue is never
    confirmed. A faithful generator (failure 0) adds nothing. Each test draws its seeds from its own range
    (``cfg.seed + TOP_UP_SEEDS`` on), so a class gets the same pairs alone on a Ray worker as among all classes.
    Returns the ids of the screens topped up."""
    tests = [t for t in tests if t.kind == "necessity"]
    planned = {id(t): t.screen.attempted for t in tests}
    per_seed = max(1, round(max(planned.values(), default=0) / max(cfg.necessity_screen_seeds, 1)))
    cursor = {id(t): cfg.seed + TOP_UP_SEEDS for t in tests}
    topped: set[int] = set()
    while True:
        short = [t for t in tests if t.failure and 0 < planned[id(t)] and t.screen.n < planned[id(t)]
                 and t.screen.attempted < 3 * planned[id(t)]]
        if not short:
            return topped
        seeds = {}
        for t in short:
            want = min(math.ceil((planned[id(t)] - t.screen.n) / (1.0 - t.failure) / per_seed),
                       math.ceil((3 * planned[id(t)] - t.screen.attempted) / per_seed))
            seeds[id(t)] = list(range(cursor[id(t)], cursor[id(t)] + max(1, want)))
            cursor[id(t)] += max(1, want)
        samples = lab.batched(lambda: [_necessity(cfg, lab, t, seeds[id(t)], generator, object_attribute, object_of)
                                       for t in short])
        for test, sample in zip(short, samples):
            test.screen = test.screen + sample
            test.extra["screen_topped_up"] = test.extra.get("screen_topped_up", 0) + sample.attempted
            topped.add(id(test))


def name_instead(cfg: AnalysisConfig, lab: Lab, tests: list[Test], generator, object_attribute, object_of) -> list[Test]:
    """Step 2b: the necessity screens still inconclusive after :func:`top_up` are screened again, on the screens' own
    seeds, with the class's name as the subject instead of its token (``extra["drawn_with_name"]``; the token's screen
    is kept in ``extra["token_screen"]``), then topped up like any other; their rounds and confirmation draw them so
    (``Test.necessity_prompts``). A class with a placeholder name ("LABEL_3") has no name to draw and keeps its
    token. Returns the tests screened again."""
    chosen = []
    for t in tests:
        if t.screen.attempted and t.inconclusive(t.screen) and t.draw_with_name(t.screen, "token_screen"):
            chosen.append(t)
    if not chosen:
        return []
    seeds = list(range(cfg.seed, cfg.seed + cfg.necessity_screen_seeds))
    samples = lab.batched(lambda: [_necessity(cfg, lab, t, seeds, generator, object_attribute, object_of,
                                              n_evidence=cfg.n_evidence) for t in chosen])
    for test, sample in zip(chosen, samples):
        test.screen = sample
        test.extra.pop("screen_topped_up", None)  # the token's top-ups are in token_screen; the name's come next
    top_up(cfg, lab, chosen, generator, object_attribute, object_of)
    return chosen


def extend_screens(cfg: AnalysisConfig, lab: Lab, tests: list[Test], carriers: dict[int, list[Carrier]], generator,
                   object_attribute, object_of, say=None) -> tuple[int, int]:
    """Steps 2-3 on the screened ``tests`` (``carriers``: each class's sufficiency carriers). Returns (screens topped
    up, screens given adaptive rounds); each extended test records its rounds in ``extra["screen_rounds"]``."""
    say = say if callable(say) else (lambda _line: None)
    lab.stage = "screen_extend"
    topped = top_up(cfg, lab, tests, generator, object_attribute, object_of)
    named = name_instead(cfg, lab, tests, generator, object_attribute, object_of)
    if named:
        say(f"analysis: {len(named)} necessity screens the token's images could not decide are drawn with the "
            f"class's name")
    extended: set[int] = set()
    necessity_from = cfg.seed + cfg.necessity_screen_seeds  # past each kind's own screen seeds
    sufficiency_from = cfg.seed + cfg.screen_seeds
    for round_no, more in enumerate(cfg.screen_extend):
        chosen = [t for t in tests if ambiguous(cfg, t)]
        if not chosen:
            break
        n_suff = cfg.sufficiency_extend_seeds(more)
        necessity = list(range(necessity_from, necessity_from + more))
        sufficiency = list(range(sufficiency_from, sufficiency_from + n_suff))
        necessity_from, sufficiency_from = necessity_from + more, sufficiency_from + n_suff
        say(f"analysis: adaptive screening round {round_no + 1}: {len(chosen)} ambiguous screens get more pairs "
            f"({more} seeds per necessity prompt, {n_suff} per sufficiency carrier)")

        def measure():
            return [_necessity(cfg, lab, t, necessity, generator, object_attribute, object_of) if t.kind == "necessity"
                    else _sufficiency(cfg, lab, t, carriers[t.cls.index], sufficiency, object_attribute)
                    for t in chosen]

        for test, sample in zip(chosen, lab.batched(measure)):
            test.screen = test.screen + sample
            test.extra["screen_rounds"] = round_no + 1
            extended.add(id(test))
    return len(topped), len(extended)
