"""Turn a run directory into ranked, quantified findings.

``analyze_run(run_dir, classifier, generator, config)`` runs, for every finished
class of the run:

1. attributions (Integrated Gradients, Grad-CAM, Occlusion) on every gallery
   image, written as overlays to ``classes/<dir>/attributions/<method>/<stem>.png``;
2. the vocabulary words nearest to the learned token;
3. token shift: concept frequencies of token vs. baseline images (shapes-world
   oracles, or CLIP when given), paired by prompt and seed;
4. off-object attribution: the share of attribution mass outside the object,
   localised from the generator's cross-attention for the class word and token;

then cue sufficiency once for all classes, and cue necessity per class for its
top cues. Each test yields :class:`Finding` rows judged by
:class:`~probe.analysis.stats.Thresholds`; they are written to
``findings.json`` and ``findings.parquet``, and what ran (methods, skips and
why, timings, the cue list) to ``analysis.json``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from probe.analysis._util import load_png
from probe.analysis.attributions import METHODS, AttributionConfig, attribute, choose_layer, save_overlays
from probe.analysis.cues import Carrier, Cue, cue_necessity, cue_sufficiency, default_cues, load_cues, world_cues
from probe.analysis.errors import AnalysisError
from probe.analysis.stats import Effect, Thresholds, paired_bootstrap
from probe.analysis.token_shift import ClipScorer, nearest_words, token_shift
from probe.rundir import RunDir

__all__ = ["Finding", "Findings", "AnalysisConfig", "analysis_config", "analyze_run", "read_findings", "write_findings", "rank_findings", "FINDING_KINDS"]

FINDING_KINDS = ("sufficiency", "necessity", "token-shift", "off-object")
OFF_OBJECT_CUE = "off-object"


@dataclass(frozen=True)
class Finding:
    """One quantified statement about a class, with its evidence."""

    class_index: int
    class_name: str
    cue: str
    kind: str
    effect: float
    ci_low: float
    ci_high: float
    n_images: int
    evidence: tuple[str, ...]
    passes: bool
    strength: str
    sentence: str
    details: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FINDING_KINDS:
            raise AnalysisError(f"finding kind {self.kind!r} is unknown; use one of {list(FINDING_KINDS)}.")
        if self.strength not in ("strong", "weak"):
            raise AnalysisError(f"finding strength {self.strength!r} must be 'strong' or 'weak'.")
        object.__setattr__(self, "evidence", tuple(self.evidence))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["evidence"] = list(self.evidence)
        for k in ("effect", "ci_low", "ci_high"):
            d[k] = None if not math.isfinite(d[k]) else round(float(d[k]), 6)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Finding":
        d = dict(d)
        for k in ("effect", "ci_low", "ci_high"):
            d[k] = float("nan") if d.get(k) is None else float(d[k])
        d["evidence"] = tuple(d.get("evidence") or ())
        d["details"] = d.get("details") or {}
        return cls(**d)

    def __repr__(self) -> str:
        mark = "PASS" if self.passes else self.strength
        return f"Finding[{mark}] {self.kind} class {self.class_index} cue {self.cue!r}: {self.sentence}"


class Findings(list):
    """The findings of a run, best first: a list of :class:`Finding` that displays itself."""

    @property
    def passing(self) -> "Findings":
        return Findings(f for f in self if f.passes)

    def for_class(self, class_index: int) -> "Findings":
        return Findings(f for f in self if f.class_index == class_index)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([f.to_dict() for f in self])

    def __repr__(self) -> str:
        head = f"Findings({len(self)} findings, {len(self.passing)} passing)"
        lines = [f"  {f!r}" for f in self[:10]]
        more = [f"  ... {len(self) - 10} more"] if len(self) > 10 else []
        return "\n".join([head, *lines, *more])

    def _repr_html_(self) -> str:
        from html import escape

        cols = ("class", "kind", "cue", "effect", "95% CI", "n", "strength", "finding")
        head = "".join(f"<th>{c}</th>" for c in cols)
        rows = []
        for f in self[:200]:
            cells = (
                f"{f.class_index} {f.class_name}", f.kind, f.cue, f"{f.effect:+.2f}", f"{f.ci_low:.2f}–{f.ci_high:.2f}",
                str(f.n_images), "PASS" if f.passes else f.strength, f.sentence,
            )
            rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
        more = f"<p>{len(self) - 200} more not shown</p>" if len(self) > 200 else ""
        return f"<p>{len(self)} findings, {len(self.passing)} passing</p><table><tr>{head}</tr>{''.join(rows)}</table>{more}"


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of ``analyze_run``; every field has a CPU-friendly default."""

    cues: str = "auto"  # "auto" | "default" | "world" | path to a .json/.txt cue list
    attributions: bool = True
    methods: tuple[str, ...] = METHODS
    attribution_layer: str | None = None
    ig_steps: int = 16
    sufficiency: bool = True
    sufficiency_seeds: int = 6
    carriers: tuple[str, ...] | None = None  # neutral object phrases; default: a few class names
    n_carriers: int = 4
    carrier_template: str = "a photo of a {}"
    necessity: bool = True
    necessity_top_k: int = 3
    necessity_seeds: int = 4
    necessity_templates: int = 1  # token prompt templates used for necessity (of the run's, in order)
    token_shift: bool = True
    clip_model: str | None = None  # local CLIP folder for concept scoring outside the shapes world
    off_object: bool = True
    attention_res: int = 32
    iou_images: int = 8  # shapes world: rendered scenes per class for the attention-mask IoU check
    nearest_k: int = 10
    top_cues_per_class: int = 3
    classes: tuple[int, ...] | None = None
    seed: int = 7000  # first seed of analysis images (distinct from training and evaluation seeds)
    batch_size: int = 16
    steps: int | None = None  # sampling settings; None: the run's token settings, else the generator's
    guidance_scale: float | None = None
    n_boot: int = 1000
    n_evidence: int = 4
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        AttributionConfig(methods=self.methods, ig_steps=self.ig_steps, batch_size=self.batch_size)  # validates
        if self.carriers is not None:
            object.__setattr__(self, "carriers", tuple(self.carriers))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        positive = ("sufficiency_seeds", "n_carriers", "necessity_seeds", "batch_size", "attention_res", "n_boot")
        for name in positive:
            if getattr(self, name) < 1:
                raise AnalysisError(f"AnalysisConfig.{name}={getattr(self, name)} must be at least 1.")
        for name in ("necessity_top_k", "nearest_k", "top_cues_per_class", "n_evidence", "necessity_templates"):
            if getattr(self, name) < 0:
                raise AnalysisError(f"AnalysisConfig.{name}={getattr(self, name)} must not be negative.")
        if "{}" not in self.carrier_template:
            raise AnalysisError(f"carrier_template={self.carrier_template!r} must contain '{{}}' where the object goes.")
        if not isinstance(self.thresholds, Thresholds):
            raise AnalysisError("AnalysisConfig.thresholds must be a probe.analysis.Thresholds.")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["thresholds"] = asdict(self.thresholds)
        return d


def analysis_config(config=None) -> AnalysisConfig:
    """An AnalysisConfig from ``config``: itself, None (defaults), an object carrying one in ``.analysis``
    (e.g. probe.runs.AuditConfig), or any object/dict whose attributes share AnalysisConfig's field names
    (``attribution_methods`` is accepted for ``methods``)."""
    if config is None:
        return AnalysisConfig()
    if isinstance(config, AnalysisConfig):
        return config
    inner = config.get("analysis") if isinstance(config, dict) else getattr(config, "analysis", None)
    if isinstance(inner, AnalysisConfig):
        return inner
    if isinstance(inner, dict) or (isinstance(config, dict) and inner is None):
        config = inner if isinstance(inner, dict) else config
        names = set(AnalysisConfig.__dataclass_fields__)
        unknown = sorted(set(config) - names - {"attribution_methods"})
        if unknown:
            raise AnalysisError(
                f"analysis settings {unknown} are unknown; use AnalysisConfig's fields, e.g. cues, attribution_layer, clip_model."
            )
    else:  # a foreign settings object (e.g. AuditConfig): only the analysis flags it may carry
        names = {"cues", "attribution_layer", "clip_model", "ig_steps", "sufficiency_seeds", "necessity_top_k"}
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    kw = {n: get(n) for n in names if get(n) is not None and n != "thresholds"}
    if get("attribution_methods") is not None:
        kw["methods"] = tuple(get("attribution_methods"))
    if isinstance(get("thresholds"), Thresholds):
        kw["thresholds"] = get("thresholds")
    elif isinstance(get("thresholds"), dict):
        kw["thresholds"] = Thresholds(**get("thresholds"))
    return AnalysisConfig(**kw)


# ---------------------------------------------------------------------------
# reading the run


@dataclass
class _Class:
    index: int
    name: str
    dir: Path
    metrics: dict

    @property
    def rel(self) -> str:
        return f"classes/{self.dir.name}"


def _finished_classes(run: RunDir, only: tuple[int, ...] | None) -> list[_Class]:
    out = []
    for d, m in run.finished_classes():
        if m["status"] != "done" or (only is not None and m["class_index"] not in only):
            continue
        out.append(_Class(m["class_index"], str(m.get("class_name") or m["class_index"]), d, m))
    return sorted(out, key=lambda c: c.index)


def _gen_kwargs(config: AnalysisConfig, run_config: dict | None) -> dict:
    tok = RunDir.token_settings(run_config)
    kw = {}
    steps = config.steps if config.steps is not None else tok.get("steps")
    guidance = config.guidance_scale if config.guidance_scale is not None else tok.get("guidance_scale")
    if steps is not None:
        kw["steps"] = int(steps)
    if guidance is not None:
        kw["guidance_scale"] = float(guidance)
    if tok.get("scheduler"):
        kw["scheduler"] = tok["scheduler"]
    if tok.get("max_batch"):
        kw["max_batch"] = int(tok["max_batch"])
    return kw


def _world_api(name: str):
    """A function of the shapes world's public API (probe.world, else the module that defines it)."""
    import importlib

    for module in ("probe.world", "probe.world.assets", "probe.world.oracles"):
        try:
            fn = getattr(importlib.import_module(module), name, None)
        except ImportError:
            fn = None
        if fn is not None:
            return fn
    raise AnalysisError(f"the shapes world has no {name}(); is probe.world installed?")


def _is_world(generator) -> bool:
    """True when the generator is the shapes world's bundled pipeline."""
    try:
        path = Path(_world_api("bundled_generator_path")()).resolve()
    except Exception:
        return False
    src = getattr(generator, "source", None)
    try:
        return src is not None and Path(str(src)).resolve() == path
    except Exception:
        return False


def _resolve_cues(config: AnalysisConfig, generator) -> tuple[list[Cue], str, bool]:
    """(cues, source description, is the shapes world)."""
    world = _is_world(generator)
    if config.cues == "world" or (config.cues == "auto" and world):
        return world_cues(), "shapes world attributes", True
    if config.cues in ("auto", "default"):
        return default_cues(), "curated default", False
    return load_cues(config.cues), f"file {config.cues}", world


def _load_scorer(config: AnalysisConfig, world: bool, cues: list[Cue], notes: list[str]):
    if world:
        try:
            return _world_api("load_oracles")(), "shapes world oracles"
        except Exception as e:
            notes.append(f"token-shift skipped: the shapes world's oracles could not be loaded ({type(e).__name__}: {e})")
            return None, None
    if config.clip_model:
        return ClipScorer(config.clip_model, cues), f"CLIP at {config.clip_model}"
    notes.append("token-shift skipped: no concept scorer (pass clip_model=/--clip-model with a local CLIP folder)")
    return None, None


def _token_string(metrics: dict) -> str | None:
    """The learned token's string: "token_string" (probe.runs) or a string "token" (older layouts)."""
    for key in ("token_string", "token"):
        v = metrics.get(key)
        if isinstance(v, str) and v:
            return v
    return None


def _subject(template: str, prompt: str) -> str | None:
    pre, _, post = template.partition("{}")
    if prompt.startswith(pre) and prompt.endswith(post) and len(prompt) >= len(pre) + len(post):
        return prompt[len(pre) : len(prompt) - len(post)]
    return None


# ---------------------------------------------------------------------------
# sentences


def _fmt_ci(e: Effect) -> str:
    return f"95% CI {e.ci_low:.2f}–{e.ci_high:.2f}"


def _phrase(template: str) -> str:
    return template.replace("{}", "").strip(" ,")


def _sentence(kind: str, name: str, cue: Cue | None, e: Effect, strength: str, extra: dict) -> str:
    if kind == "sufficiency":
        s = f"'{name}' is predicted from {cue.description}: {e.mean:+.2f} probability ({_fmt_ci(e)}), {e.n} images"
    elif kind == "necessity":
        counters = [_phrase(t) for t in extra.get("counter_templates") or cue.counters]
        shown = ", ".join(f"'{c}'" for c in counters[:2]) + (" …" if len(counters) > 2 else "")
        s = (
            f"'{name}' depends on {cue.description}: swapping '{_phrase(cue.template)}' for {shown or 'a counter-context'} "
            f"drops its probability by {e.mean:.2f} ({_fmt_ci(e)}), {e.n} image pairs"
        )
    elif kind == "token-shift":
        s = (
            f"The token for '{name}' adds {cue.description}: {extra['freq_baseline']:.0%} → {extra['freq_token']:.0%} "
            f"of images ({e.mean:+.2f}, {_fmt_ci(e)}), {e.n} image pairs"
        )
    else:
        s = (
            f"{e.mean:.0%} of the attribution for '{name}' lies outside the object ({_fmt_ci(e)}), "
            f"an area of {extra['area_outside']:.0%} of the image; {e.n} images"
        )
    return s if strength == "strong" else "Weak evidence: " + s


# ---------------------------------------------------------------------------
# the analysis


def analyze_run(
    run_dir,
    classifier,
    generator,
    config: AnalysisConfig | None = None,
    *,
    cues: list[Cue] | None = None,
    scorer=None,
    progress=None,
) -> Findings:
    """Analyse a finished (or partly finished) run directory; returns the findings, best first.

    Writes ``findings.json``, ``findings.parquet``, ``analysis.json`` and the
    attribution overlays into ``run_dir``. ``cues`` (a list of :class:`Cue`)
    overrides ``config.cues``; ``scorer`` (any object with
    ``predict(images01) -> {attribute: [value, ...]}``) overrides the concept
    scorer chosen from the generator (shapes-world oracles) or ``config.clip_model``.
    ``progress`` (optional callable taking one line of text) is told what runs next.
    """
    cfg = analysis_config(config)
    rundir = RunDir(run_dir)
    run = rundir.root
    if not run.is_dir():
        raise AnalysisError(f"run directory {str(run)!r} does not exist; pass the folder `probe audit` wrote.")
    classes = _finished_classes(rundir, cfg.classes)
    if not classes:
        raise AnalysisError(
            f"run directory {str(run)!r} has no finished class (no classes/*/metrics.json with status 'done'); "
            "run or resume `probe audit` first."
        )
    t_start = time.perf_counter()
    run_config = rundir.read_config()
    labels = rundir.read_labels() or [str(x) for x in (getattr(classifier, "labels", None) or [])]
    gen_kwargs = _gen_kwargs(cfg, run_config)
    notes: list[str] = []
    timings: dict[str, float] = {}
    if cues is not None:
        cues, cue_source, world = list(cues), "given list", _is_world(generator)
    else:
        cues, cue_source, world = _resolve_cues(cfg, generator)
    scorer_name = None
    if not cfg.token_shift:
        scorer = None
    elif scorer is not None:
        scorer_name = type(scorer).__name__
    else:
        scorer, scorer_name = _load_scorer(cfg, world, cues, notes)
    findings: list[Finding] = []
    per_class: dict[str, dict] = {}
    attr_cfg = AttributionConfig(
        methods=cfg.methods, layer=cfg.attribution_layer, ig_steps=cfg.ig_steps, batch_size=max(2, cfg.batch_size // 2)
    )
    methods_skipped: dict[str, str] = {}
    layer_choice = None
    method_seconds: dict[str, float] = {}

    say = progress if callable(progress) else (lambda _msg: None)

    # 1-4: per class, on its gallery images ---------------------------------
    for n_done, cls in enumerate(classes):
        say(f"analysis: class {cls.index} ({n_done + 1}/{len(classes)}): attributions, token shift, off-object")
        info: dict = {"class_name": cls.name, "dir": cls.rel}
        per_class[str(cls.index)] = info
        records = [r for r in cls.metrics.get("images", []) if (cls.dir / r["path"]).is_file()]
        if not records:
            notes.append(f"class {cls.index}: no gallery images found; attributions and token-shift skipped")
            continue
        images = torch.stack([load_png(cls.dir / r["path"]) for r in records])
        stems = [Path(r["path"]).stem for r in records]
        heat = None
        if cfg.attributions or cfg.off_object:
            t0 = time.perf_counter()
            if layer_choice is None and "grad_cam" in cfg.methods and getattr(classifier, "supports_hooks", True):
                try:
                    layer_choice = choose_layer(classifier, tuple(images.shape[-2:]), cfg.attribution_layer)
                except AnalysisError as e:
                    if cfg.attribution_layer is not None:
                        raise
                    methods_skipped["grad_cam"] = str(e)
            methods = cfg.methods if cfg.attributions else ("integrated_gradients",)
            if "grad_cam" in methods_skipped:
                methods = tuple(m for m in methods if m != "grad_cam")
            res = attribute(classifier, images, cls.index, AttributionConfig(**{**asdict(attr_cfg), "methods": methods}), layer_choice)
            methods_skipped.update(res.skipped)
            for m, s in res.seconds.items():
                method_seconds[m] = method_seconds.get(m, 0.0) + s
            if cfg.attributions:
                save_overlays(images, res, cls.dir / "attributions", stems)
            heat = next((res.maps[m] for m in ("integrated_gradients", "grad_cam", "occlusion") if m in res.maps), None)
            timings["attributions"] = timings.get("attributions", 0.0) + time.perf_counter() - t0
        # nearest vocabulary words to the learned token
        token = _token_string(cls.metrics)
        tok_file = cls.dir / "token.safetensors"
        if tok_file.is_file() and cfg.nearest_k > 0:
            from safetensors.torch import load_file

            state = load_file(str(tok_file))
            (token_name, vector), = list(state.items())[:1]
            token = token or token_name
            info["nearest_words"] = nearest_words(generator.tokenizer, generator.text_encoder, vector, cfg.nearest_k)
        # shapes world: check attention-based object masks against the renderer's true masks
        if world and cfg.off_object and cfg.iou_images > 0:
            t0 = time.perf_counter()
            try:
                iou = _world_iou(cfg, generator, cls.name)
            except Exception as e:  # the check is advisory; never lose the run's findings over it
                notes.append(f"class {cls.index}: attention IoU skipped ({type(e).__name__}: {e})")
                iou = None
            if iou:
                info["attention_iou"] = {"mean": float(np.mean(iou)), "n": len(iou), "values": [round(v, 4) for v in iou]}
            timings["attention_iou"] = timings.get("attention_iou", 0.0) + time.perf_counter() - t0
        # token shift, paired by prompt index and seed
        base = {(r.get("prompt_index"), r.get("seed")): i for i, r in enumerate(records) if r.get("kind") == "baseline"}
        tokd = {(r.get("prompt_index"), r.get("seed")): i for i, r in enumerate(records) if r.get("kind") == "token"}
        keys = sorted(set(base) & set(tokd), key=str)
        if scorer is not None and keys:
            t0 = time.perf_counter()
            shifts = token_shift(
                scorer, images[[base[k] for k in keys]], images[[tokd[k] for k in keys]], cues, n_boot=cfg.n_boot
            )
            ev = [f"{cls.rel}/{records[tokd[k]]['path']}" for k in keys[: cfg.n_evidence]]
            info["token_shift"] = {s.cue.name: [s.freq_baseline, s.freq_token] for s in shifts}
            for s in shifts:
                findings += _make(cfg, "token-shift", cls, s.cue, s.effect, ev, {"freq_baseline": s.freq_baseline, "freq_token": s.freq_token, "scorer": scorer_name})
            timings["token_shift"] = timings.get("token_shift", 0.0) + time.perf_counter() - t0
        # off-object attribution share, from cross-attention of the class word and token
        tok_idx = [i for i, r in enumerate(records) if r.get("kind") == "token"]
        if cfg.off_object and heat is not None and tok_idx and token:
            t0 = time.perf_counter()
            try:
                _off_object(cfg, cls, records, tok_idx, heat, token, generator, gen_kwargs, info, findings, stems)
            except AnalysisError as e:
                notes.append(f"class {cls.index}: off-object skipped ({e})")
            timings["off_object"] = timings.get("off_object", 0.0) + time.perf_counter() - t0

    # 5: cue sufficiency, one shared pass ----------------------------------------
    suff = None
    if cfg.sufficiency:
        t0 = time.perf_counter()
        carriers = _carriers(cfg, labels, classes)
        say(f"analysis: cue sufficiency, {len(cues)} cues x {len(carriers)} carriers x {cfg.sufficiency_seeds} seeds")
        seeds = list(range(cfg.seed, cfg.seed + cfg.sufficiency_seeds))
        suff = cue_sufficiency(
            generator, classifier, cues, carriers, seeds, template=cfg.carrier_template, batch_size=cfg.batch_size,
            gen_kwargs=gen_kwargs, evidence_dir=run / "analysis" / "cues", evidence_root=run, n_evidence=cfg.n_evidence,
        )
        pairs = [(j, c.index) for c in classes for j in suff.top_cues(c.index, cfg.top_cues_per_class)]
        effects = suff.effects(pairs, n_boot=cfg.n_boot)
        flips = suff.flip_rates
        for c in classes:
            for j in suff.top_cues(c.index, cfg.top_cues_per_class):
                findings += _make(cfg, "sufficiency", c, cues[j], effects[(j, c.index)], suff.evidence.get(cues[j].name, []),
                                  {"flip_rate": float(flips[j, c.index]), "carriers": [k.text for k in carriers]})
        timings["sufficiency"] = time.perf_counter() - t0
        per_class_info = {"carriers": [k.text for k in carriers], "seeds": seeds, "images": int((len(cues) + 1) * len(carriers) * len(seeds))}
    else:
        per_class_info = None

    # 6: cue necessity on each class's top cues ---------------------------------------
    if cfg.necessity and cfg.necessity_top_k > 0:
        t0 = time.perf_counter()
        # in the shapes world every cue is tested: cues of one attribute share their images
        k = max(cfg.necessity_top_k, len(cues)) if world else cfg.necessity_top_k
        for c in classes:
            say(f"analysis: cue necessity for class {c.index}")
            cache: dict = {}
            for cue in _necessity_candidates(cfg, c, cues, findings, suff, k):
                cue = _neutral_counters(cfg, cue, c.index, cues, suff, notes)
                if cue is not None:
                    _necessity(cfg, c, cue, generator, classifier, gen_kwargs, run, findings, notes, cache)
        timings["necessity"] = time.perf_counter() - t0

    findings = rank_findings(findings)
    timings["total"] = time.perf_counter() - t_start
    timings.update({f"attribution_{m}": round(s, 3) for m, s in method_seconds.items()})
    analysis = {
        "config": cfg.to_dict(),
        "cues": {"source": cue_source, "count": len(cues), "list": [c.to_dict() for c in cues]},
        "concept_scorer": scorer_name,
        "attributions": {
            "methods_run": [m for m in cfg.methods if m not in methods_skipped] if cfg.attributions else [],
            "skipped": methods_skipped,
            "layer": layer_choice.name if layer_choice is not None else None,
            "overlay_path": "classes/<dir>/attributions/<method>/<image stem>.png",
        },
        "attention_iou": _mean_iou(per_class),
        "sufficiency": per_class_info,
        "generation": gen_kwargs,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "notes": notes,
        "classes": per_class,
        "n_findings": len(findings),
        "n_passing": sum(f.passes for f in findings),
    }
    write_findings(rundir, findings)
    rundir.write_analysis(analysis)
    return findings


def _mean_iou(per_class: dict) -> dict | None:
    vals = [v for info in per_class.values() for v in (info.get("attention_iou") or {}).get("values", [])]
    return {"mean": float(np.mean(vals)), "n": len(vals)} if vals else None


def _make(cfg: AnalysisConfig, kind: str, cls: _Class, cue: Cue | None, e: Effect, evidence, extra: dict) -> list[Finding]:
    passes, strength = cfg.thresholds.judge(kind, e)
    if strength is None:
        return []
    details = dict(extra)
    if cue is not None:
        details.update(category=cue.category, description=cue.description)
        if cue.attribute is not None:
            details.update(attribute=cue.attribute, value=cue.value)
    return [
        Finding(
            class_index=cls.index,
            class_name=cls.name,
            cue=cue.name if cue is not None else OFF_OBJECT_CUE,
            kind=kind,
            effect=e.mean,
            ci_low=e.ci_low,
            ci_high=e.ci_high,
            n_images=e.n,
            evidence=tuple(evidence),
            passes=passes,
            strength=strength,
            sentence=_sentence(kind, cls.name, cue, e, strength, extra),
            details=details,
        )
    ]


def _carriers(cfg: AnalysisConfig, labels: list, classes: list[_Class]) -> list[Carrier]:
    if cfg.carriers:
        by_name = {str(n): i for i, n in enumerate(labels)}
        return [Carrier(t, by_name.get(t)) for t in cfg.carriers]
    names = [(i, str(n).split(",")[0].strip()) for i, n in enumerate(labels) if str(n).strip()]
    if not names:
        return [Carrier("object"), Carrier("thing")]
    k = min(cfg.n_carriers, len(names))
    picks = [names[int(round(j * (len(names) - 1) / max(k - 1, 1)))] for j in range(k)] if k > 1 else names[:1]
    seen, out = set(), []
    for i, n in picks:
        if i not in seen:
            seen.add(i)
            out.append(Carrier(n, i))
    return out


def _necessity_candidates(cfg: AnalysisConfig, cls: _Class, cues: list[Cue], findings: list[Finding], suff=None,
                          k: int | None = None) -> list[Cue]:
    """The class's top cues by sufficiency mean (any size: a cue can be necessary without being
    sufficient) or token-shift effect (at least weak), among cues that have counters."""
    by_name = {c.name: c for c in cues}
    best: dict[str, float] = {}
    k = cfg.necessity_top_k if k is None else k
    if suff is not None:
        for j in suff.top_cues(cls.index, k):
            best[cues[j].name] = float(suff.means[j, cls.index])
    for f in findings:
        if f.class_index == cls.index and f.kind in ("sufficiency", "token-shift") and f.cue in by_name:
            best[f.cue] = max(best.get(f.cue, -1.0), f.effect)
    ranked = sorted(best, key=lambda n: -best[n])
    return [by_name[n] for n in ranked if by_name[n].counters][:k]


def _neutral_counters(cfg, cue: Cue, class_index: int, cues: list[Cue], suff, notes) -> Cue | None:
    """Drop counters that are themselves suspect cues: a counter that raises another class's
    probability (sufficiency mean >= min_effect) would lower this class's probability through
    that class and inflate the drop ("star on water" reads as a triangle)."""
    if suff is None:
        return cue
    by_template = {c.template: j for j, c in enumerate(cues)}
    means = suff.means.copy()
    means[:, class_index] = -np.inf
    keep = [t for t in cue.counters if t not in by_template or means[by_template[t]].max() < cfg.thresholds.min_effect]
    if not keep:
        notes.append(f"class {class_index}: necessity of {cue.name!r} skipped (every counter-context is itself a suspect cue)")
        return None
    if len(keep) == len(cue.counters):
        return cue
    from dataclasses import replace

    return replace(cue, counters=tuple(keep))


def _necessity(cfg, cls: _Class, cue: Cue, generator, classifier, gen_kwargs, run: Path, findings, notes, cache=None) -> None:
    m = cls.metrics
    templates = list((m.get("prompts") or {}).get("templates") or [])
    token_prompts = list((m.get("prompts") or {}).get("token") or [])
    pairs = []
    for t, p in zip(templates, token_prompts):
        s = _subject(t, p)
        if s is not None:
            pairs.append((t, s))
    if not pairs:
        notes.append(f"class {cls.index}: necessity skipped (metrics.json has no prompts.templates/prompts.token)")
        return
    pairs = pairs[: max(1, cfg.necessity_templates)]
    seeds = list(dict.fromkeys(m.get("eval_seeds") or range(1000, 1000 + cfg.necessity_seeds)))[: cfg.necessity_seeds]
    tok_file = cls.dir / "token.safetensors"
    if tok_file.is_file() and hasattr(generator, "load_token"):
        generator.load_token(str(tok_file))
    res = cue_necessity(
        generator, classifier, cls.index, cue, pairs, seeds, batch_size=cfg.batch_size, gen_kwargs=gen_kwargs,
        evidence_dir=cls.dir / "analysis" / "necessity", evidence_root=run, n_evidence=cfg.n_evidence, n_boot=cfg.n_boot,
        cache=cache,
    )
    findings += _make(cfg, "necessity", cls, cue, res.effect, res.evidence,
                      {"accuracy_with_cue": res.acc_token, "accuracy_counter": res.acc_counter,
                       "counters": [_phrase(t) for t in cue.counters], "counter_templates": list(cue.counters)})


def _off_object(cfg, cls: _Class, records, tok_idx, heat, token, generator, gen_kwargs, info, findings, stems) -> None:
    from probe.analysis.attention import capture_cross_attention, object_mask, off_object_share

    words = [token] + ([cls.name] if cls.name else [])
    att_dir = cls.dir / "cross_attention"
    maps: dict[int, np.ndarray] = {}
    for i in tok_idx:
        f = att_dir / f"{stems[i]}.npy"
        if f.is_file():
            maps[i] = np.load(f)
    missing = [i for i in tok_idx if i not in maps]
    if missing:
        tok_file = cls.dir / "token.safetensors"
        if tok_file.is_file() and hasattr(generator, "load_token"):
            generator.load_token(str(tok_file))
        prompts = [records[i].get("prompt") for i in missing]
        if any(p is None for p in prompts):
            raise AnalysisError("metrics.json images lack 'prompt'; cannot regenerate attention maps")
        kw = {k: v for k, v in gen_kwargs.items() if k != "max_batch"}
        _, amaps = capture_cross_attention(
            generator, prompts, [int(records[i]["seed"]) for i in missing], [words] * len(missing),
            batch_size=cfg.batch_size, gen_kwargs=kw, res=cfg.attention_res,
        )
        for i, a in zip(missing, amaps.numpy()):
            maps[i] = a.astype(np.float32)
            att_dir.mkdir(parents=True, exist_ok=True)
            np.save(att_dir / f"{stems[i]}.npy", maps[i])
    shares, areas = [], []
    for i in tok_idx:
        a = maps[i]
        h = heat[i]
        if a.shape != h.shape:
            a = torch.nn.functional.interpolate(torch.from_numpy(a)[None, None].float(), size=h.shape, mode="bilinear", align_corners=False)[0, 0].numpy()
        r = off_object_share(h, object_mask(a))
        if math.isfinite(r.share_outside):
            shares.append(r.share_outside)
            areas.append(r.area_outside)
    if not shares:
        return
    e = paired_bootstrap(shares, n_boot=cfg.n_boot)
    info["off_object"] = {"share_outside": e.mean, "ci_low": e.ci_low, "ci_high": e.ci_high, "area_outside": float(np.mean(areas))}
    method = "integrated_gradients" if "integrated_gradients" in cfg.methods else cfg.methods[0]
    ev = [f"{cls.rel}/attributions/{method}/{stems[i]}.png" for i in tok_idx[: cfg.n_evidence]] if cfg.attributions else []
    findings += _make(cfg, "off-object", cls, None, e, ev, {"area_outside": float(np.mean(areas)), "heat": method})


def _world_iou(cfg: AnalysisConfig, generator, shape: str) -> list[float] | None:
    """IoU of attention masks vs. true masks on rendered scenes of ``shape`` (None if not a world shape)."""
    from probe.analysis.attention import attention_iou
    from probe.world.render import SHAPES, render
    from probe.world.text import full_caption

    if shape not in SHAPES:
        return None
    scenes = [render(shape=shape, seed=cfg.seed + k) for k in range(cfg.iou_images)]
    images = torch.stack([s.image01() for s in scenes])
    masks = torch.from_numpy(np.stack([s.mask for s in scenes])).float()
    size = int(getattr(generator, "image_size", images.shape[-1]))
    if images.shape[-1] != size:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        masks = torch.nn.functional.interpolate(masks[:, None], size=(size, size), mode="nearest")[:, 0]
    prompts = [full_caption(s.attributes) for s in scenes]
    return attention_iou(generator, images, masks.numpy() > 0.5, prompts, [[shape]] * len(scenes),
                         seed=cfg.seed, res=cfg.attention_res)


def rank_findings(findings: list[Finding]) -> Findings:
    """Best first: passing before weak; cue findings (more kinds agreeing first) before off-object; larger effect first."""
    agree: dict[tuple[int, str], int] = {}
    for f in findings:
        if f.passes and f.kind != "off-object":
            agree[(f.class_index, f.cue)] = agree.get((f.class_index, f.cue), 0) + 1

    def key(f: Finding):
        eff = f.effect if math.isfinite(f.effect) else -1e9
        return (not f.passes, f.kind == "off-object", -agree.get((f.class_index, f.cue), 0), -eff)

    return Findings(sorted(findings, key=key))


def write_findings(run_dir, findings: list[Finding]) -> None:
    """Write ``findings.json`` and ``findings.parquet`` (details as a JSON string column)."""
    RunDir(run_dir).write_findings([f.to_dict() for f in findings], list(Finding.__dataclass_fields__))


def read_findings(run_dir) -> list[Finding]:
    """Load the findings back as Finding objects."""
    data = RunDir(run_dir).read_findings()
    if data is None:
        raise AnalysisError(f"{run_dir}/findings.json does not exist; run analyze_run (or `probe audit`) first.")
    return Findings(Finding.from_dict(d) for d in data)
