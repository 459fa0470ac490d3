"""Ground truth for the audit: a world classifier's *true* dependence on every cue, measured by rendering.

The audit estimates cue effects through a diffusion model (prompts with and without a cue). In
the shapes world the same questions can be answered exactly, without a generator: render a
scene, change one attribute, classify both versions. :func:`true_effects` does that for every
(class, cue) pair and returns a :class:`TruthTable`, the yardstick for every finding the audit
makes about a shapes-world classifier::

    from probe.classifiers import load_classifier
    from probe.world import bundled_classifier_path, true_effects

    truth = true_effects(load_classifier(bundled_classifier_path("biased")))
    truth.top("star", 3)                                  # the cues "star" truly depends on
    truth.confirms("star", "grass", "necessity", 0.42)    # does the audit's finding hold?

Two effects per (class, cue), both paired differences of P(class) (softmax) over scenes that
share everything (shape, geometry, the other attributes, texture noise) except the cue's attribute:

- ``sufficiency``: scenes of the *other* shapes (neutral carriers: all ``5 * n`` of them), with the
  cue's value minus without it. "Without" is every other value of the attribute, averaged per scene: the
  expectation of drawing one of them at random, with less noise than one draw.
- ``necessity``: scenes of the class itself, with the cue's value minus each counter-value
  (every other value of the attribute, as in the audit's counter-contexts), averaged per scene.

Each cell reports the mean over its scenes (``n``) with a normal-approximation 95% interval.

How the renders stay cheap: a render costs a few milliseconds, nearly all of it the supersampled
object geometry, which no cue attribute touches. A :class:`ScenePool` computes each scene's
geometry and background textures once and composites every arm from them exactly as
:func:`~probe.world.scenes.render_batch` does (the tests check the arms against ``render_batch``
pixel for pixel), so a full table at ``n=200`` renders 1,200 scenes, not 15,600.
"""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from probe.devices import module_device
from probe.errors import ProbeError
from probe.world.scenes import (
    COLOR_RGB,
    IMAGE_SIZE,
    OUTLINE_RGB,
    SHAPES,
    SUPERSAMPLE,
    TAG_RGB,
    VOCAB,
    WorldError,
    _backgrounds,
    attribute_index,
    check_seed,
    object_coverage,
    sample_attributes,
)

__all__ = ["true_effects", "TruthTable", "ScenePool", "cue_attributes", "KINDS", "COLUMNS"]

#: The attributes a cue can intervene on (the shape is the class, never a cue).
CUE_ATTRIBUTES: tuple[str, ...] = ("background", "color", "tag")
#: The attributes drawn outside the shape (the colour is the shape's own).
OFF_OBJECT_ATTRIBUTES: tuple[str, ...] = ("background", "tag")
KINDS: tuple[str, ...] = ("sufficiency", "necessity")
#: Audit finding kinds compared against a true effect kind ("token-shift" claims a cue makes the class).
KIND_ALIASES = {"sufficiency": "sufficiency", "necessity": "necessity", "token-shift": "sufficiency"}
COLUMNS: tuple[str, ...] = ("class_index", "class_name", "cue", "attribute", "value", "kind", "effect",
                            "ci_low", "ci_high", "n")
Z95 = 1.959963984540054
CHUNK = 256


# ---------------------------------------------------------------------------
# Scenes: geometry once, every attribute value composited on it.
# ---------------------------------------------------------------------------

def _coverage(attrs: dict[str, np.ndarray], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Object coverage and outline-grown coverage (B, 1, size, size): the renderer's own step 1, pooled."""
    obj, grown = object_coverage(attrs, size)
    return F.avg_pool2d(obj, SUPERSAMPLE), F.avg_pool2d(grown, SUPERSAMPLE)


def _tag_coverage(size: int) -> torch.Tensor:
    """Coverage of each tag value (none, dot, bar): (3, 1, size, size), as step 2 of ``render_batch``."""
    ss = size * SUPERSAMPLE
    coords = (torch.arange(ss, dtype=torch.float32) + 0.5) / ss * 2 - 1
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    cov = torch.zeros(len(VOCAB["tag"]), 1, ss, ss)
    cov[VOCAB["tag"].index("dot")] = ((gx + 0.78) ** 2 + (gy + 0.78) ** 2 < 0.16**2).float()
    cov[VOCAB["tag"].index("bar")] = (((gx - 0.70).abs() < 0.22) & ((gy - 0.82).abs() < 0.09)).float()
    return F.avg_pool2d(cov, SUPERSAMPLE)


class ScenePool:
    """``n_per_shape`` random scenes of every shape, ready to be re-rendered with any cue value.

    Scenes are grouped by shape (``attributes["shape"]`` is ``[0]*n + [1]*n + ...``); every other
    attribute is drawn uniformly from ``seed``, or, given a classifier's planted ``bias`` and ``strength`` (its
    bias.json), the cue attributes as its training and validation scenes draw them per shape
    (``probe.world.classifiers.sample_biased_attributes``): the true effects *in that population*, which is what a
    real-data confirmation on its validation set estimates (an effect that differs between contexts averages
    differently there; a biased square rarely blue, for one). Scenes are rendered in chunks of ``CHUNK``, each
    with its own texture seed (``chunks``: ``(start, stop, texture_seed)``), so
    ``render_batch(pool.attributes_with(a, v)[start:stop], torch.Generator().manual_seed(texture_seed))``
    gives the same pixels as ``pool.images_with(a, v)[start:stop]``.
    """

    def __init__(self, n_per_shape: int, seed: int = 0, size: int = IMAGE_SIZE, *, bias: dict | None = None,
                 strength: float = 0.0):
        if isinstance(n_per_shape, bool) or not isinstance(n_per_shape, (int, np.integer)) or n_per_shape < 2:
            raise WorldError(f"n={n_per_shape!r} must be an int >= 2 (scenes per class and cell; 200 gives tight intervals)")
        self.n_per_shape = int(n_per_shape)
        self.seed = check_seed(seed)
        self.size = int(size)
        rng = np.random.default_rng(self.seed)
        total = len(SHAPES) * self.n_per_shape
        attrs = sample_attributes(total, rng)
        attrs["shape"] = np.repeat(np.arange(len(SHAPES)), self.n_per_shape)
        self.bias, self.strength = _population(bias, strength)
        if self.bias:
            from probe.world.classifiers import bias_contexts

            bias_contexts(attrs, self.bias, self.strength, rng)
        self.attributes: dict[str, np.ndarray] = attrs
        self.chunks: tuple[tuple[int, int, int], ...] = tuple(
            (i, min(i + CHUNK, total), int(rng.integers(0, 2**62))) for i in range(0, total, CHUNK)
        )
        self._rendering: tuple[torch.Tensor, ...] | None = None  # made on the first render: see _layers

    def _layers(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(object coverage, grown coverage, every background's texture, tag coverage), made once on the first
        render: a pool read only for its attributes (a population's statistics) never pays for them (~4 s for
        2400 scenes on one core)."""
        if self._rendering is None:
            obj, grown, textures = [], [], []
            n_bg = len(VOCAB["background"])
            for start, stop, tex_seed in self.chunks:
                o, g = _coverage({k: v[start:stop] for k, v in self.attributes.items()}, self.size)
                obj.append(o)
                grown.append(g)
                # Every background value from the same generator state: textures share their noise.
                textures.append(torch.stack([
                    _backgrounds(torch.full((stop - start,), k, dtype=torch.long), self.size,
                                 torch.Generator().manual_seed(tex_seed), torch.device("cpu"))
                    for k in range(n_bg)
                ]))
            # (backgrounds, N, 3, H, W) for the textures
            self._rendering = (torch.cat(obj), torch.cat(grown), torch.cat(textures, dim=1), _tag_coverage(self.size))
        return self._rendering

    def __len__(self) -> int:
        return len(self.attributes["shape"])

    def indices(self, shape: int) -> np.ndarray:
        """The pool indices of the scenes of ``shape`` (a SHAPES index)."""
        return np.arange(shape * self.n_per_shape, (shape + 1) * self.n_per_shape)

    def carriers(self, shape: int) -> np.ndarray:
        """The pool indices of every scene of the other shapes (the neutral carriers for ``shape``)."""
        return np.flatnonzero(self.attributes["shape"] != shape)

    def attributes_with(self, attribute: str | None = None, value: str | int | None = None) -> dict[str, np.ndarray]:
        """The pool's attributes (indices for categorical ones) with ``attribute`` set to ``value`` everywhere."""
        out = {k: v.copy() for k, v in self.attributes.items()}
        if attribute is not None:
            if attribute not in CUE_ATTRIBUTES:
                raise WorldError(f"attribute {attribute!r} cannot be intervened on: use one of {list(CUE_ATTRIBUTES)}")
            out[attribute] = np.full(len(self), attribute_index(attribute, value), dtype=out[attribute].dtype)
        return out

    def images_with(self, attribute: str | None = None, value: str | int | None = None) -> torch.Tensor:
        """Every pool scene, (N, 3, H, W) in [0, 1], with ``attribute`` set to ``value`` (step 3 of ``render_batch``)."""
        a = self.attributes_with(attribute, value)
        bg, color, tag = (torch.as_tensor(a[k], dtype=torch.long) for k in ("background", "color", "tag"))
        b = len(self)
        obj, grown, textures, tags = self._layers()
        img = textures[bg, torch.arange(b)]
        fill = COLOR_RGB[color].view(b, 3, 1, 1)
        outline = OUTLINE_RGB.view(1, 3, 1, 1)
        img = img * (1 - grown) + outline * (grown - obj) + fill * obj
        tag_c = tags[tag]
        img = img * (1 - tag_c) + TAG_RGB[tag].view(b, 3, 1, 1) * tag_c
        return img.clamp(0, 1)

    def __repr__(self) -> str:
        population = f", bias {self.bias} at {self.strength:g}" if self.bias else ""
        return f"ScenePool({self.n_per_shape} scenes × {len(SHAPES)} shapes, seed {self.seed}, {self.size}px{population})"


def _population(bias, strength) -> tuple[dict, float]:
    """A pool's planted bias (validated as ``probe world classifier`` validates it) and its strength."""
    from probe.world.classifiers import parse_bias

    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= 1:
        raise WorldError(f"strength={strength!r} must be a number in [0, 1] (a classifier's bias.json has it)")
    parsed = parse_bias(bias or {})
    return (parsed, float(strength)) if parsed and strength > 0 else ({}, 0.0)


# ---------------------------------------------------------------------------
# Cues and classifier.
# ---------------------------------------------------------------------------

def cue_attributes(cues: Iterable[Any] | None = None) -> list[tuple[str, str, str]]:
    """``(cue name, attribute, value)`` for each cue; ``None`` means the audit's ``world_cues()``.

    Items are cue names of ``world_cues()`` or :class:`~probe.analysis.cues.Cue` objects, which
    carry their attribute and value in the ``attribute``/``value`` fields.
    """
    from probe.world.domain import world_cues

    known = {c.name: c for c in world_cues()}
    items = list(known.values()) if cues is None else list(cues)
    if not items:
        raise WorldError("cues=[] holds no cue: pass None for every world cue, or names such as ['grass', 'dot']")
    out: list[tuple[str, str, str]] = []
    for item in items:
        if isinstance(item, str):
            if item not in known:
                raise WorldError(f"cue {item!r} is not a world cue: use one of {sorted(known)}")
            item = known[item]
        name, attribute, value = (getattr(item, k, None) for k in ("name", "attribute", "value"))
        if attribute not in CUE_ATTRIBUTES or value not in VOCAB.get(attribute, ()):
            raise WorldError(f"cue {name!r} has attribute={attribute!r}, value={value!r}: a true effect needs one of "
                             f"{list(CUE_ATTRIBUTES)} and a value of its vocabulary (use probe.world.domain.world_cues())")
        out.append((str(name), attribute, value))
    names = [c[0] for c in out]
    dup = sorted({x for x in names if names.count(x) > 1})
    if dup:
        raise WorldError(f"cues repeat the names {dup}: give each cue once")
    return out


def _labels(classifier) -> list[str]:
    labels = getattr(classifier, "labels", None)
    if labels is None or not callable(classifier):
        raise WorldError(f"classifier {type(classifier).__name__} has no .labels: pass a probe Classifier, "
                         "e.g. load_classifier(bundled_classifier_path('biased'))")
    labels = [str(x) for x in labels]
    if labels != list(SHAPES):
        raise WorldError(f"classifier labels {labels[:8]} are not the shapes world's classes {list(SHAPES)} in order: "
                         "true effects need a world classifier (its .labels.txt sidecar names them)")
    return labels


def _probabilities(classifier, images: torch.Tensor, batch_size: int) -> np.ndarray:
    dev = module_device(classifier)
    out = []
    try:
        with torch.inference_mode():
            for i in range(0, images.shape[0], batch_size):
                logits = classifier(images[i:i + batch_size].to(dev))
                out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    except ProbeError:
        raise
    except Exception as e:  # a user's model failing inside our code
        raise WorldError(f"the classifier failed on rendered scenes of shape {tuple(images.shape)}: "
                         f"{type(e).__name__}: {e}; check that it takes (B, 3, 32, 32) images in [0, 1]") from e
    return np.concatenate(out).astype(np.float64)


def _mean_ci(d: np.ndarray) -> tuple[float, float, float]:
    m = float(d.mean())
    if len(d) < 2:
        return m, float("nan"), float("nan")
    half = Z95 * float(d.std(ddof=1)) / math.sqrt(len(d))
    return m, m - half, m + half


# ---------------------------------------------------------------------------
# The measurement.
# ---------------------------------------------------------------------------

def true_effects(classifier, n: int = 200, seed: int = 0, cues: Sequence[Any] | None = None, *,
                 batch_size: int = 2048, pool: ScenePool | None = None) -> "TruthTable":
    """A world classifier's true sufficiency and necessity effect for every (class, cue); see the module doc.

    ``classifier``: a probe Classifier over the shapes world's classes (images in [0, 1] -> logits).
    ``n``: scenes per shape. A necessity cell averages the class's ``n`` scenes; a sufficiency cell
    every scene of the other shapes, ``(len(SHAPES) - 1) * n`` (already rendered and classified, so free).
    ``cues``: world cue names or Cue objects; ``None`` takes ``probe.world.domain.world_cues()``.
    ``pool``: a :class:`ScenePool` to reuse (its ``n_per_shape`` and ``seed`` then replace ``n`` and
    ``seed``): building it is most of the cost, and classifiers measured on one pool see the same scenes.
    """
    t0 = time.perf_counter()
    labels = _labels(classifier)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise WorldError(f"batch_size={batch_size!r} must be a positive int")
    cue_list = cue_attributes(cues)
    if pool is None:
        pool = ScenePool(n, seed)
    elif not isinstance(pool, ScenePool):
        raise WorldError(f"pool={type(pool).__name__} must be a ScenePool (or None to render one from n and seed)")
    n, seed = pool.n_per_shape, pool.seed

    # 1. Classify every scene once per value of every attribute a cue touches.
    probs: dict[tuple[str, str], np.ndarray] = {}
    for attribute in CUE_ATTRIBUTES:
        if any(a == attribute for _, a, _ in cue_list):
            for value in VOCAB[attribute]:
                probs[(attribute, value)] = _probabilities(classifier, pool.images_with(attribute, value), batch_size)

    # 2. Paired differences per (class, cue, kind), and each value's mean P(class) for claims against chosen counters.
    rows = []
    value_means: dict[tuple[str, int, str, str], float] = {}
    carrier_means: dict[tuple[int, str, str, str], float] = {}
    for c, name in enumerate(labels):
        scenes = {"sufficiency": pool.carriers(c), "necessity": pool.indices(c)}
        for kind, idx in scenes.items():
            for (attribute, value), p in probs.items():
                value_means[(kind, c, attribute, value)] = float(p[idx, c].mean())
        for (attribute, value), p in probs.items():  # per carrier shape: for claims measured on a few carriers
            for s, shape in enumerate(SHAPES):
                if s != c:
                    carrier_means[(c, attribute, value, shape)] = float(p[pool.indices(s), c].mean())
        for cue, attribute, value in cue_list:
            counters = [u for u in VOCAB[attribute] if u != value]
            for kind in KINDS:
                idx = scenes[kind]
                with_cue = probs[(attribute, value)][idx, c]
                without = np.mean([probs[(attribute, u)][idx, c] for u in counters], axis=0)
                effect, lo, hi = _mean_ci(with_cue - without)
                rows.append((c, name, cue, attribute, value, kind, effect, lo, hi, len(idx)))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return TruthTable(frame, n=n, seed=int(seed), classifier=str(getattr(classifier, "name", type(classifier).__name__)),
                      seconds=time.perf_counter() - t0, value_means=value_means,
                      carrier_means=carrier_means, shares=_shares(pool))


def _shares(pool: ScenePool) -> dict[tuple[str, str, str], float]:
    """How often each shape's scenes show each value of each cue attribute in the pool's population: the exact
    probabilities of its sampler (uniform, or the classifier's bias), not the pool's counts."""
    from probe.world.classifiers import bias_shares

    return bias_shares(pool.bias, pool.strength)


@dataclass(frozen=True, eq=False)
class TruthTable:
    """True cue effects of a world classifier: one row per (class, cue, kind); see :func:`true_effects`."""

    frame: pd.DataFrame
    n: int
    seed: int = 0
    classifier: str = ""
    seconds: float = 0.0
    value_means: dict = field(default_factory=dict)  # (kind, class index, attribute, value) -> mean P(class)
    carrier_means: dict = field(default_factory=dict)  # (class index, attribute, value, carrier shape) -> mean P(class)
    shares: dict = field(default_factory=dict)  # (shape, attribute, value) -> its probability in the pool's population

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.frame.columns]
        if missing:
            raise WorldError(f"TruthTable frame lacks columns {missing}: build it with true_effects()")
        object.__setattr__(self, "frame", self.frame.reset_index(drop=True).copy())

    # ------------------------------------------------------------------ lookups

    def to_frame(self) -> pd.DataFrame:
        """A copy of the table: columns class_index, class_name, cue, attribute, value, kind, effect, ci_low, ci_high, n."""
        return self.frame.copy()

    def _class(self, class_name: str | int) -> str:
        names = list(dict.fromkeys(self.frame["class_name"]))
        if isinstance(class_name, (int, np.integer)) and not isinstance(class_name, bool):
            if 0 <= int(class_name) < len(names):
                return names[int(class_name)]
        elif class_name in names:
            return class_name
        raise WorldError(f"class {class_name!r} is not in the table: use one of {names} (or its index)")

    def _kind(self, kind: str) -> str:
        if kind not in KIND_ALIASES:
            raise WorldError(f"kind {kind!r} has no true effect: use one of {list(KIND_ALIASES)} "
                             "(token-shift is compared with sufficiency)")
        return KIND_ALIASES[kind]

    def row(self, class_name: str | int, cue: str, kind: str) -> pd.Series:
        """The table row of (class, cue, kind)."""
        cls, k = self._class(class_name), self._kind(kind)
        f = self.frame
        hit = f[(f["class_name"] == cls) & (f["cue"] == cue) & (f["kind"] == k)]
        if hit.empty:
            raise WorldError(f"cue {cue!r} is not in the table: use one of {sorted(set(f['cue']))}")
        return hit.iloc[0]

    def effect(self, class_name: str | int, cue: str, kind: str, counters: Sequence[str] | None = None,
               carriers: Sequence[str] | None = None) -> float:
        """The true mean change in P(class) for the cue ("token-shift" reads the sufficiency effect).

        ``counters``: the values the claim was measured against (an audit drops counters that are cues
        themselves); default every other value of the attribute. ``carriers``: the shapes a sufficiency claim was
        measured on (its ``carriers``); default every other shape.
        """
        row = self.row(class_name, cue, kind)
        if not counters and not carriers:
            return float(row["effect"])
        return self.value_effect(class_name, row["attribute"], row["value"], kind, counters, carriers)

    def value_effect(self, class_name: str | int, attribute: str, value: str, kind: str,
                     counters: Sequence[str] | None = None, carriers: Sequence[str] | None = None) -> float:
        """The true effect of ``attribute=value`` against ``counters`` (default: every other value of the attribute),
        from each value's mean P(class): also for a value that is no cue of the table, such as a tag's "none" (what a
        phrase like "with a name tag" draws in this world). ``carriers``: sufficiency on those shapes only (each
        shape weighted alike, as a claim measured on them); ignored for necessity."""
        kd = self._kind(kind)
        c = int(self.frame.loc[self.frame["class_name"] == self._class(class_name), "class_index"].iloc[0])
        values = {k[3]: v for k, v in self.value_means.items() if k[:3] == (kd, c, attribute)}
        if carriers and kd == "sufficiency":
            known = {k[3] for k in self.carrier_means if k[0] == c}
            unknown = [s for s in carriers if s not in known]
            if unknown:
                raise WorldError(f"carriers {unknown} are not other shapes of class {class_name!r}: use some of "
                                 f"{sorted(known)}")
            values = {u: float(np.mean([self.carrier_means[(c, attribute, u, s)] for s in carriers])) for u in values}
        if value not in values:
            raise WorldError(f"{attribute}={value!r} is not in the table: use one of {sorted(values) or 'none'}")
        counters = [u for u in values if u != value] if not counters else list(counters)
        missing = [u for u in counters if u not in values]
        if missing:
            raise WorldError(f"counters {missing} are not values of {attribute!r}")
        return float(values[value] - np.mean([values[u] for u in counters]))

    def slice_gap(self, class_name: str | int, cue: str, kind: str, counters: Sequence[str] | None = None) -> float:
        """The gap in mean P(class) that a labelled image set drawn from this table's population shows, in
        expectation, between the slices ``probe confirm`` compares: for ``necessity`` (and a token shift) the class's
        own scenes with the cue against those with one of ``counters``; for ``sufficiency`` the other shapes' scenes
        with the cue against those with a counter. Each value and shape weighs as often as the population draws it
        (:attr:`shares`), where :meth:`effect` weighs every counter and carrier alike: a counter the class rarely
        shows (a value another class was trained on) then counts for little. In a pool drawn as a classifier's
        validation set (``probe.world.validation_truth``) this is the real-data gap's truth. NaN when a slice would
        be empty."""
        if not self.shares:
            raise WorldError("this table records no population shares: build it with true_effects()")
        self._kind(kind)  # a kind that is none of the table's (a typo read as necessity)
        row = self.row(class_name, cue, "sufficiency" if kind == "sufficiency" else "necessity")
        c, attribute, value = int(row["class_index"]), row["attribute"], row["value"]
        counters = list(counters) if counters else [u for u in VOCAB[attribute] if u != value]
        missing = [u for u in counters if u not in VOCAB[attribute] or u == value]
        if missing:
            raise WorldError(f"counters {missing} are not other values of {attribute!r}: use some of "
                             f"{[u for u in VOCAB[attribute] if u != value]}")
        name = self._class(class_name)

        def mean(values) -> float:
            """Mean P(class) over the slice of scenes showing one of ``values``: (weight, cell mean) per cell."""
            if kind == "sufficiency":  # the other shapes' scenes, each (shape, value) cell as often as it is drawn
                cells = [(self.shares[(s, attribute, u)], self.carrier_means[(c, attribute, u, s)])
                         for s in SHAPES if s != name for u in values]
            else:  # the class's own scenes
                cells = [(self.shares[(name, attribute, u)], self.value_means[("necessity", c, attribute, u)])
                         for u in values]
            total = sum(w for w, _ in cells)
            return sum(w * m for w, m in cells) / total if total > 0 else float("nan")

        return float(mean([value]) - mean(counters))

    def off_object(self, class_name: str | int) -> float:
        """The class's largest true necessity effect of an attribute that lies off the object (background, tag):
        how much the class truly depends on something outside the shape, the yardstick of an off-object finding."""
        cls = self._class(class_name)
        f = self.frame
        sub = f[(f["class_name"] == cls) & (f["kind"] == "necessity") & f["attribute"].isin(OFF_OBJECT_ATTRIBUTES)]
        return float(sub["effect"].max()) if not sub.empty else 0.0

    def confirms(self, class_name: str | int, cue: str, kind: str, claimed_effect: float,
                 threshold: float = 0.15, counters: Sequence[str] | None = None,
                 carriers: Sequence[str] | None = None) -> bool:
        """Whether a claimed effect holds: the true effect has its sign and at least ``threshold`` in size.

        An ``off-object`` claim (the classifier's evidence lies off the object) holds when the class truly
        depends on an off-object attribute by at least ``threshold`` (:meth:`off_object`).
        """
        claimed = float(claimed_effect)
        if not math.isfinite(claimed):
            raise WorldError(f"claimed_effect={claimed_effect!r} must be a finite number")
        if kind == "off-object":
            return bool(claimed > 0 and self.off_object(class_name) >= threshold)
        true = self.effect(class_name, cue, kind, counters, carriers)
        return bool(claimed != 0 and np.sign(true) == np.sign(claimed) and abs(true) >= threshold)

    def top(self, class_name: str | int, k: int = 5, kind: str = "necessity") -> pd.DataFrame:
        """The class's ``k`` largest true effects of ``kind`` (signed, largest first)."""
        cls, kd = self._class(class_name), self._kind(kind)
        f = self.frame
        sub = f[(f["class_name"] == cls) & (f["kind"] == kd)]
        return sub.sort_values("effect", ascending=False, kind="stable").head(int(k)).reset_index(drop=True)

    # ------------------------------------------------------------------ display

    def _summary(self) -> tuple[str, list[tuple[str, list[tuple[str, float, float, float]]]]]:
        classes = list(dict.fromkeys(self.frame["class_name"]))
        cues = list(dict.fromkeys(self.frame["cue"]))
        head = (f"TruthTable(classifier {self.classifier!r}: {len(classes)} classes × {len(cues)} cues × "
                f"{self.frame['kind'].nunique()} kinds, n={self.n} scenes per class, seed {self.seed}, {self.seconds:.1f} s)")
        per_class = []
        for cls in classes:
            top = self.top(cls, 3, "necessity")
            per_class.append((cls, [(r.cue, r.effect, r.ci_low, r.ci_high) for r in top.itertuples()]))
        return head, per_class

    def __repr__(self) -> str:
        head, per_class = self._summary()
        lines = [head, "  largest true necessity effects, P(class | cue) - P(class | other values):"]
        for cls, tops in per_class:
            cells = ", ".join(f"{cue} {e:+.2f} [{lo:+.2f}, {hi:+.2f}]" for cue, e, lo, hi in tops)
            lines.append(f"    {cls:10s} {cells}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head, per_class = self._summary()
        esc = html.escape
        rows = "".join(
            f"<tr><th>{esc(str(cls))}</th>"
            + "".join(f"<td>{esc(str(cue))} {e:+.2f} <small>[{lo:+.2f}, {hi:+.2f}]</small></td>" for cue, e, lo, hi in tops)
            + "</tr>"
            for cls, tops in per_class
        )
        table = self.frame.to_html(index=False, escape=True, float_format=lambda x: f"{x:+.3f}")
        return (f"<div class='probe-truth'><p>{esc(head)}</p>"
                f"<table><caption>largest true necessity effects</caption>{rows}</table>"
                f"<details><summary>all {len(self.frame)} rows</summary>{table}</details></div>")
