"""The run's finished classes, and step 3 of the analysis per class: attributions on the gallery, nearest words to the token, the attention
masks' IoU against a domain's true masks, and the share of attribution that lies off the object."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from probe.analysis._util import load_png
from probe.analysis.attributions import AttributionConfig, attribute, choose_layer, save_overlays
from probe.analysis.config import AnalysisConfig
from probe.analysis.errors import AnalysisError
from probe.analysis.finding import OFF_OBJECT_CUE, Finding, sentence
from probe.analysis.off_object import OffObjectMeasure, attention_maps, confirm_off_object, excess_effect
from probe.analysis.outside import FOLDER as OUTSIDE, clear_outside_pairs, save_outside_pairs
from probe.analysis.token_shift import nearest_words
from probe.run import TOKEN


@dataclass
class ClassRun:
    """One finished class of the run."""

    index: int
    name: str
    dir: Path
    metrics: dict

    @property
    def rel(self) -> str:
        return f"classes/{self.dir.name}"

    @property
    def moved(self) -> bool | None:
        """Did the token move from its initial word (None: the run did not record it)."""
        change = self.metrics.get("token_change")
        return change.get("moved") if isinstance(change, dict) else None

    def token_prompts(self, k: int) -> list[tuple[str, str]]:
        """(template, subject) of the first ``k`` token prompts, e.g. ("a photo of a {}", "<probe-3> star")."""
        prompts = self.metrics.get("prompts") or {}
        out = []
        for template, prompt in zip(prompts.get("templates") or [], prompts.get("token") or []):
            pre, _, post = template.partition("{}")
            if prompt.startswith(pre) and prompt.endswith(post) and len(prompt) >= len(pre) + len(post):
                out.append((template, prompt[len(pre):len(prompt) - len(post)]))
        return out[: max(1, k)]

    def baseline_prompts(self) -> list[tuple[str, str]]:
        prompts = self.metrics.get("prompts") or {}
        return list(zip(prompts.get("baseline") or [], prompts.get("token") or []))


HEAT_ORDER = ("integrated_gradients", "grad_cam", "occlusion")  # the off-object measure's preference


class Attributions:
    """Attributions for every class's gallery, with the Grad-CAM layer chosen once."""

    def __init__(self, cfg: AnalysisConfig, classifier):
        self.cfg, self.classifier = cfg, classifier
        self.layer = None
        self.skipped: dict[str, str] = {}
        self.seconds: dict[str, float] = {}

    def _methods(self) -> tuple[str, ...]:
        """The methods to run: the configured ones; with attributions off (only the off-object measure wants a heat
        map) the cheapest, Grad-CAM (one pass per image), with integrated gradients where no layer can be hooked.
        Integrated gradients there made ``--attributions none`` cost more than ``grad_cam``."""
        if self.cfg.attributions:
            return self.cfg.methods
        return ("integrated_gradients",) if "grad_cam" in self.skipped else ("grad_cam",)

    def run(self, images: torch.Tensor, cls: ClassRun, stems: list[str], save: bool):
        cfg = self.cfg
        methods = self._methods()
        if self.layer is None and "grad_cam" in methods and "grad_cam" not in self.skipped:
            try:
                self.layer = choose_layer(self.classifier, tuple(images.shape[-2:]), cfg.attribution_layer)
            except AnalysisError as e:
                if cfg.attribution_layer is not None:
                    raise
                self.skipped["grad_cam"] = str(e)
        methods = tuple(m for m in methods if m not in self.skipped) or (() if cfg.attributions else self._methods())
        config = AttributionConfig(methods=methods, layer=cfg.attribution_layer, ig_steps=cfg.ig_steps,
                                   batch_size=max(2, cfg.batch_size // 2))
        result = attribute(self.classifier, images, cls.index, config, self.layer)
        self.skipped.update(result.skipped)
        if not cfg.attributions and not result.maps and "grad_cam" in result.skipped:  # no hooks: the fallback
            config = AttributionConfig(methods=self._methods(), ig_steps=cfg.ig_steps,
                                       batch_size=max(2, cfg.batch_size // 2))
            result = attribute(self.classifier, images, cls.index, config, self.layer)
        for m, s in result.seconds.items():
            self.seconds[m] = self.seconds.get(m, 0.0) + s
        if save:
            save_overlays(images, result, cls.dir / "attributions", stems)
        return next((result.maps[m] for m in HEAT_ORDER if m in result.maps), None)

    def heat_method(self) -> str:
        """The method whose maps the off-object measure uses: the first of :data:`HEAT_ORDER` that ran."""
        methods = self._methods()
        return next((m for m in HEAT_ORDER if m in methods and m not in self.skipped), methods[0])

    def heat(self, images: torch.Tensor, cls: ClassRun) -> torch.Tensor | None:
        """One heatmap per image from :meth:`heat_method` (what the gallery's screen used), nothing saved."""
        method = self.heat_method()
        config = AttributionConfig(methods=(method,), layer=self.cfg.attribution_layer, ig_steps=self.cfg.ig_steps,
                                   batch_size=max(2, self.cfg.batch_size // 2))
        result = attribute(self.classifier, images, cls.index, config, self.layer)
        return result.maps.get(method)

    def summary(self) -> dict:
        return {"methods_run": [m for m in self.cfg.methods if m not in self.skipped] if self.cfg.attributions else [],
                "skipped": self.skipped, "layer": getattr(self.layer, "name", None),
                "seconds": {m: round(s, 3) for m, s in self.seconds.items()},
                "overlay_path": "classes/<dir>/attributions/<method>/<image stem>.png"}


def gallery(cls: ClassRun) -> tuple[list[dict], torch.Tensor | None, list[str]]:
    records = [r for r in cls.metrics.get("images", []) if (cls.dir / r["path"]).is_file()]
    if not records:
        return [], None, []
    return records, torch.stack([load_png(cls.dir / r["path"]) for r in records]), [Path(r["path"]).stem for r in records]


def load_token(generator, cls: ClassRun) -> str | None:
    file = cls.dir / TOKEN
    if file.is_file() and hasattr(generator, "load_token"):
        return generator.load_token(str(file))
    return None


@dataclass
class OffObjectTest:
    """A class's off-object test: screened on its token gallery, confirmed on fresh token images (or not)."""

    cls: ClassRun
    screen: OffObjectMeasure
    records: list[dict]
    token_indices: list[int]
    words: list[str]
    evidence: tuple[str, ...]
    method: str
    confirm: OffObjectMeasure | None = None
    effect: object = None  # the confirmed Effect with its q-value, set by the engine's false-discovery-rate step

    def candidate(self, cfg: AnalysisConfig) -> bool:
        return self.screen.effect.mean >= cfg.thresholds.min_effect

    def confirm_now(self, cfg: AnalysisConfig, attr: "Attributions", generator, gen_kwargs: dict, notes: list[str]) -> None:
        """Measure the excess again on ``thresholds.min_pairs`` fresh token images (seeds the gallery did not use)."""
        try:
            load_token(generator, self.cls)
            self.confirm = confirm_off_object(
                generator, lambda images: attr.heat(images, self.cls), self.records, self.token_indices,
                self.words, cfg.thresholds.min_pairs, cfg.seed + 900_000 + 1000 * self.cls.index,
                batch_size=cfg.batch_size, gen_kwargs=gen_kwargs, res=cfg.attention_res)
        except AnalysisError as e:
            notes.append(f"class {self.cls.index}: off-object confirmation skipped ({e})")

    def finding(self, cfg: AnalysisConfig) -> Finding | None:
        """The finding: confirmed (passes or weak by the policy's rule), screened only (weak), or nothing."""
        from probe.analysis.policy import verdict

        if self.confirm is not None and self.effect is not None:
            measure, effect = self.confirm, self.effect
            status, passes, strength = verdict(cfg.thresholds, "off-object", effect, False)
        else:
            measure, effect = self.screen, self.screen.effect
            status, passes, strength = "screened", False, ("weak" if effect.mean >= cfg.thresholds.weak_effect else None)
        if strength is None:
            return None
        extra = {"area_outside": measure.area_outside, "share_outside": measure.share_outside}
        return Finding(class_index=self.cls.index, class_name=self.cls.name, cue=OFF_OBJECT_CUE, kind="off-object",
                       effect=effect.mean, ci_low=effect.ci_low, ci_high=effect.ci_high, n_images=effect.n,
                       evidence=self.evidence, passes=passes, strength=strength, status=status, unit="images",
                       p=effect.p, q=effect.q,
                       sentence=sentence("off-object", self.cls.name, "", effect.mean, (effect.ci_low, effect.ci_high),
                                         effect.n, status=status, extra=extra),
                       details={**extra, "heat": self.method,
                                "screen": {"effect": round(self.screen.effect.mean, 4), "n": self.screen.effect.n}})


def class_evidence(cfg, cls: ClassRun, info: dict, attr: Attributions, generator, domain, gen_kwargs, notes,
                   timings, *, outside: bool = False) -> OffObjectTest | None:
    """Step 3 for one class; ``outside``: also save what the attributions mark outside the object, for discovery
    (probe/analysis/outside.py; only a concept model reads those images)."""
    records, images, stems = gallery(cls)
    if images is None:
        notes.append(f"class {cls.index}: no gallery images found; attributions and off-object skipped")
        return None
    t0 = time.perf_counter()
    clear_outside_pairs(cls.dir / OUTSIDE)
    heat = attr.run(images, cls, stems, cfg.attributions) if (cfg.attributions or cfg.off_object) else None
    timings["attributions"] = timings.get("attributions", 0.0) + time.perf_counter() - t0
    token = cls.metrics.get("token_string")
    file = cls.dir / TOKEN
    if file.is_file() and cfg.nearest_k > 0:
        from safetensors.torch import load_file

        state = load_file(str(file))
        if "clip_l" in state:  # SDXL layout: the first encoder's row, the one generator.text_encoder embeds
            token_name, vector = token, state["clip_l"]
        else:
            (token_name, vector), = list(state.items())[:1]
        token = token or token_name
        info["nearest_words"] = nearest_words(generator.tokenizer, generator.text_encoder, vector, cfg.nearest_k)
    if domain is not None and domain.scenes is not None and cfg.off_object and cfg.iou_images > 0:
        t0 = time.perf_counter()
        try:
            iou = _attention_iou(cfg, generator, domain, cls.name)
            if iou:
                info["attention_iou"] = {"mean": float(np.mean(iou)), "n": len(iou), "values": [round(v, 4) for v in iou]}
        except Exception as e:  # the check is advisory; never lose the run's findings over it
            notes.append(f"class {cls.index}: attention IoU skipped ({type(e).__name__}: {e})")
        timings["attention_iou"] = timings.get("attention_iou", 0.0) + time.perf_counter() - t0
    token_idx = [i for i, r in enumerate(records) if r.get("kind") == "token"]
    if not (cfg.off_object and heat is not None and token_idx and token):
        return None
    t0 = time.perf_counter()
    try:
        load_token(generator, cls)
        maps = attention_maps(generator, records, token_idx, stems, [token] + ([cls.name] if cls.name else []),
                              cls.dir / "cross_attention", batch_size=cfg.batch_size, gen_kwargs=gen_kwargs,
                              res=cfg.attention_res)
        measured = excess_effect(heat, maps, token_idx)
        if outside:
            save_outside_pairs(images, heat, maps, token_idx, stems, cls.dir / OUTSIDE)
    except AnalysisError as e:
        notes.append(f"class {cls.index}: off-object skipped ({e})")
        measured = None
    timings["off_object"] = timings.get("off_object", 0.0) + time.perf_counter() - t0
    if measured is None:
        return None
    effect = measured.effect
    info["off_object"] = {"share_outside": measured.share_outside, "area_outside": measured.area_outside,
                          "excess": effect.mean, "ci_low": effect.ci_low, "ci_high": effect.ci_high, "p": effect.p,
                          "n": effect.n, "stage": "screen"}
    method = attr.heat_method()
    evidence = [f"{cls.rel}/attributions/{method}/{stems[i]}.png" for i in token_idx[:cfg.n_evidence]] if cfg.attributions else []
    words = [token] + ([cls.name] if cls.name else [])
    return OffObjectTest(cls, measured, records, token_idx, words, tuple(evidence), method)


def _attention_iou(cfg, generator, domain, name: str) -> list[float] | None:
    from probe.analysis.attention import attention_iou

    scenes = domain.scenes(name, cfg.iou_images, cfg.seed)
    if scenes is None:
        return None
    images, masks, prompts = scenes
    masks = torch.as_tensor(np.asarray(masks, dtype=np.float32))
    size = int(getattr(generator, "image_size", images.shape[-1]))
    if images.shape[-1] != size:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        masks = torch.nn.functional.interpolate(masks[:, None], size=(size, size), mode="nearest")[:, 0]
    return attention_iou(generator, images, masks.numpy() > 0.5, prompts, [[name]] * len(prompts), seed=cfg.seed,
                         res=cfg.attention_res)


def mean_iou(per_class: dict) -> dict | None:
    values = [v for info in per_class.values() for v in (info.get("attention_iou") or {}).get("values", [])]
    return {"mean": float(np.mean(values)), "n": len(values)} if values else None
