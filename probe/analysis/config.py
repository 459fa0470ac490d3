"""AnalysisConfig: every setting of the analysis, typed, from the CLI (or Python) to the engine.

It travels inside ``AuditConfig`` and is saved in config.json; nothing reads analysis settings back out of
a dict. The decision's bars live in :class:`~probe.analysis.policy.Thresholds`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from probe.analysis.errors import AnalysisError
from probe.errors import settings_from_dict
from probe.analysis.policy import Thresholds
from probe.analysis.stats import FDR_FAMILIES

METHODS = ("integrated_gradients", "grad_cam", "occlusion")
CARRIER_SOURCES = ("auto", "spread", "confusers")
#: Above this many classes, "auto" takes each class's confusers as carriers and one FDR family per class.
MANY_CLASSES = 20
#: The settings that decide which images a test's pairs are made of: two analyses can be paired pair by pair
#: (``confirm_like``, ``probe compare``) only when these agree.
PAIRING_FIELDS = ("seed", "screen_seeds", "necessity_screen_seeds", "screen_extend", "confirm_round", "n_carriers", "carriers",
                  "carrier_source",
                  "carrier_template", "necessity_templates", "steps", "guidance_scale", "stated_contexts")


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of ``analyze_run``; every field has a CPU-friendly default.

    The cue tests run in two stages. Screening measures every (class, cue) on a few pairs; the candidates
    (screened effect at least the effect threshold in the claimed direction) are then measured again on
    fresh pairs, in rounds of ``confirm_round``, until they have ``thresholds.min_pairs`` valid pairs and
    an interval no wider than ``2 * target_halfwidth`` that lies clear of the effect bar, or ``max_pairs``. Only the
    fresh pairs decide.
    """

    cues: str = "auto"  # "auto" | "default" | "world" | path to a .json/.txt cue list
    attributions: bool = True
    methods: tuple[str, ...] = METHODS
    attribution_layer: str | None = None
    ig_steps: int = 16
    sufficiency: bool = True
    carriers: tuple[str, ...] | None = None  # neutral object phrases; default: a few class names (carrier_source)
    n_carriers: int = 4
    # where the sufficiency carriers come from when ``carriers`` is unset: "spread", n_carriers class names spread
    # over the label list, shared by every class; "confusers", each class's n_carriers nearest confusers by the
    # classifier's own confusion on the class's baseline images (probe/analysis/confusers.py), and the counter rule
    # then looks at those confusers only; "auto", confusers for a classifier with more than MANY_CLASSES classes,
    # spread otherwise, so the 6-class world and the demo keep their behaviour (see carrier_source_for)
    carrier_source: str = "auto"
    carrier_template: str = "a photo of a {}"
    screen_seeds: int = 2  # screening seeds per carrier (sufficiency)
    # screening seeds per prompt (necessity): a necessity screen has one pair per seed and prompt, so 2 seeds
    # were 2 pairs, and a planted cue worth +0.32 on 24 fresh pairs screened at +0.03 (benchmark biased-5, star/bar)
    necessity_screen_seeds: int = 4
    # adaptive screening (probe/analysis/screening.py): sufficiency and necessity screens that are neither clearly
    # nothing nor clearly a candidate (0 <= mean < min_effect, and at least weak_effect or a 97.5% t upper bound that
    # reaches min_effect) get more seeds, round by round: screen_extend[r] per necessity prompt, the same share of
    # screen_seeds per sufficiency carrier (sufficiency_extend_seeds); clear screens stop after their first pairs
    # (a planted cue worth +0.27 screened at +0.13 on 4 pairs and was never confirmed)
    screen_extend: tuple[int, ...] = (4, 8)
    necessity: bool = True
    necessity_templates: int = 1  # token prompt templates used for necessity (of the run's, in order)
    # necessity and sufficiency pairs state random values of the other attributes, the same in both images, where
    # the check verifies them (probe/analysis/context.py): the effect is averaged over contexts, not the token's
    # habitual one
    stated_contexts: bool = True
    token_shift: bool = True
    # cue discovery (probe/analysis/discovery.py): per class, at most this many cues nobody listed, proposed from
    # the concept shift baseline -> token over ``vocabulary`` (None: the bundled ~1,000 phrases; a JSON file of
    # the same shape adds groups) and tested like the listed cues; 0: off. Needs a check that reads phrases.
    discover: int = 3
    vocabulary: str | None = None
    discover_images: int = 24  # plain-prompt images per class on fresh seeds for discovery's association with P(class)
    # the intervention check (probe/analysis/checks.py): "auto" = a domain's oracles, else the default concept
    # model of the generator's family (probe.concepts.default_concepts); a hub id or folder of a CLIP/SigLIP model
    # (also inside a domain); "none" = no check (every cue finding is then unverified)
    concepts: str = "auto"
    confirm: bool = True
    confirm_round: int = 8  # fresh pairs added per confirmation round
    max_pairs: int = 32  # confirmation budget per finding, in valid pairs: one more round replaces pairs lost to failed checks
    target_halfwidth: float = 0.12
    off_object: bool = True
    attention_res: int = 32
    iou_images: int = 8  # a domain with true masks: rendered scenes per class for the attention-mask IoU check
    nearest_k: int = 10
    classes: tuple[int, ...] | None = None
    seed: int = 7000  # first seed of analysis images (distinct from training and evaluation seeds)
    batch_size: int = 16
    steps: int | None = None  # sampling settings; None: the run's token settings, else the generator's
    guidance_scale: float | None = None
    n_evidence: int = 4
    thresholds: Thresholds = field(default_factory=Thresholds)
    # the false-discovery-rate family (probe.analysis.stats.FDR_FAMILIES): "audit", one family over the audit's
    # confirmed tests (thresholds.fdr_method); "per-class", one family per class, classes selected by
    # Benjamini-Hochberg over their Simes p-values, then thresholds.fdr_method within each selected class at
    # q x selected / all (Benjamini-Bogomolov); "auto", per-class above MANY_CLASSES classes (see fdr_family)
    fdr: str = "auto"
    # another run directory analysed with the same seeds: the tests it confirmed are confirmed here too, on as
    # many pairs, so that `probe compare OTHER THIS` has shared pairs to test the change on
    confirm_like: str | None = None
    # the analysis's image budget (``probe audit --budget``; probe.auditing.cost): screening always runs, then
    # confirmation spends what is left on the candidates whose screen was most decisive (largest |effect|/se first)
    # and stops when the next round would exceed it; candidates it never reached stay screening-only. Counted in
    # images at the run's sampling steps (an image drawn at twice the steps counts 2: Lab.budget_spent). None: no cap
    max_images: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise AnalysisError(f"attribution methods {list(self.methods)} must be a non-empty subset of {list(METHODS)}.")
        if self.carriers is not None:
            object.__setattr__(self, "carriers", tuple(self.carriers))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        extend = self.screen_extend
        if isinstance(extend, str) or not isinstance(extend, (tuple, list)) or not all(
                isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 64 for k in extend):
            raise AnalysisError(f"screen_extend={extend!r} must be a sequence of seeds to add per round (1..64 each), "
                                "e.g. (4, 8), or () for no adaptive screening.")
        object.__setattr__(self, "screen_extend", tuple(extend))
        flags = {"max_pairs": "--max-pairs", "discover": "--discover"}  # the settings `probe audit` has a flag for

        def named(name: str) -> str:
            return f"{flags[name]} {getattr(self, name)}" if name in flags else \
                f"analysis setting {name}={getattr(self, name)}"

        for name in ("n_carriers", "screen_seeds", "necessity_screen_seeds", "batch_size", "attention_res", "ig_steps", "confirm_round", "max_pairs"):
            if getattr(self, name) < 1:
                raise AnalysisError(f"{named(name)} must be at least 1.")
        for name in ("nearest_k", "n_evidence", "necessity_templates", "iou_images", "discover", "discover_images"):
            if getattr(self, name) < 0:
                raise AnalysisError(f"{named(name)} must not be negative.")
        if "{}" not in self.carrier_template:
            raise AnalysisError(f"carrier_template={self.carrier_template!r} must contain '{{}}' where the object goes.")
        if not isinstance(self.thresholds, Thresholds):
            raise AnalysisError("AnalysisConfig.thresholds must be a probe.analysis.Thresholds.")
        if self.max_pairs < self.thresholds.min_pairs:
            raise AnalysisError(f"--max-pairs {self.max_pairs} is below the {self.thresholds.min_pairs} pairs that may "
                                "decide (Thresholds.min_pairs): no finding could ever pass; raise --max-pairs or lower "
                                "min_pairs")
        if not isinstance(self.concepts, str) or not self.concepts.strip():
            raise AnalysisError(f"--concepts {self.concepts!r} must name a CLIP or SigLIP model (hub id or folder), "
                                "'auto' or 'none'")
        if self.max_images is not None and (isinstance(self.max_images, bool) or not isinstance(self.max_images, int)
                                            or self.max_images < 1):
            raise AnalysisError(f"max_images={self.max_images!r} must be a whole number of images (at least 1), or None "
                                "for no budget; e.g. --budget 5000img")
        if self.carrier_source not in CARRIER_SOURCES:
            raise AnalysisError(f"carrier_source={self.carrier_source!r} is not one of {CARRIER_SOURCES}; 'auto' takes "
                                f"each class's confusers above {MANY_CLASSES} classes, a spread of class names otherwise.")
        if self.fdr not in ("auto",) + FDR_FAMILIES:
            raise AnalysisError(f"fdr={self.fdr!r} is not one of {('auto',) + FDR_FAMILIES}; 'auto' uses one family per "
                                f"class above {MANY_CLASSES} classes, one over the audit otherwise.")
        if not 0 < self.target_halfwidth <= 1:
            raise AnalysisError(f"target_halfwidth={self.target_halfwidth} must lie in (0, 1].")

    def sufficiency_extend_seeds(self, more: int) -> int:
        """A sufficiency screen's seeds in the adaptive round that adds ``more`` seeds to each necessity screen: the
        same share of its own screen (``more / necessity_screen_seeds`` of ``screen_seeds``), at least one."""
        return max(1, round(more * self.screen_seeds / max(self.necessity_screen_seeds, 1)))

    def carrier_source_for(self, n_classes: int) -> str:
        """The carriers a classifier with ``n_classes`` classes gets: "given" (``carriers`` set), else
        ``carrier_source`` with "auto" resolved: "confusers" above :data:`MANY_CLASSES` classes, where a class name
        spread over the list is one the class is never confused with (P(tabby | a tench on a sofa) stays near 0
        whatever the cue), "spread" up to it (the 6-class world and ``probe demo`` keep their exact behaviour)."""
        if self.carriers:
            return "given"
        if self.carrier_source != "auto":
            return self.carrier_source
        return "confusers" if n_classes > MANY_CLASSES else "spread"

    def fdr_family(self, n_classes: int) -> str:
        """The false-discovery-rate family for a classifier with ``n_classes`` classes: ``fdr`` with "auto"
        resolved, "per-class" above :data:`MANY_CLASSES` classes (Benjamini–Yekutieli over tens of thousands of
        tests leaves little power), "audit" up to it (unchanged for the world and the demo)."""
        if self.fdr != "auto":
            return self.fdr
        return "per-class" if n_classes > MANY_CLASSES else "audit"

    def replace(self, **changes) -> "AnalysisConfig":
        from dataclasses import replace

        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["thresholds"] = asdict(self.thresholds)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "AnalysisConfig":
        if isinstance(data, dict) and "clip_model" in data:  # runs before --concepts named the model clip_model
            data = {**{k: v for k, v in data.items() if k != "clip_model"}, "concepts": data["clip_model"] or "auto"}
        data = settings_from_dict(cls, data, "analysis settings", AnalysisError)
        if isinstance(data.get("thresholds"), dict):
            data["thresholds"] = Thresholds(**data["thresholds"])
        return cls(**data)
