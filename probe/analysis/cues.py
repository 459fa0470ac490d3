"""Cue lists and the two intervention tests built on them.

A *cue* is something that can be said in a prompt around the object: a
background ("{} on grass"), a co-occurring object ("{} on a plate"), a colour
("red {}"), a tag ("{} with a blue tag in the corner"), a style or lighting.
``{}`` stands for the object phrase (a class name, or "S_c name" for a token
prompt). Each cue has counter-contexts that replace it in necessity tests.

- :func:`cue_sufficiency` (shared across classes): neutral carrier prompts are
  rendered with and without each cue from the same seeds and classified once;
  every class's probability is read from that one pass, so the cost grows
  with cues × images, not classes × cues.
- :func:`cue_necessity` (per class): the class's token prompts are rendered
  as they are and with a counter-context swapped in, same seeds, and the
  drop in the class's probability is measured pair by pair.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from probe.analysis._util import classify_probs, generate, to_uint8
from probe.files import save_png, slugify
from probe.analysis.errors import AnalysisError
from probe.analysis.stats import Effect, bootstrap_columns, paired_bootstrap

__all__ = [
    "Cue",
    "Carrier",
    "load_cues",
    "default_cues",
    "world_cues",
    "cue_sufficiency",
    "cue_necessity",
    "SufficiencyResult",
    "NecessityResult",
]

DEFAULT_CUES_FILE = "default_cues.json"


@dataclass(frozen=True)
class Cue:
    """One candidate cue.

    ``template`` contains ``{}`` for the object phrase; ``counters`` are
    templates that replace the cue in necessity tests. ``attribute``/``value``
    tie the cue to a concept scorer's output (the shapes world's oracles).
    """

    name: str
    template: str
    counters: tuple[str, ...] = ()
    category: str = "other"
    description: str = ""
    attribute: str | None = None
    value: str | None = None

    def __post_init__(self) -> None:
        if not str(self.name).strip():
            raise AnalysisError(f"cue name {self.name!r} is empty; give every cue a short name such as 'grass'.")
        for t in (self.template, *self.counters):
            if t.count("{}") != 1:
                raise AnalysisError(
                    f"cue {self.name!r}: template {t!r} must contain '{{}}' exactly once where the object goes, "
                    "e.g. '{} on grass'."
                )
        object.__setattr__(self, "counters", tuple(self.counters))
        if not self.description:
            object.__setattr__(self, "description", self.name)

    def apply(self, subject: str) -> str:
        return self.template.replace("{}", subject)

    def counter_prompts(self, subject: str) -> list[str]:
        return [c.replace("{}", subject) for c in self.counters]

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "template": self.template,
            "counters": list(self.counters),
            "category": self.category,
            "description": self.description,
        }
        if self.attribute is not None:
            d.update(attribute=self.attribute, value=self.value)
        return d


@dataclass(frozen=True)
class Carrier:
    """A neutral object phrase cues are attached to; ``class_index`` if it names a class."""

    text: str
    class_index: int | None = None


def _cue_from_obj(obj, where: str) -> Cue:
    if not isinstance(obj, dict) or "name" not in obj:
        raise AnalysisError(f"{where}: each cue must be an object with at least 'name' (and 'template'); got {obj!r}.")
    template = obj.get("template") or "{} " + str(obj["name"])
    if "{}" not in template:
        template = "{} " + template
    return Cue(
        name=str(obj["name"]),
        template=template,
        counters=tuple(obj.get("counters", ())),
        category=str(obj.get("category", "other")),
        description=str(obj.get("description", "")),
        attribute=obj.get("attribute"),
        value=obj.get("value"),
    )


def _parse_text_line(line: str, where: str) -> Cue:
    # "template [| counter; counter]" -- a phrase without {} is appended after the object.
    main, _, rest = line.partition("|")
    main = main.strip()
    template = main if "{}" in main else "{} " + main
    counters = [c.strip() for c in rest.split(";") if c.strip()]
    counters = [c if "{}" in c else "{} " + c for c in counters]
    name = template.replace("{}", "").strip(" ,")
    return Cue(name=name or main, template=template, counters=tuple(counters), description=name or main)


def load_cues(path: str | Path | None = None) -> list[Cue]:
    """Load a cue list: the curated default (``None``), a JSON file or a text file.

    JSON: a list of cue objects (or ``{"cues": [...]}``) with ``name`` and
    ``template`` and optional ``counters``, ``category``, ``description``.
    Text: one cue per line, ``{} on grass | {} on sand; {} on snow``; a phrase
    without ``{}`` is put after the object; ``#`` starts a comment.
    """
    if path is None:
        text = resources.files("probe.analysis").joinpath(DEFAULT_CUES_FILE).read_text(encoding="utf-8")
        where = "default cue list"
        suffix = ".json"
    else:
        p = Path(path)
        if not p.is_file():
            raise AnalysisError(f"cues file {str(p)!r} does not exist; pass a .json or .txt cue list (see docs/analysis.md).")
        text = p.read_text(encoding="utf-8")
        where = str(p)
        suffix = p.suffix.lower()
    cues: list[Cue] = []
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise AnalysisError(f"cues file {where!r} is not valid JSON ({e}); fix it or use one cue per line in a .txt file.") from e
        items = data.get("cues") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise AnalysisError(f"cues file {where!r} must hold a list of cues or {{'cues': [...]}}.")
        cues = [_cue_from_obj(o, where) for o in items]
    else:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                cues.append(_parse_text_line(line, where))
    if not cues:
        raise AnalysisError(f"cues file {where!r} holds no cues; add at least one line such as '{{}} on grass'.")
    names = [c.name for c in cues]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise AnalysisError(f"cues file {where!r} repeats cue names {dup}; give every cue a unique name.")
    return cues


def default_cues() -> list[Cue]:
    """The curated cue list for real-world generators (backgrounds, objects, people, text, styles, lighting)."""
    return load_cues(None)


def world_cues() -> list[Cue]:
    """The shapes world's attribute vocabulary as cues (backgrounds, colours, corner tags)."""
    try:
        from probe import world
    except ImportError as e:  # pragma: no cover - the world ships with probe
        raise AnalysisError("the shapes world (probe.world) is not importable; reinstall probe.") from e
    phrases = getattr(world, "TAG_PHRASES", None)
    if phrases is None:
        try:
            from probe.world.text import TAG_PHRASES as phrases
        except ImportError:
            phrases = None
    return cues_from_vocabulary(
        backgrounds=list(getattr(world, "BACKGROUNDS", [])),
        colors=list(getattr(world, "COLORS", [])),
        tags=list(getattr(world, "TAGS", [])),
        tag_phrases=phrases,
    )


def _others(values: list[str], v: str, k: int = 2) -> list[str]:
    i = values.index(v)
    rest = values[i + 1 :] + values[:i]
    return rest[:k]


def cues_from_vocabulary(
    backgrounds: list[str], colors: list[str], tags: list[str], tag_phrases: dict[str, str] | None = None
) -> list[Cue]:
    """Cues for an attribute vocabulary in the shapes world's caption grammar.

    Backgrounds read "{} on grass", colours "red {}", tags use ``tag_phrases``
    (value -> phrase, e.g. {"dot": "with a dot in the corner", "none": "with no tag"}).
    Counter-contexts are every other value of the same attribute (and "no tag" for tags).
    """
    none_words = {"none", "no", ""}
    phrases = dict(tag_phrases or {})
    cues: list[Cue] = []
    bgs = [b for b in backgrounds if b not in none_words]
    for b in bgs:
        cues.append(
            Cue(
                name=b,
                template="{} on " + b,
                counters=tuple("{} on " + o for o in _others(bgs, b, k=len(bgs))),
                category="background",
                description=f"{b} backgrounds",
                attribute="background",
                value=b,
            )
        )
    cols = [c for c in colors if c not in none_words]
    for c in cols:
        cues.append(
            Cue(
                name=c if c not in bgs else f"{c} object",
                template=c + " {}",
                counters=tuple(o + " {}" for o in _others(cols, c, k=len(cols))),
                category="color",
                description=f"{c} objects",
                attribute="color",
                value=c,
            )
        )
    tg = [t for t in tags if t not in none_words]
    none_phrase = next((phrases[t] for t in tags if t in none_words and t in phrases), None)
    for t in tg:
        phrase = phrases.get(t, f"with a {t} tag in the corner")
        counters = [phrases.get(o, f"with a {o} tag in the corner") for o in _others(tg, t, k=len(tg))]
        if none_phrase:
            counters.append(none_phrase)
        cues.append(
            Cue(
                name=t,
                template="{} " + phrase,
                counters=tuple("{} " + c for c in counters),
                category="tag",
                description=f"a corner {t} ({phrase})",
                attribute="tag",
                value=t,
            )
        )
    return cues


# ---------------------------------------------------------------------------
# sufficiency


@dataclass
class SufficiencyResult:
    """Per cue × class: mean change of P(class) when the cue is added to neutral carriers."""

    cues: list[Cue]
    carriers: list[Carrier]
    seeds: list[int]
    diffs: np.ndarray  # (n_cues, n_pairs, n_classes)  P(c | with cue) - P(c | without)
    mask: np.ndarray  # (n_pairs, n_classes) pair usable for class c (carrier is not c)
    flips: np.ndarray  # (n_cues, n_pairs, n_classes) 1 where the prediction became c
    evidence: dict[str, list[str]] = field(default_factory=dict)  # cue name -> image paths (with cue)
    seconds: float = 0.0

    @property
    def means(self) -> np.ndarray:
        m = self.mask[None].astype(np.float64)
        return (self.diffs * m).sum(1) / np.maximum(m.sum(1), 1)

    @property
    def flip_rates(self) -> np.ndarray:
        m = self.mask[None].astype(np.float64)
        return (self.flips * m).sum(1) / np.maximum(m.sum(1), 1)

    def effect(self, cue_index: int, class_index: int, *, n_boot: int = 1000, seed: int = 0) -> Effect:
        d = self.diffs[cue_index][:, class_index]
        return paired_bootstrap(d[self.mask[:, class_index]], n_boot=n_boot, seed=seed)

    def effects(self, pairs: list[tuple[int, int]], *, n_boot: int = 1000, seed: int = 0) -> dict[tuple[int, int], Effect]:
        """Bootstrap many (cue, class) pairs with one shared resampling per cue."""
        out: dict[tuple[int, int], Effect] = {}
        by_cue: dict[int, list[int]] = {}
        for j, c in pairs:
            by_cue.setdefault(j, []).append(c)
        for j, cls in by_cue.items():
            effs = bootstrap_columns(self.diffs[j][:, cls], self.mask[:, cls], n_boot=n_boot, seed=seed)
            out.update({(j, c): e for c, e in zip(cls, effs)})
        return out

    def top_cues(self, class_index: int, k: int = 3) -> list[int]:
        col = self.means[:, class_index]
        order = np.argsort(-col, kind="stable")
        return [int(j) for j in order[:k]]

    def __repr__(self) -> str:
        return (
            f"SufficiencyResult({len(self.cues)} cues × {self.diffs.shape[1]} pairs × "
            f"{self.diffs.shape[2]} classes, {self.seconds:.1f}s)"
        )


def cue_sufficiency(
    generator,
    classifier,
    cues: list[Cue],
    carriers: list[Carrier],
    seeds: list[int],
    *,
    template: str = "a photo of a {}",
    batch_size: int = 16,
    gen_kwargs: dict | None = None,
    evidence_dir: Path | None = None,
    evidence_root: Path | None = None,
    n_evidence: int = 4,
) -> SufficiencyResult:
    """Render carriers × seeds without and with every cue, classify once, return paired differences.

    Images are generated and classified chunk by chunk and then dropped; only
    probabilities are kept (plus ``n_evidence`` PNGs per cue under
    ``evidence_dir`` whose paths are recorded relative to ``evidence_root``).
    ``classifier`` may be a list of classifiers (e.g. the audited one and a
    held-out one): the images are generated once and a list of results returned.
    """
    import time

    if not cues:
        raise AnalysisError("cue_sufficiency got an empty cue list; pass at least one Cue.")
    if not carriers or not seeds:
        raise AnalysisError(
            f"cue_sufficiency needs carriers and seeds (got {len(carriers)} carriers, {len(seeds)} seeds)."
        )
    t0 = time.perf_counter()
    pairs = [(k, s) for k in range(len(carriers)) for s in seeds]
    # job list: (group, pair index, prompt, seed) with group -1 = without cue
    jobs: list[tuple[int, int, str, int]] = []
    for p, (k, s) in enumerate(pairs):
        jobs.append((-1, p, template.replace("{}", carriers[k].text), s))
    for j, cue in enumerate(cues):
        for p, (k, s) in enumerate(pairs):
            jobs.append((j, p, template.replace("{}", cue.apply(carriers[k].text)), s))
    many = isinstance(classifier, (list, tuple))
    classifiers = list(classifier) if many else [classifier]
    all_probs: list[np.ndarray | None] = [None] * len(classifiers)
    evidence: dict[str, list[str]] = {c.name: [] for c in cues}
    # evidence pairs spread over the carriers (first seed of each carrier first)
    order = sorted(range(len(pairs)), key=lambda p: (p % len(seeds), p // len(seeds)))
    keep = set(order[:n_evidence])
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        imgs = generate(generator, [c[2] for c in chunk], [c[3] for c in chunk], gen_kwargs)
        for m, clf in enumerate(classifiers):
            pr = classify_probs(clf, imgs, batch_size)
            if all_probs[m] is None:
                all_probs[m] = np.zeros((len(jobs), pr.shape[1]), np.float32)
            all_probs[m][start : start + len(chunk)] = pr
        if evidence_dir is not None:
            for i, (g, p, prompt, s) in enumerate(chunk):
                if g >= 0 and p in keep:
                    cue = cues[g]
                    path = Path(evidence_dir) / f"{g:02d}-{slugify(cue.name)}" / f"p{p}_s{s}.png"
                    save_png(path, to_uint8(imgs[i]))
                    root = Path(evidence_root) if evidence_root is not None else Path(evidence_dir)
                    evidence[cue.name].append(path.relative_to(root).as_posix())
                elif g < 0 and p in keep:
                    save_png(Path(evidence_dir) / "_without" / f"p{p}_s{s}.png", to_uint8(imgs[i]))
    seconds = time.perf_counter() - t0
    results = [
        _sufficiency_result(p, cues, carriers, seeds, pairs, evidence, seconds) for p in all_probs if p is not None
    ]
    return results if many else results[0]


def _sufficiency_result(probs, cues, carriers, seeds, pairs, evidence, seconds) -> SufficiencyResult:
    n_pairs, n_classes = len(pairs), probs.shape[1]
    base = probs[:n_pairs]
    with_cue = probs[n_pairs:].reshape(len(cues), n_pairs, n_classes)
    diffs = with_cue - base[None]
    base_pred = base.argmax(1)
    cue_pred = with_cue.argmax(2)
    flips = np.zeros_like(diffs, dtype=np.float32)
    rows = np.arange(n_pairs)
    for j in range(len(cues)):
        changed = cue_pred[j] != base_pred
        flips[j, rows[changed], cue_pred[j][changed]] = 1.0
    mask = np.ones((n_pairs, n_classes), dtype=bool)
    for p, (k, _) in enumerate(pairs):
        ci = carriers[k].class_index
        if ci is not None and 0 <= ci < n_classes:
            mask[p, ci] = False
    return SufficiencyResult(
        cues=list(cues),
        carriers=list(carriers),
        seeds=list(seeds),
        diffs=diffs,
        mask=mask,
        flips=flips,
        evidence=dict(evidence),
        seconds=seconds,
    )


# ---------------------------------------------------------------------------
# necessity


@dataclass
class NecessityResult:
    """Drop in P(class) when a counter-context replaces a cue in the class's token prompts."""

    class_index: int
    cue: Cue
    drops: np.ndarray  # (n_pairs,) P(c | token prompt) - P(c | token prompt with counter)
    acc_token: float
    acc_counter: float
    evidence: list[str]
    effect: Effect

    def __repr__(self) -> str:
        return (
            f"NecessityResult(class {self.class_index}, cue {self.cue.name!r}: drop {self.effect!r}, "
            f"accuracy {self.acc_token:.2f} -> {self.acc_counter:.2f})"
        )


def cue_necessity(
    generator,
    classifier,
    class_index: int,
    cue: Cue,
    token_prompts: list[tuple[str, str]],
    seeds: list[int],
    *,
    batch_size: int = 16,
    gen_kwargs: dict | None = None,
    evidence_dir: Path | None = None,
    evidence_root: Path | None = None,
    n_evidence: int = 4,
    n_boot: int = 1000,
    boot_seed: int = 0,
    cache: dict | None = None,
) -> NecessityResult:
    """Swap counter-contexts for the cue in the class's token prompts and measure the paired drop.

    ``token_prompts`` are (template, subject) pairs, e.g. ("a photo of a {}",
    "<probe-3> star"). The reference prompt states the cue explicitly
    ("a photo of a <probe-3> star on grass"), each counter prompt swaps in a
    counter-context ("... star on sand"), same seed. Stating the cue makes the
    test independent of whether the token happened to learn it; the drop in
    P(class), averaged over counters per (prompt, seed), is the effect.

    ``cache`` (a dict, reused across calls for one class and the same classifiers)
    keeps every (prompt, seed)'s probabilities: cues of one attribute share their
    arms ("on sand" is grass's counter and sand's reference), so testing all of
    them costs one image per value and seed. Evidence images are saved for the
    first ``n_evidence // 2`` seeds (at least one).
    """
    if not cue.counters:
        raise AnalysisError(f"cue {cue.name!r} has no counters; add 'counters' to test necessity.")
    if not token_prompts or not seeds:
        raise AnalysisError(f"cue_necessity needs token prompts and seeds for class {class_index}.")
    jobs: list[tuple[int, int, str, int]] = []  # (counter index or -1, pair key, prompt, seed)
    keys = [(i, s) for i in range(len(token_prompts)) for s in seeds]
    for q, (i, s) in enumerate(keys):
        tmpl, subj = token_prompts[i]
        jobs.append((-1, q, tmpl.replace("{}", cue.apply(subj)), s))
        for ci, counter in enumerate(cue.counter_prompts(subj)):
            jobs.append((ci, q, tmpl.replace("{}", counter), s))
    many = isinstance(classifier, (list, tuple))
    classifiers = list(classifier) if many else [classifier]
    cache = {} if cache is None else cache
    evidence_seeds = set(seeds[: max(1, n_evidence // 2)])
    todo = list(dict.fromkeys((prompt, s) for _, _, prompt, s in jobs if (prompt, s) not in cache))
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        imgs = generate(generator, [c[0] for c in chunk], [c[1] for c in chunk], gen_kwargs)
        per_model = [classify_probs(clf, imgs, batch_size) for clf in classifiers]
        for i, key in enumerate(chunk):
            path = None
            if evidence_dir is not None and key[1] in evidence_seeds:
                file = Path(evidence_dir) / f"{slugify(key[0], 60)}_s{key[1]}.png"
                save_png(file, to_uint8(imgs[i]))
                root = Path(evidence_root) if evidence_root is not None else Path(evidence_dir)
                path = file.relative_to(root).as_posix()
            cache[key] = ([pr[i] for pr in per_model], path)
    all_probs = np.zeros((len(classifiers), len(jobs)), np.float32)
    all_preds = np.zeros((len(classifiers), len(jobs)), np.int64)
    for n, (_, _, prompt, s) in enumerate(jobs):
        vecs, _ = cache[(prompt, s)]
        for m, v in enumerate(vecs):
            if not 0 <= class_index < v.shape[0]:
                raise AnalysisError(f"class_index={class_index} is outside the classifier's {v.shape[0]} classes.")
            all_probs[m, n] = v[class_index]
            all_preds[m, n] = int(v.argmax())
    saved = [(ci, cache[(prompt, s)][1]) for ci, _, prompt, s in jobs if cache[(prompt, s)][1]]
    evidence = [p for ci, p in saved if ci >= 0][: max(1, n_evidence - 1)]
    evidence += [p for ci, p in saved if ci < 0][: n_evidence - len(evidence)]
    results = [
        _necessity_result(class_index, cue, jobs, probs, preds, evidence, n_boot, boot_seed)
        for probs, preds in zip(all_probs, all_preds)
    ]
    return results if many else results[0]


def _necessity_result(class_index, cue, jobs, probs, preds, evidence, n_boot, boot_seed) -> NecessityResult:
    orig = {q: probs[n] for n, (ci, q, _, _) in enumerate(jobs) if ci < 0}
    orig_pred = {q: preds[n] for n, (ci, q, _, _) in enumerate(jobs) if ci < 0}
    # one paired value per (prompt, seed): the drop averaged over the counters
    per_key: dict[int, list[float]] = {}
    acc_c = []
    for n, (ci, q, _, _) in enumerate(jobs):
        if ci >= 0:
            per_key.setdefault(q, []).append(float(orig[q] - probs[n]))
            acc_c.append(preds[n] == class_index)
    drops_a = np.asarray([np.mean(v) for _, v in sorted(per_key.items())], np.float64)
    acc_t = float(np.mean([orig_pred[q] == class_index for q in orig]))
    return NecessityResult(
        class_index=class_index,
        cue=cue,
        drops=drops_a,
        acc_token=acc_t,
        acc_counter=float(np.mean(acc_c)),
        evidence=list(evidence),
        effect=paired_bootstrap(drops_a, n_boot=n_boot, seed=boot_seed),
    )
