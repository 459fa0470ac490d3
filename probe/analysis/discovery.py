"""Cue discovery: propose, for each class, the cues nobody listed, from what its token adds.

``Discovery(check, vocabulary).propose(cls, nearest_words)`` reads the class's paired evaluation images (baseline
prompt vs token prompt, same template and seed: what the audit already generated) and proposes cues in the
way B2T and SpLiCE read a concept shift, except that every proposal is then *tested* like a listed cue:

1. score every image against every vocabulary phrase around the class's object ("a photo of a star on grass").
   A concept model (CLIP, SigLIP) gives logits, standardised per image over the vocabulary, so that what rises
   is a phrase relative to the rest, not the whole image looking more like the class; the world's oracles give
   1/0 for the phrases they can read (those that are one of the domain's cues) and nothing for the others;
2. per phrase, two signals: the paired shift token - baseline (its mean and a paired z: mean / standard error),
   and how the phrase goes with the classifier's own P(class) over all the class's evaluation images (Pearson's
   r and its t, on the log-odds; the probabilities the audit saved, no model runs): a class that needs wood scores higher on the
   images that happen to show wood, even where its token did not learn to draw wood. The association is read
   with what clearly goes with P(class) in the other groups held fixed (:func:`partial_association`): one attribute
   that moves P(class) a lot hides a cue the generator seldom draws, and a phrase that only goes with P(class)
   because it comes with that attribute is not proposed for it;
3. propose the phrases with clear evidence (shift z at least ``min_z``, 3, or association t at least ``min_t``, 2),
   the strongest of each group first, at most ``per_group`` per group and ``k`` in all, leaving out cues already
   tested;
4. add the phrase that scores most above the rest on what the classifier's attributions mark outside the object
   (probe/analysis/outside.py: per token image, the upper half of the attribution outside the object against the
   lower half; paired z at least ``min_z``; a concept model only), as "attributions outside the object" (at most
   one), and a phrase that holds one of the token's nearest words (a word of at least three letters), when its
   shift is positive, as "nearest word" (at most one);
5. give each proposal counters from its own group: the phrases of that group whose shift is lowest (the
   domain's own counters where the proposal is one of the domain's cues).

The proposals are ``Cue`` objects (category "discovered: <group>") that enter screening and confirmation with
the listed cues, in the same false-discovery-rate family; the report tells them apart and shows why each was
proposed (``Proposal.reason``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from probe.analysis._util import load_png
from probe.analysis.cues import Cue
from probe.concepts.vocabulary import Vocabulary

__all__ = ["Discovery", "Proposal", "DISCOVERED", "association", "is_discovered", "paired_shift", "partial_association"]

DISCOVERED = "discovered"  # the category prefix of a proposed cue
_STOP = {"the", "and", "with", "from", "for", "into", "onto", "its", "his", "her", "their", "some", "next", "made"}


def is_discovered(cue: Cue) -> bool:
    return str(cue.category).startswith(DISCOVERED)


@dataclass(frozen=True)
class Proposal:
    """A proposed cue and why: the paired shift of its phrase (``shift``: mean, ``z``: mean / standard error)."""

    cue: Cue
    group: str
    phrase: str
    shift: float
    z: float
    n_pairs: int
    reason: str  # "score shift", "goes with P(class)" (", other groups held fixed"), "attributions outside the object
    # (z ...)" or "nearest word '...'"
    r: float = float("nan")  # association with P(class) over the class's evaluation images
    t: float = float("nan")

    def to_dict(self) -> dict:
        def num(x, digits):
            return None if not math.isfinite(x) else round(x, digits)

        return {"cue": self.cue.name, "group": self.group, "phrase": self.phrase, "shift": num(self.shift, 4),
                "z": num(self.z, 2), "n_pairs": self.n_pairs, "r": num(self.r, 3), "t": num(self.t, 2),
                "reason": self.reason, "template": self.cue.template, "counters": list(self.cue.counters),
                # what each counter shows, as a listed cue records it: read back by AnalysisSummary.kept_counters
                "counter_values": list(self.cue.counter_values)}

    def __repr__(self) -> str:
        return (f"Proposal({self.cue.name!r}, {self.group}, shift {self.shift:+.2f} (z {self.z:.1f}), "
                f"r {self.r:+.2f} (t {self.t:.1f}), {self.reason})")


def paired_shift(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the mean of ``after - before`` over rows and its paired z (mean / standard error; +inf for a
    constant positive shift, 0 for none). NaN columns (unreadable phrases) stay NaN."""
    d = np.asarray(after, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    n = d.shape[0]
    mean = d.mean(axis=0) if n else np.full(d.shape[1], np.nan)
    sd = d.std(axis=0, ddof=1) if n > 1 else np.zeros(d.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, mean / (sd / math.sqrt(max(n, 1))), np.where(mean > 0, np.inf, np.where(mean < 0, -np.inf, 0.0)))
    z = np.where(np.isnan(mean), np.nan, z)
    return mean, z


def association(scores: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``scores`` (images, phrases), Pearson's r with ``probs`` (P(class) per image) and its t
    (r·sqrt((n-2)/(1-r²))); NaN where a column is unreadable or constant."""
    s = np.asarray(scores, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    n = s.shape[0]
    r = np.full(s.shape[1], np.nan)
    if n < 4 or p.std() == 0:
        return r, r.copy()
    ok = np.isfinite(s).all(axis=0) & (s.std(axis=0) > 0)
    sc = s[:, ok] - s[:, ok].mean(axis=0)
    pc = p - p.mean()
    r[ok] = (sc * pc[:, None]).sum(axis=0) / np.sqrt((sc ** 2).sum(axis=0) * (pc ** 2).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        t = r * np.sqrt((n - 2) / np.maximum(1e-12, 1 - r ** 2))
    return r, t


def partial_association(scores: np.ndarray, probs: np.ndarray, groups: list[str],
                        min_t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column, :func:`association` with ``probs`` once what clearly goes with them is held fixed: the strongest
    column of each group whose own association reaches ``min_t`` (|t|), other than the column read, is regressed out
    of both the column and ``probs`` (Frisch–Waugh), and t has n - 2 - (columns held) degrees of freedom. Returns
    (r, t, held): ``held`` marks the columns read with something held fixed (the others: the plain association).

    Why: a class's P(class) often moves with one attribute much more than with the rest (fresh7-biased-2's squares:
    P(square) falls on every square with a bar, t -3.5 over its 36 images), and that variance hides a planted cue the
    generator seldom draws (5 red squares of 36: t 1.7 alone, 3.2 with the bar held fixed; fresh8-biased-0's squares
    on grass: 1.9 alone, 5.9 with the yellow colour held fixed); and a phrase that goes with P(class) only because it
    comes with a stronger one (snowy circles, which the generator draws yellow) reads low. ``groups``: each column's
    group. NaN where a column is unreadable or constant, or too few images are left to hold anything fixed."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(probs, dtype=np.float64)
    r0, t0 = association(s, y)
    n = s.shape[0]
    strongest: dict[str, int] = {}
    for j, g in enumerate(groups):
        if np.isfinite(t0[j]) and abs(t0[j]) >= min_t and (g not in strongest or abs(t0[j]) > abs(t0[strongest[g]])):
            strongest[g] = j
    r, t, marked = r0.copy(), t0.copy(), np.zeros(s.shape[1], dtype=bool)
    held_for: dict[tuple[int, ...], list[int]] = {}  # columns that share what is held (the strongest hold the others)
    for j in range(s.shape[1]):
        held_for.setdefault(tuple(sorted(k for k in strongest.values() if k != j)), []).append(j)
    for held, columns in held_for.items():
        df = n - 2 - len(held)
        if not held:
            continue
        if df < 2:
            r[columns], t[columns] = np.nan, np.nan  # too few images to hold anything fixed and still read a phrase
            continue
        x = np.column_stack([np.ones(n), s[:, list(held)]])
        project = x @ np.linalg.pinv(x)  # onto the held columns (and the mean)
        ry = y - project @ y
        rs = s[:, columns] - project @ np.nan_to_num(s[:, columns])
        ok = np.isfinite(s[:, columns]).all(axis=0) & (rs.std(axis=0) > 1e-9) & (ry.std() > 1e-9)
        rg, tg = np.full(len(columns), np.nan), np.full(len(columns), np.nan)
        if ok.any():
            a = rs[:, ok]
            rg[ok] = (a * ry[:, None]).sum(axis=0) / np.sqrt((a ** 2).sum(axis=0) * (ry ** 2).sum())
            with np.errstate(divide="ignore", invalid="ignore"):
                tg[ok] = rg[ok] * np.sqrt(df / np.maximum(1e-12, 1 - rg[ok] ** 2))
        r[columns], t[columns], marked[columns] = rg, tg, True
    return r, t, marked


class Discovery:
    """Proposes cues for a class from a check that can score phrases.

    ``check``: the run's intervention check — a :class:`probe.analysis.checks.ConceptModelCheck` (its ``model``
    scores phrases) or an :class:`probe.analysis.checks.OracleCheck` (reads the domain's attributes; ``known``
    names the domain's cues, the only phrases it can read). ``listed``: the cues already tested (never proposed
    again).
    """

    def __init__(self, check, vocabulary: Vocabulary, *, listed: list[Cue] = (), known: list[Cue] = (),
                 k: int = 3, per_group: int = 1, min_z: float = 3.0, min_t: float = 2.0,
                 subject_template: str = "a photo of a {}"):
        self.check, self.vocabulary = check, vocabulary
        self.listed = {c.template for c in listed}
        self.listed_names = {c.name for c in listed}  # tests are matched by (class, cue name): a proposal never reuses one
        self.known = {c.template: c for c in known}
        self.k, self.per_group, self.min_z, self.min_t = int(k), int(per_group), float(min_z), float(min_t)
        self.subject_template = subject_template

    # 1. scores -------------------------------------------------------------------------------------------
    def scores(self, images01: torch.Tensor, subject: str) -> np.ndarray:
        """(images, phrases): standardised logits of a concept model, or the oracles' 1/0 (NaN: unreadable)."""
        model = getattr(self.check, "model", None)
        if model is not None and hasattr(model, "score"):
            texts = [self.subject_template.format(p.text(subject)) for p in self.vocabulary.phrases]
            raw = np.asarray(model.score(images01, texts), dtype=np.float64)
            sd = raw.std(axis=1, keepdims=True)
            return (raw - raw.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
        readings = self.check.read(images01)
        out = np.full((len(readings), len(self.vocabulary)), np.nan)
        for j, phrase in enumerate(self.vocabulary.phrases):
            cue = self.known.get(phrase.template)
            if cue is None or cue.attribute is None:
                continue
            out[:, j] = [float(r.get(cue.attribute) == cue.value) if cue.attribute in r else np.nan for r in readings]
        return out

    # 2-5. the proposal ----------------------------------------------------------------------------------
    def propose_from(self, before: np.ndarray, after: np.ndarray, nearest_words: list[str] = (), *,
                     scores: np.ndarray | None = None, probs: np.ndarray | None = None,
                     outside: tuple[np.ndarray, np.ndarray] | None = None) -> list[Proposal]:
        """Proposals from paired score matrices (row i of each: the same template and seed) and, when given, the
        scores of all the class's evaluation images with the classifier's P(class) on each, and the scores of the
        marked and unmarked halves outside the object (probe/analysis/outside.py; row i of each: one image)."""
        phrases = self.vocabulary.phrases
        mean, z = paired_shift(before, after)
        if scores is not None and probs is not None:
            # what clearly goes with P(class) in the other groups held fixed (none held: the plain association)
            r, t, held = partial_association(scores, probs, [p.group for p in phrases], self.min_t)
        else:
            r, t = np.full(len(phrases), np.nan), np.full(len(phrases), np.nan)
            held = np.zeros(len(phrases), dtype=bool)
        n = int(before.shape[0])
        z_ok = np.where(np.isfinite(mean) & (mean > 0), np.nan_to_num(z, nan=0.0, neginf=0.0), 0.0)
        t_ok = np.where(np.isfinite(t) & (np.nan_to_num(r) > 0), np.nan_to_num(t, nan=0.0), 0.0)
        evidence = np.maximum(z_ok / self.min_z, t_ok / self.min_t)  # >= 1: clear on either signal
        order = sorted((j for j in range(len(phrases)) if evidence[j] > 0 and phrases[j].template not in self.listed),
                       key=lambda j: (-evidence[j], j))
        chosen: list[tuple[int, str]] = []
        per_group: dict[str, int] = {}
        for j in order:  # 3. clear evidence, the strongest of each group first
            if len(chosen) >= self.k or not evidence[j] >= 1.0:
                break
            group = phrases[j].group
            if per_group.get(group, 0) < self.per_group:
                per_group[group] = per_group.get(group, 0) + 1
                chosen.append((j, "score shift" if z_ok[j] / self.min_z >= t_ok[j] / self.min_t else
                               "goes with P(class), other groups held fixed" if held[j] else "goes with P(class)"))
        taken = {j for j, _ in chosen}
        if outside is not None:  # 4a. the phrase that most marks where the classifier looks off the object
            o_mean, o_z = paired_shift(outside[1], outside[0])
            marked = sorted((j for j in range(len(phrases)) if j not in taken and phrases[j].template not in self.listed
                             and np.isfinite(o_mean[j]) and o_mean[j] > 0 and np.nan_to_num(o_z[j]) >= self.min_z),
                            key=lambda j: (-np.nan_to_num(o_z[j], posinf=1e9), j))
            if marked:
                j = marked[0]
                z_text = "inf" if not math.isfinite(o_z[j]) else f"{o_z[j]:.1f}"
                chosen.append((j, f"attributions outside the object (z {z_text})"))
                taken.add(j)
        words = [w.lower() for w in nearest_words if len(w) >= 3 and w.isalpha() and w.lower() not in _STOP]
        for word in words:  # 4. one phrase that holds a nearest word
            hit = next((j for j in order if j not in taken and word in phrases[j].phrase.lower().split()), None)
            if hit is not None:
                chosen.append((hit, f"nearest word '{word}'"))
                break
        return [self._proposal(j, reason, mean, z, n, r, t) for j, reason in chosen]

    def _proposal(self, j: int, reason: str, mean: np.ndarray, z: np.ndarray, n: int, r: np.ndarray,
                  t: np.ndarray) -> Proposal:
        phrase = self.vocabulary.phrases[j]
        known = self.known.get(phrase.template)
        if known is not None:  # 5. a domain's cue keeps its attribute and counters
            name = known.name if known.name not in self.listed_names else f"{known.name} ({phrase.group})"
            cue = replace(known, name=name, category=f"{DISCOVERED}: {phrase.group}")
        else:
            same = [i for i in self.vocabulary.groups[phrase.group] if i != j and np.isfinite(mean[i])]
            counters = sorted(same, key=lambda i: (mean[i], i))[:2]
            cue = Cue(name=f"{phrase.phrase} ({phrase.group})" if self._clashes(phrase) else phrase.phrase,
                      template=phrase.template,
                      counters=tuple(self.vocabulary.phrases[i].template for i in counters),
                      category=f"{DISCOVERED}: {phrase.group}", description=f"{phrase.phrase} (discovered)",
                      attribute=phrase.group, value=phrase.phrase,
                      counter_values=tuple(self.vocabulary.phrases[i].phrase for i in counters))
        return Proposal(cue, phrase.group, phrase.phrase, float(mean[j]), float(z[j]), n, reason, float(r[j]),
                        float(t[j]))

    def _clashes(self, phrase) -> bool:
        """Whether the phrase alone would not name one test: another group has it, or a listed cue has that name (the
        vocabulary's "water", "{} on water", beside the curated "water", "{} in the water", overwrote its tests)."""
        return sum(p.phrase == phrase.phrase for p in self.vocabulary.phrases) > 1 or phrase.phrase in self.listed_names

    def can_propose(self) -> bool:
        """Whether any phrase the check can read is not listed yet (the world's oracles with the world's whole cue
        list: none, so discovery costs nothing there)."""
        if getattr(getattr(self.check, "model", None), "score", None) is not None:
            return any(p.template not in self.listed for p in self.vocabulary.phrases)
        return any(p.template in self.known and p.template not in self.listed for p in self.vocabulary.phrases)

    def propose(self, cls, subject: str, nearest_words: list[str] = (), extra: list[tuple] = ()) -> list[Proposal]:
        """Proposals for one finished class (probe.analysis.class_evidence.ClassRun) from its own paired
        evaluation images; ``subject`` is the class's object phrase ("star"). ``extra``: more of the class's images
        as (path, P(class)) — its plain prompt on fresh seeds — for the association. None without four images."""
        records = [r for r in cls.metrics.get("images", []) if r.get("kind") in ("baseline", "token")
                   and (cls.dir / r["path"]).is_file()]
        if len(records) < 4:
            return []
        records += [{"path": str(path), "kind": "discovery", "target_prob": prob} for path, prob in extra]
        scores = self.scores(torch.stack([load_png(cls.dir / r["path"]) for r in records]), subject)  # read once
        row = {(r.get("kind"), r.get("prompt_index"), r.get("seed")): i for i, r in enumerate(records)}
        keys = sorted({(p, s) for k, p, s in row if k == "baseline"} & {(p, s) for k, p, s in row if k == "token"},
                      key=str)
        before = scores[[row[("baseline", p, s)] for p, s in keys]]
        after = scores[[row[("token", p, s)] for p, s in keys]]
        probs = [r.get("target_prob") for r in records]
        usable = all(isinstance(x, (int, float)) and math.isfinite(x) for x in probs)
        # the association reads log-odds: P(class) sits near 1 on most of a class's images, and the images that
        # lack a cue the class needs differ in how far below 1 they fall
        odds = np.clip(np.array(probs, dtype=np.float64), 1e-4, 1 - 1e-4) if usable else None
        return self.propose_from(before, after, nearest_words, scores=scores if usable else None,
                                 probs=np.log(odds / (1 - odds)) if usable else None,
                                 outside=self._outside(cls, subject))

    def _outside(self, cls, subject: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Scores of the marked and unmarked halves outside the object (probe/analysis/outside.py), or None: no
        pairs saved, or a check that reads whole scenes only (the oracles)."""
        from probe.analysis.outside import FOLDER, load_outside_pairs

        model = getattr(self.check, "model", None)
        pairs = load_outside_pairs(cls.dir / FOLDER) if model is not None and hasattr(model, "score") else None
        if pairs is None:
            return None
        scores = self.scores(torch.cat(pairs), subject)
        n = pairs[0].shape[0]
        return scores[:n], scores[n:]


def _plain_images(cfg, lab, cls, subject: str, run_root) -> list[tuple]:
    """``cfg.discover_images`` images of the class's plain prompt on fresh seeds, generated through the Lab (counted
    and budgeted as analysis images, stage "discovery") and kept under analysis/discovery/: (path, P(class))."""
    from probe.analysis.lab import Arm

    if lab is None or run_root is None or cfg.discover_images <= 0:
        return []
    folder = run_root / "analysis" / "discovery" / f"{cls.index}"
    first = cfg.seed + 800_000 + 1000 * cls.index  # apart from screening, confirmation and off-object seeds
    arms = [Arm.of(cfg.carrier_template.replace("{}", subject), s) for s in range(first, first + cfg.discover_images)]
    stage = getattr(lab, "stage", None)
    lab.stage = "discovery"
    try:
        observed = lab.observe(arms, evidence_dir=folder, save=set(range(len(arms))))
    finally:
        lab.stage = stage
    return [(run_root / o.evidence, float(o.probs[0][cls.index])) for o in observed if o.evidence]


def propose_cues(cfg, check, classes, listed: list[Cue], *, known: list[Cue] = (), per_class_info: dict | None = None,
                 subject_of=None, notes: list[str] | None = None, lab=None, run_root=None) -> dict[int, list[Proposal]]:
    """Step 3b of the analysis: {class index: proposals} for every class, from ``cfg.discover`` proposals per class
    over ``cfg.vocabulary`` (the bundled one when unset). Nothing without a check (an unchecked run cannot read a
    phrase), with ``cfg.discover`` 0, or when the check can read no phrase that is not listed already.
    ``per_class_info`` (analysis.json's per-class dicts) gives each class's nearest words and receives its
    proposals; ``subject_of(cls)`` names the class's object; with ``lab`` and ``run_root`` each class also gets
    ``cfg.discover_images`` plain-prompt images on fresh seeds for the association with P(class)."""
    from probe.concepts.vocabulary import load_vocabulary

    if not cfg.discover or check is None:
        return {}
    vocabulary = load_vocabulary(cfg.vocabulary)
    finder = Discovery(check, vocabulary, listed=listed, known=known, k=cfg.discover)
    if not finder.can_propose():
        return {}
    out: dict[int, list[Proposal]] = {}
    for cls in classes:
        info = (per_class_info or {}).get(str(cls.index), {})
        words = [w.get("word", "") for w in info.get("nearest_words", []) if isinstance(w, dict)][:5]
        subject = subject_of(cls) if subject_of is not None else cls.name
        subject = subject or cls.name or "object"
        proposals = finder.propose(cls, subject, words, extra=_plain_images(cfg, lab, cls, subject, run_root))
        if proposals:
            out[cls.index] = proposals
        if per_class_info is not None and str(cls.index) in per_class_info:
            per_class_info[str(cls.index)]["discovered"] = [p.to_dict() for p in proposals]
    if notes is not None:
        n = sum(len(v) for v in out.values())
        notes.append(f"discovery: {n} cues proposed from {len(vocabulary)} vocabulary phrases "
                     f"({vocabulary.source}) for {len(out)} of {len(classes)} classes, tested with the listed ones")
    return out
