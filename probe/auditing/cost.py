"""The cost of an audit before any model loads: the images it will generate, stage by stage, and their time.

:func:`plan_audit` counts, from the very settings the audit runs with (``TokenConfig`` in probe/token_config.py,
``AnalysisConfig`` in probe/analysis/config.py), the way the engine spends images (probe/analysis/engine.py,
plan.py, lab.py; the Lab counts what it generated in analysis.json's ``images_by_stage`` under the same stage names):

1. ``token``: at most ``max_steps`` optimisation steps of ``batch_size`` images with gradient (early stops spend
   fewer: an upper bound);
2. ``evaluation``: ``eval_images`` per prompt kind (baseline, token), exact; they are the galleries the analysis reads;
3. ``off_object_screen``: the token gallery sampled again with its cross-attention captured (none when cached);
4. ``screen_sufficiency``: every carrier x screening seed, without and with each cue: one pass shared by all classes
   (carriers spread over the labels), or one per class (each class's confusers: an upper bound, shared carriers
   are generated once); exact when the cue prompts are distinct and no contexts are stated. With stated contexts a
   pair's cue-free image states the contexts of the cue's own tests, one per cue attribute, and the cue images whose
   cue value is the pair's own drawn context coincide: an upper bound of (attributes + cues) images a pair, cues + 1
   when every drawn context is a listed cue value;
5. ``screen_necessity``: per class and (prompt, seed), every distinct cue or counter context stated once (cues of one
   attribute share their images); an upper bound, reached unless the counter rule drops every counter of a cue;
6. ``screen_extend``: adaptive screening (probe/analysis/screening.py), ``screen_extend[r]`` more seeds per round
   for the ambiguous necessity screens and the same share of their screen seeds for the ambiguous sufficiency ones
   (per class: an upper bound), and up to 2 × ``necessity_screen_seeds`` more for a screen short of valid pairs on a class whose
   generator fails anyway, then, for a screen its token still cannot decide, the same screen drawn with the class's
   name and topped up again (3 × more; :data:`NAME_FALLBACK_SEEDS` in all; upper bound: all of them, every round,
   every screen topped up and drawn again). A class whose images fail at the run's few sampling steps is drawn at up
   to twice the steps from its top-ups on (screening.more_steps): those images cost up to twice the time the table
   gives, and ``--budget`` counts them so;
7. ``confirm``: rounds of fresh pairs until ``max_pairs``, plus the one round that replaces pairs lost to failed
   checks, for every candidate (upper bound: every test a candidate; a class's token-shift tests share their images);
   where the generator fails its checks anyway a test attempts at its loss rate, up to 3 x ``max_pairs`` and that
   round (plan.confirmed_enough), and the bound is that for every generator: even the world's, at the demo's 5
   sampling steps, loses a few pairs to its oracles (colour read right on 97.8% of images); a necessity test whose
   token's confirmation pairs keep losing the class is confirmed again with the class's name (plan.confirm_with_name),
   so its bound is twice that;
8. ``off_object_confirm``: ``min_pairs`` fresh token images for a class whose off-object screen reaches the bar
   (upper bound: every class);
9. ``discovered``: cues proposed per class by discovery (``AnalysisConfig.discover``), screened and confirmed like
   the listed ones (upper bound).

Times come from the measured throughput table (probe/auditing/throughput.py). A generator family without a row for
this device gets images only, and the H200's time as a labelled reference. :class:`probe.auditing.budget.Budget` (``--budget 2h`` or
``--budget 5000img``) becomes ``AnalysisConfig.max_images``, which the engine honours.

Torch-free at import: the CLI plans (``probe audit --dry-run``) before anything heavy loads.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from probe.auditing.budget import Budget
from probe.auditing.throughput import REFERENCE_DEVICE, THROUGHPUT, Measured, Throughput, cpu_flags, throughput_for
from probe.errors import RunError

if TYPE_CHECKING:
    from probe.analysis.config import AnalysisConfig
    from probe.analysis.cues import Cue
    from probe.auditing.config import AuditConfig
    from probe.token_config import TokenConfig

__all__ = ["Stage", "AuditPlan", "plan_audit", "plan_for_config", "generator_family", "device_kind",
           "sampling_precision", "class_count", "STAGES", "FIXED_STAGES"]

#: a necessity screen's extra seeds, in screens, at most: the token's top-up (2: screening.top_up), then the class's
#: name instead of the token (screening.name_instead): screened again (1) and topped up (2)
NAME_FALLBACK_SEEDS = 5

#: Stage name -> what it is, in the plan's words (the analysis stages are the Lab's, analysis.json images_by_stage).
STAGES = {
    "token": "token optimisation (images with gradient)",
    "evaluation": "evaluation galleries (baseline and token)",
    "off_object_screen": "off-object screen (token gallery with cross-attention)",
    "screen_sufficiency": "sufficiency screen (carriers with and without each cue)",
    "screen_necessity": "necessity screen (each cue and its counters)",
    "screen_extend": "adaptive screening and top-up of necessity screens",
    "confirm": "confirmation rounds on fresh pairs",
    "off_object_confirm": "off-object confirmation on fresh token images",
    "discovery": "discovery's plain-prompt images (read for proposals)",
    "discovered": "discovered cues, screened and confirmed",
}
ANALYSIS_STAGES = tuple(s for s in STAGES if s not in ("token", "evaluation"))
SCREENING_STAGES = ("off_object_screen", "screen_sufficiency", "screen_necessity", "discovery")
#: what every audit spends whatever screening finds; the other stages follow the screens (candidates, ambiguous ones)
FIXED_STAGES = ("token", "evaluation", *SCREENING_STAGES)


@dataclass(frozen=True)
class Stage:
    """One stage of the plan: its images over the whole audit, and how sure that count is."""

    name: str
    images: int
    exact: bool  # False: an upper bound (early stops, data-dependent candidates)
    shared: bool = False  # one pass for every class (the spread sufficiency screen)
    gradient: bool = False  # images that carry gradient (the token's optimisation)
    optimisation_steps: int | None = None  # the token stage: optimisation steps, at most
    seconds: float | None = None  # None: no measured throughput for this device
    note: str = ""

    def __post_init__(self):
        if self.name not in STAGES:
            raise RunError(f"unknown plan stage {self.name!r}; use one of {', '.join(STAGES)}")
        if self.images < 0 or (self.seconds is not None and not self.seconds >= 0):
            raise RunError(f"plan stage {self.name}: images and seconds must not be negative")

    @property
    def what(self) -> str:
        return STAGES[self.name]


@dataclass(frozen=True)
class AuditPlan:
    """What an audit will generate and how long that takes, before any model loads (``probe audit --dry-run``)."""

    classes: int
    family: str
    device: str
    steps: int
    guidance: float
    stages: tuple[Stage, ...]
    timing: str = "unmeasured"  # how the times were obtained (throughput.Throughput), or why there are none
    reference_seconds: float | None = None  # the whole plan at the reference device's throughput (own one unmeasured)
    seconds_per_image: float | None = None  # no-gradient image at the analysis's sampling, on this device
    max_images: int | None = None  # the analysis's image budget (--budget), when one is set
    confirm_test_images: int = 0  # the most one confirmed cue test can cost
    notes: tuple[str, ...] = ()
    precision: str | None = None  # what the no-gradient images are sampled in, where it picks the row (CPUs)

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "notes", tuple(self.notes))
        if self.classes < 0:
            raise RunError(f"a plan needs a class count of at least 0, got {self.classes}")
        if not all(isinstance(s, Stage) for s in self.stages):
            raise RunError("AuditPlan.stages must be probe.auditing.cost.Stage records")

    # ---------------------------------------------------------------- totals
    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def images_in(self, names: Sequence[str]) -> int:
        return sum(s.images for s in self.stages if s.name in names)

    @property
    def images(self) -> int:
        """Every image the audit may generate (upper bound)."""
        return sum(s.images for s in self.stages)

    @property
    def analysis_images(self) -> int:
        """The analysis's images at most, before any budget."""
        return self.images_in(ANALYSIS_STAGES)

    @property
    def screening_images(self) -> int:
        """What the analysis screens first: off-object screen, sufficiency and necessity screens (never capped)."""
        return self.images_in(SCREENING_STAGES)

    @property
    def analysis_cap(self) -> int:
        """The analysis's images at most, with the budget (the budget never cuts the screening)."""
        if self.max_images is None:
            return self.analysis_images
        return min(self.analysis_images, max(self.max_images, self.screening_images))

    @property
    def seconds(self) -> float | None:
        """Device-seconds at most (None when a stage has no measured throughput), with the budget applied."""
        if any(s.seconds is None for s in self.stages):
            return None
        total = sum(s.seconds for s in self.stages)
        if self.max_images is not None and self.seconds_per_image is not None:
            total -= (self.analysis_images - self.analysis_cap) * self.seconds_per_image
        return total

    @property
    def fixed_seconds(self) -> float | None:
        """Device-seconds of :data:`FIXED_STAGES` at most: the tokens and the screens, spent whatever screening finds."""
        fixed = [s.seconds for s in self.stages if s.name in FIXED_STAGES]
        return None if any(s is None for s in fixed) else sum(fixed)

    @property
    def device_hours(self) -> float | None:
        return None if self.seconds is None else self.seconds / 3600

    # ---------------------------------------------------------------- display
    def summary(self) -> str:
        """The one line every `probe audit` prints before its models load."""
        token, evaluation = self.stage("token"), self.stage("evaluation")
        parts = [f"plan: {_classes(self.classes)}, {self.family} generator on {self._where()} ({self.steps} steps)"]
        if token is not None:
            parts.append(f"tokens <= {token.optimisation_steps:,} steps ({token.images:,} images with gradient)"
                         + (f" + {evaluation.images:,} evaluation images" if evaluation is not None else ""))
        if self.analysis_images:
            more = self.analysis_cap - self.screening_images
            parts.append(f"analysis <= {self.screening_images:,} screening + <= {max(more, 0):,} more images"
                         + (f" (budget {self.max_images:,})" if self.max_images is not None else ""))
        parts.append(self._time_words())
        return "; ".join(parts) + " (upper bounds; `probe audit --dry-run` shows each stage)"

    def _where(self) -> str:
        return self.device + (f", {self.precision} sampling" if self.precision else "")

    def _time_words(self) -> str:
        if self.seconds is not None:
            fixed = self.fixed_seconds
            if fixed is not None and self.seconds > 2 * fixed:  # the bound is mostly tests screening may never pick
                return (f"<= {_duration(self.seconds)} on {self.device}, of which the tokens and screens <= "
                        f"{_duration(fixed)} and the rest as far as screening finds candidates")
            return f"<= {_duration(self.seconds)} on {self.device}"
        if self.reference_seconds is not None:
            return (f"time unknown ({self.timing}; `--dry-run --measure` times it here); on an "
                    f"{REFERENCE_DEVICE.upper()} <= {_duration(self.reference_seconds)}")
        return f"time unknown ({self.timing}; `--dry-run --measure` times it here)"

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(stage, images, per class, time) for the table."""
        out = []
        for s in self.stages:
            per = "shared" if s.shared else (f"{s.images / self.classes:,.0f}" if self.classes else "-")
            bound = "" if s.exact else "<= "
            out.append((s.what + (f" [{s.note}]" if s.note else ""), f"{bound}{s.images:,}", per,
                        "unmeasured" if s.seconds is None else _duration(s.seconds)))
        return out

    def __repr__(self) -> str:
        rows = [("stage", "images", "per class", "time")] + self.rows()
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [f"AuditPlan: {_classes(self.classes)}, {self.family} on {self._where()}, {self.steps} sampling steps, "
                 f"guidance {self.guidance:g}; times {self.timing}"]
        for n, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(self._totals())
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def _totals(self) -> str:
        text = (f"total <= {self.images:,} images ({self.analysis_images:,} of them the analysis's, "
                f"{self.screening_images:,} screening)")
        if self.max_images is not None:
            text += f"; the budget caps the analysis at {self.analysis_cap:,} images"
        if self.confirm_test_images:
            text += f"; one confirmed cue test costs <= {self.confirm_test_images:,} images"
        return text + "; " + self._time_words()

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{escape(h)}</th>" for h in ("stage", "images", "per class", "time"))
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in self.rows())
        notes = "".join(f"<li>{escape(n)}</li>" for n in self.notes)
        return (f"<p><b>Audit plan</b>: {_classes(self.classes)}, {escape(self.family)} on {escape(self._where())}, "
                f"{self.steps} sampling steps; times {escape(self.timing)}</p><table><tr>{head}</tr>{body}</table>"
                f"<p>{escape(self._totals())}</p>" + (f"<ul>{notes}</ul>" if notes else ""))

    def to_dict(self) -> dict:
        return {"classes": self.classes, "family": self.family, "device": self.device, "precision": self.precision,
                "steps": self.steps,
                "guidance": self.guidance, "timing": self.timing, "images": self.images,
                "analysis_images": self.analysis_images, "screening_images": self.screening_images,
                "max_images": self.max_images, "seconds": self.seconds, "reference_seconds": self.reference_seconds,
                "stages": [{"name": s.name, "images": s.images, "exact": s.exact, "shared": s.shared,
                            "seconds": s.seconds} for s in self.stages], "notes": list(self.notes)}


def _classes(n: int) -> str:
    return f"{n:,} class" + ("" if n == 1 else "es")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"


# ---------------------------------------------------------------------------------------------- counting
def _rounds(pairs_per_round: int, max_pairs: int, confirm_round: int) -> int:
    """Confirmation rounds of one test at most (plan.confirmed_enough): rounds go on until ``max_pairs`` valid pairs,
    attempting at the test's loss rate where its class loses pairs anyway, up to ``3 * max_pairs``, and one more
    round replaces pairs lost to failed checks."""
    attempts = 3 * max_pairs + confirm_round
    return max(1, math.ceil(attempts / max(1, pairs_per_round)))


def _test_images(cfg: "AnalysisConfig", carriers: int, prompts: int) -> dict[str, int]:
    """The most one confirmed test of each kind can generate (both arms of each pair counted)."""
    worst = 0
    for usable in range(1, max(1, carriers) + 1):  # a class that is itself a carrier loses one
        per_round = usable * math.ceil(cfg.confirm_round / usable)
        worst = max(worst, 2 * per_round * _rounds(per_round, cfg.max_pairs, cfg.confirm_round))
    per_round = prompts * math.ceil(cfg.confirm_round / prompts)
    # one rotated counter a pair; twice: a confirmation whose token images keep losing the class starts again with
    # the class's name (plan.confirm_with_name)
    necessity = 2 * 2 * per_round * _rounds(per_round, cfg.max_pairs, cfg.confirm_round)
    shift = 2 * cfg.confirm_round * _rounds(cfg.confirm_round, cfg.max_pairs, cfg.confirm_round)
    return {"sufficiency": worst, "necessity": necessity, "token-shift": shift}


def _necessity_arms(cues: Sequence["Cue"], stated: bool) -> tuple[int, int]:
    """(distinct images per (prompt, seed), necessity tests): each cue and counter context once; with stated
    contexts the images are shared within an attribute (the other attributes drawn per attribute)."""
    keys, tests = set(), 0
    for cue in cues:
        if not cue.counters:
            continue
        tests += 1
        group = (cue.attribute or "") if stated else ""
        keys.add((group, cue.template))
        keys.update((group, c) for c in cue.counters)
    return len(keys), tests


def _carrier_count(cfg: "AnalysisConfig", labels: int) -> int:
    """How many carriers plan.choose_carriers picks (the spread), or each class's at most (confusers)."""
    if cfg.carriers:
        return len(cfg.carriers)
    if labels <= 0:
        return 2  # "object" and "thing"
    k = min(cfg.n_carriers, labels)
    return len({int(round(j * (labels - 1) / max(k - 1, 1))) for j in range(k)}) if k > 1 else 1


def plan_audit(token: "TokenConfig", analysis: "AnalysisConfig | None", *, classes: int, labels: int,
               cues: Sequence["Cue"], family: str, device: str, steps: int, guidance: float,
               token_steps: int | None = None, token_guidance: float | None = None, stated_contexts: bool = False,
               checked: bool = True, discovery: bool | None = None, concept_model: bool = True,
               max_images: int | None = None, table: tuple[Throughput, ...] = THROUGHPUT,
               precision: str | None = None, measured: Measured | None = None, per_class_units: bool = False) -> AuditPlan:
    """The plan of an audit of ``classes`` classes (of ``labels``) with these settings (see the module docstring).

    ``steps``/``guidance``: the analysis's and the evaluation's sampling; ``token_steps``/``token_guidance``: the
    optimisation's (default: the same). ``stated_contexts``: necessity and sufficiency pairs state the other
    attributes (the check verifies them). ``checked``: something reads the images (token shift can run); ``discovery``: the check
    reads phrases beyond the listed cues, so discovery can propose more (default: ``checked``); ``concept_model``:
    the check is a concept model, which also reads what the attributions mark outside the object (one proposal
    more per class; the oracles read whole scenes only). ``precision``: what the no-gradient images are sampled in
    (:func:`sampling_precision`), which picks the throughput row where a device kind has one per precision.
    ``measured``: this machine's cost at these very settings (``probe audit --dry-run --measure``), used instead of
    the table. ``per_class_units``: each class is analysed on its own (``--backend ray``, ``--shard``), so a pass
    shared by all classes in one process (the spread sufficiency screen) is generated once per class.
    """
    discovery = checked if discovery is None else discovery
    # 1-2. the token and its evaluation
    token_steps = steps if token_steps is None else token_steps
    token_guidance = guidance if token_guidance is None else token_guidance
    counts: list[tuple[str, int, bool, bool]] = [  # (stage, images, exact, shared)
        ("token", classes * token.max_steps * token.batch_size, False, False),
        ("evaluation", classes * 2 * token.eval_images, True, False),
    ]
    notes: list[str] = []
    test_images = 0
    if analysis is not None:
        cfg = analysis
        cues = list(cues)
        source = cfg.carrier_source_for(labels) if hasattr(cfg, "carrier_source_for") else "spread"
        carriers = cfg.n_carriers if source == "confusers" else _carrier_count(cfg, labels)
        prompts = min(len(token.templates), max(1, cfg.necessity_templates))
        arms, necessity_tests = _necessity_arms(cues, stated_contexts)
        per_test = _test_images(cfg, carriers, prompts)
        test_images = max(per_test.values())
        # 3. the token gallery with its cross-attention, 4-6. screening
        if cfg.off_object:
            counts.append(("off_object_screen", classes * token.eval_images, False, False))
        if cfg.sufficiency:
            bases = max(1, len({c.attribute for c in cues if c.attribute})) if stated_contexts else 1
            one_pass = (bases + len(cues)) * carriers * cfg.screen_seeds
            shared = source != "confusers" and not per_class_units
            counts.append(("screen_sufficiency", one_pass if shared and classes else classes * one_pass, bases == 1,
                           shared))
            if per_class_units and source != "confusers":
                notes.append("each class is analysed on its own (Ray or shards): the sufficiency screen every class "
                             "shares in one process is generated once per class")
        if cfg.necessity:
            # an upper bound: a cue whose every counter the counter rule drops is skipped (the README demo: 44 of 52)
            counts.append(("screen_necessity", classes * arms * prompts * cfg.necessity_screen_seeds, False, False))
            # adaptive rounds, and the top-up of screens short of valid pairs on a generator that fails anyway (up to
            # 2x the screen's seeds more; none on a faithful generator such as the shapes world's), then for a screen
            # still inconclusive the class's name instead of its token: screened again and topped up (1x + 2x)
            extend = classes * arms * prompts * (sum(cfg.screen_extend) + NAME_FALLBACK_SEEDS * cfg.necessity_screen_seeds)
        else:
            extend = 0
        if cfg.sufficiency and cfg.screen_extend:
            # adaptive rounds of the ambiguous sufficiency screens: per class, its cues' and their cue-free images on
            # every carrier, at each round's share of the screen seeds (upper bound: every screen every round)
            bases = max(1, len({c.attribute for c in cues if c.attribute})) if stated_contexts else 1
            seeds = sum(cfg.sufficiency_extend_seeds(more) for more in cfg.screen_extend)
            extend += classes * (bases + len(cues)) * carriers * seeds
        if extend:
            counts.append(("screen_extend", extend, False, False))
        # 7-8. confirmation (every test a candidate)
        if cfg.confirm:
            per_class = ((len(cues) * per_test["sufficiency"] if cfg.sufficiency else 0)
                         + (necessity_tests * per_test["necessity"] if cfg.necessity else 0)
                         + (per_test["token-shift"] if cfg.token_shift and checked else 0))
            counts.append(("confirm", classes * per_class, False, False))
            if cfg.off_object:
                counts.append(("off_object_confirm", classes * cfg.thresholds.min_pairs, False, False))
        # 9. discovery: at most discover + 2 cues per class (one more for what the attributions mark outside the
        #    object, one for a nearest word), two counters each
        discover = int(getattr(cfg, "discover", 0) or 0)
        if discover and discovery:
            k = discover + (2 if cfg.off_object and concept_model else 1)
            # sufficiency: the cue images on the screen seeds (their cue-free images are the listed cues'), and on
            # the adaptive rounds' seeds the cue images and one cue-free set
            extra_seeds = sum(cfg.sufficiency_extend_seeds(m) for m in cfg.screen_extend)
            each = ((k * carriers * cfg.screen_seeds + (k + 1) * carriers * extra_seeds if cfg.sufficiency else 0)
                    + (k * 3 * prompts * (cfg.necessity_screen_seeds + sum(cfg.screen_extend)) if cfg.necessity else 0)
                    + (k * (per_test["sufficiency"] + per_test["necessity"]) if cfg.confirm else 0))
            counts.append(("discovered", classes * each, False, False))
            if getattr(cfg, "discover_images", 0):
                counts.append(("discovery", classes * int(cfg.discover_images), True, False))
            notes.append(f"discovered cues: at most {k} per class, each with two counters; discovery reads "
                         f"{getattr(cfg, 'discover_images', 0)} plain-prompt images per class first")
        if source == "confusers":
            notes.append("sufficiency screens on each class's confusers: carriers shared by classes are generated once")
        notes.append(f"screening is never capped; confirmation's bound assumes every screened test is a candidate "
                     f"(one confirmed cue test costs at most {test_images:,} images)")
    # 3. times from a measurement made just now at these settings, else from the throughput table
    if measured is not None:
        image_s, step_s, timing = measured.image_s, measured.step_s * token.batch_size / measured.step_images, \
            measured.describe()
    else:
        row = throughput_for(family, device, table, precision, cpu_flags() if device == "cpu" else frozenset())
        unmeasured = f"no measured row for {family} on {device}" + (f" in {precision}" if precision else "")
        image_s, timing = (None, unmeasured) if row is None else row.seconds_per_image(steps, guidance)
        step_s, step_how = (None, unmeasured) if row is None else row.seconds_per_step(token_steps, token_guidance,
                                                                                          token.batch_size)
        if row is not None:
            timing = timing if timing == step_how else f"images {timing}, optimisation steps {step_how}"
            timing += f" ({row.source})"
    stages = tuple(_stage(name, images, exact, shared, token, classes, image_s, step_s)
                   for name, images, exact, shared in counts)
    reference = None
    if any(s.seconds is None for s in stages):
        ref = throughput_for(family, REFERENCE_DEVICE, table)
        if ref is not None and device != REFERENCE_DEVICE:
            r_img, _ = ref.seconds_per_image(steps, guidance)
            r_step, _ = ref.seconds_per_step(token_steps, token_guidance, token.batch_size)
            ref_stages = [_stage(n, i, e, sh, token, classes, r_img, r_step) for n, i, e, sh in counts]
            if all(s.seconds is not None for s in ref_stages):
                reference = sum(s.seconds for s in ref_stages)
    return AuditPlan(classes=classes, family=family, device=device, precision=precision, steps=steps,
                     guidance=guidance, stages=stages,
                     timing=timing, reference_seconds=reference, seconds_per_image=image_s, max_images=max_images,
                     confirm_test_images=test_images, notes=tuple(notes))


def _stage(name, images, exact, shared, token, classes, image_s, step_s) -> Stage:
    if name == "token":
        steps = classes * token.max_steps
        return Stage(name, images, exact, shared, gradient=True, optimisation_steps=steps,
                     seconds=None if step_s is None else steps * step_s)
    return Stage(name, images, exact, shared, seconds=None if image_s is None else images * image_s)


# ---------------------------------------------------------------------------------------------- from a config
def generator_family(spec: str | None) -> str:
    """"world", "sd1", "sd2", "sdxl" or "custom" (a folder of another size), known without loading the generator."""
    folder, alias = _generator_source(spec)
    if folder is not None and _is_domain_folder(folder):
        return "world"
    if alias is not None:
        base = alias.base.lower()
        if "XL" in alias.pipeline:
            return "sdxl"
        return "sd2" if ("stable-diffusion-2" in base or "sd-turbo" in base) else "sd1"
    if folder is not None:
        index = _json(folder / "model_index.json")
        if "XL" in str(index.get("_class_name", "")):
            return "sdxl"
        channels = _json(folder / "unet" / "config.json").get("block_out_channels") or []
        if not channels or channels[0] != 320:
            return "custom"
        width = _json(folder / "text_encoder" / "config.json").get("hidden_size")
        return "sd2" if width == 1024 else "sd1"
    name = str(spec).lower()
    return "sdxl" if "xl" in name else ("sd2" if re.search(r"(^|[^\d])2[-.]|sd-turbo", name) else "sd1")


def generator_sampling(spec: str | None) -> tuple[int, float]:
    """(default steps, guidance) of the generator ``spec`` names, as load_generator will sample (sampling_for)."""
    from probe.generators.load import sampling_for

    folder, alias = _generator_source(spec)
    _, settings = sampling_for(alias, str(spec or ""), folder)
    return int(settings["default_steps"]), float(settings["guidance_scale"])


def sampling_precision(spec: str | None, kind: str, dtype: str | None = None) -> str | None:
    """What ``spec``'s generator samples its no-gradient images in on device kind ``kind``, as it will when loaded
    (probe.generators.generator.cpu_sampling_precision): "float32" or "bfloat16 autocast" on a CPU with a float32
    model, the ``--dtype`` asked for otherwise; None on other devices (their rows have one precision each). On a
    CPU, asks torch whether it computes bfloat16 natively only where the pipeline opts in."""
    if kind != "cpu":
        return None
    if dtype not in (None, "fp32", "float32"):
        return str(dtype)
    from probe.generators.generator import cpu_sampling_precision
    from probe.generators.load import sampling_for

    folder, alias = _generator_source(spec)
    _, settings = sampling_for(alias, str(spec or ""), folder)
    if not settings.get("cpu_sampling_autocast"):
        return "float32"
    from probe.devices import native_bf16

    return cpu_sampling_precision(settings, native_bf16())


def _generator_source(spec):
    """(the pipeline folder, the alias spec) ``spec`` names; either may be None (a hub id)."""
    from probe.domains import domains
    from probe.generators.registry import DEFAULT_GENERATOR, alias_spec

    spec = str(spec or DEFAULT_GENERATOR)
    known = domains()
    if ":" in spec and spec.partition(":")[0] in known:  # a domain's variant ("world:infidelity=0.15")
        spec = spec.partition(":")[0]
    if spec in known:
        return Path(known[spec].generator_path()), None
    alias = alias_spec(spec)
    if alias is not None:
        base = Path(alias.base)
        return (base if base.is_dir() else None), alias
    path = Path(spec).expanduser()
    return (path if path.is_dir() else None), None


def _is_domain_folder(folder: Path) -> bool:
    from probe.domains import domains

    for domain in domains().values():
        try:
            if Path(domain.generator_path()).resolve() == folder.resolve():
                return True
        except Exception:  # a domain whose assets are missing is simply not this folder
            continue
    return False


def _domain_of(spec):
    from probe.domains import domains

    folder, _ = _generator_source(spec)
    for domain in domains().values():
        try:
            if folder is not None and Path(domain.generator_path()).resolve() == folder.resolve():
                return domain
        except Exception:
            continue
    return None


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def device_kind(device: str = "auto") -> str:
    """The throughput table's device kind: "cpu", "h200", another GPU's name (lower case), or "mps"."""
    text = str(device or "auto").lower()
    if text == "cpu":
        return "cpu"
    from probe.devices import resolve_device

    try:
        resolved = resolve_device(device)
    except Exception:  # a --dry-run for a GPU run on a machine without one: the kind of device it names
        return text.split(":")[0]
    if resolved.type != "cuda":
        return resolved.type
    import torch

    name = torch.cuda.get_device_name(resolved).lower()
    return "h200" if "h200" in name else name


def class_count(config: "AuditConfig") -> tuple[list[str] | None, list[int] | None]:
    """(labels, selected class indices) read cheaply, without loading a model: from ``--labels``, or the labels file
    beside the model (``X.labels.txt``); (None, None) when only the classifier itself can tell."""
    from probe.classifiers.labels import load_labels
    from probe.classifiers.select import select_classes

    labels = None
    if config.labels:
        labels = load_labels(config.labels)
    else:
        path = Path(str(config.model)).expanduser()
        if path.exists():
            from probe.classifiers.load import sidecar

            found = sidecar(path, "labels")
            labels = load_labels(found) if found is not None else None
    if labels is None:
        return None, None
    return labels, select_classes(config.classes, labels)


def plan_for_config(config: "AuditConfig", classes: int, labels: int, *, device: str | None = None,
                    budget: Budget | None = None, measured: Measured | None = None) -> AuditPlan:
    """:func:`plan_audit` for an ``AuditConfig``: the generator's family, sampling and cues resolved from its
    name without loading it; ``device`` (a device kind) defaults to what ``config.device`` resolves to here;
    ``measured``: this machine's cost at the config's settings, instead of the throughput table."""
    from probe.analysis.cues import default_cues, load_cues

    family = generator_family(config.generator)
    default_steps, default_guidance = generator_sampling(config.generator)
    token = config.token
    token_steps = token.steps or default_steps
    token_guidance = token.guidance_scale if token.guidance_scale is not None else default_guidance
    analysis = config.analysis if config.analyze else None
    steps, guidance = token_steps, token_guidance
    domain = _domain_of(config.generator)
    cues, stated, checked, discovery, oracles = [], False, True, True, False
    if analysis is not None:
        steps = analysis.steps or token_steps
        guidance = analysis.guidance_scale if analysis.guidance_scale is not None else token_guidance
        if analysis.cues in ("auto", "world") and domain is not None and domain.cues is not None:
            cues = domain.cues()
        elif analysis.cues in ("auto", "default", "world"):
            cues = default_cues()
        else:
            cues = load_cues(analysis.cues)
        oracles = analysis.concepts == "auto" and domain is not None and domain.scorer is not None
        checked = analysis.concepts != "none"
        stated = bool(analysis.stated_contexts and checked and any(c.attribute is not None for c in cues))
        # a domain's oracles read only the domain's cues: with all of them listed, discovery has nothing to propose
        listed = {c.template for c in cues}
        discovery = checked and not (oracles and domain.cues is not None
                                     and {c.template for c in domain.cues()} <= listed)
    kind = device or device_kind(config.device)
    plan = plan_audit(token, analysis, classes=classes, labels=labels, cues=cues, family=family, device=kind,
                      steps=steps, guidance=guidance, token_steps=token_steps, token_guidance=token_guidance,
                      stated_contexts=stated, checked=checked, discovery=discovery, concept_model=checked and not oracles,
                      precision=sampling_precision(config.generator, kind, config.dtype), measured=measured,
                      per_class_units=config.scale.backend != "local" or config.scale.slice is not None)
    if budget is not None and analysis is not None:
        cap = budget.max_images(plan.seconds_per_image, f"{family} on {kind}")
        plan = _with_budget(plan, cap)
    return plan


def _with_budget(plan: AuditPlan, max_images: int) -> AuditPlan:
    from dataclasses import replace

    notes = list(plan.notes)
    if max_images < plan.screening_images:
        notes.append(f"the budget ({max_images:,} images) is below the screening's {plan.screening_images:,}: "
                     "screening runs in full and no test is confirmed")
    return replace(plan, max_images=max_images, notes=tuple(notes))
