"""The shapes world's classifiers: small timm CNNs over the shape classes, optionally with planted cues.

``train_world_classifier(bias={"star": {"background": "grass"}}, strength=0.95)`` renders training
scenes in which each biased class shows its cue value with probability ``strength`` (and the other
classes avoid the cue values with the same probability), trains a timm CNN on them, and
``save_world_classifier`` writes it as a user would hand it over: a torch.export program (``.pt2``,
dynamic batch) with ``NAME.labels.txt``, ``NAME.data.json`` and ``NAME.bias.json`` next to it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from probe.errors import ProbeError
from probe.world.scenes import SHAPES, VOCAB, WorldError, check_seed, render_batch, sample_attributes

CUE_ATTRIBUTES = ("color", "background", "tag")
DEFAULT_ARCH = "test_resnet"
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


def parse_bias(spec: str | Mapping[str, Any] | None) -> dict[str, dict[str, str]]:
    """Validate a bias: ``{"star": {"background": "grass"}}`` or the string "star=grass,heart=dot".

    In the string form the attribute is inferred from the value (values are unique across
    color, background and tag).
    """
    if spec is None or spec == "" or spec == {}:
        return {}
    if isinstance(spec, str):
        out: dict[str, dict[str, str]] = {}
        for item in spec.split(","):
            if "=" not in item:
                raise WorldError(f"bias item {item!r} is not CLASS=VALUE: write e.g. 'star=grass,heart=dot'")
            cls, value = (x.strip() for x in item.split("=", 1))
            attrs = [a for a in CUE_ATTRIBUTES if value in VOCAB[a]]
            if not attrs:
                raise WorldError(f"bias value {value!r} is no color, background or tag: use one of "
                                 f"{[v for a in CUE_ATTRIBUTES for v in VOCAB[a] if v != 'none']}")
            given = out.setdefault(cls, {})
            if attrs[0] in given and given[attrs[0]] != value:
                raise WorldError(f"bias gives {cls!r} two {attrs[0]}s ({given[attrs[0]]}, {value}): give each class "
                                 f"one value per attribute, e.g. '{cls}={given[attrs[0]]}'")
            given[attrs[0]] = value
        spec = out
    if not isinstance(spec, Mapping):
        raise WorldError(f"a bias is CLASS=VALUE text or a mapping of class to {{attribute: value}}, not {spec!r}")
    bias: dict[str, dict[str, str]] = {}
    for cls, cues in spec.items():
        if cls not in SHAPES:
            raise WorldError(f"bias class {cls!r} is not a shape: use one of {list(SHAPES)}")
        if not isinstance(cues, Mapping):
            raise WorldError(f"bias of {cls!r} is {cues!r}, not a mapping of attribute to value: write e.g. "
                             f"{{{cls!r}: {{'background': 'grass'}}}}")
        for attr, value in cues.items():
            if attr not in CUE_ATTRIBUTES:
                raise WorldError(f"bias attribute {attr!r} for {cls!r}: use one of {list(CUE_ATTRIBUTES)}")
            if value not in VOCAB[attr] or value == "none":
                raise WorldError(f"bias value {attr}={value!r} for {cls!r}: use one of {[v for v in VOCAB[attr] if v != 'none']}")
        bias[cls] = dict(cues)
    claimed: dict[tuple[str, str], str] = {}
    for cls, cues in bias.items():
        for attr, value in cues.items():
            if (attr, value) in claimed:
                raise WorldError(f"bias cue {attr}={value} is given to both {claimed[(attr, value)]!r} and {cls!r}: give each cue to one class")
            claimed[(attr, value)] = cls
    return bias


def sample_biased_attributes(n: int, bias: Mapping[str, Mapping[str, str]], strength: float,
                             rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Attributes with uniform shapes whose cue attributes follow ``bias`` at ``strength``.

    A class with a cue shows its value with probability ``strength`` (else another value);
    every other class avoids all claimed values of that attribute with probability ``strength``.
    With an empty bias (or strength 0) this is the uniform distribution.
    """
    return bias_contexts(sample_attributes(n, rng), bias, strength, rng)


def _redraw_rule(shape: str, attr: str, bias: Mapping[str, Mapping[str, str]]) -> tuple[list[str], list[str] | None] | None:
    """How :func:`sample_biased_attributes` draws ``shape``'s value of ``attr``, the one statement of the training
    distribution that the sampler (:func:`bias_contexts`) and the exact probabilities (:func:`bias_shares`) both
    read: ``(follow, otherwise)``: with probability ``strength`` a value drawn uniformly from ``follow``, else one
    drawn uniformly from ``otherwise`` (None: the value drawn uniformly over the whole vocabulary is kept); None when
    nothing redraws it (no class claims a value of ``attr``, or every value is claimed and ``shape`` claims none)."""
    names = VOCAB[attr]
    cue_of = {c: cues[attr] for c, cues in bias.items() if attr in cues}
    if shape in cue_of:
        return [cue_of[shape]], [v for v in names if v != cue_of[shape]]
    free = [v for v in names if v not in set(cue_of.values())]
    return (free, None) if cue_of and free else None


def bias_shares(bias: Mapping[str, Mapping[str, str]], strength: float) -> dict[tuple[str, str, str], float]:
    """{(shape, attribute, value): probability} of the scenes :func:`sample_biased_attributes` draws: exact, so a
    value a shape shows once in a thousand scenes weighs what it should (a sample of a few hundred would say 0)."""
    out = {}
    for attr in CUE_ATTRIBUTES:
        names = VOCAB[attr]
        for shape in SHAPES:
            rule = _redraw_rule(shape, attr, bias)
            for v in names:
                if rule is None:
                    p = 1 / len(names)
                else:
                    follow, otherwise = rule
                    rest = 1 / len(names) if otherwise is None else (v in otherwise) / len(otherwise)
                    p = strength * (v in follow) / len(follow) + (1 - strength) * rest
                out[(shape, attr, v)] = float(p)
    return out


def bias_contexts(a: dict[str, np.ndarray], bias: Mapping[str, Mapping[str, str]], strength: float,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``a`` (attribute index arrays, shapes already drawn) with its cue attributes redrawn per shape as
    :func:`sample_biased_attributes` draws them (:func:`_redraw_rule`); changed in place and returned. Also how a
    truth table measures effects in a classifier's own training population (``probe.world.truth.ScenePool(...,
    bias=...)``). A one-value draw takes nothing from ``rng`` (the order every trained world classifier was drawn in)."""
    n = len(a["shape"])
    for attr in CUE_ATTRIBUTES:
        names = VOCAB[attr]
        if not any(attr in cues for cues in bias.values()):
            continue
        rules = {}  # per shape index: (follow, otherwise) as value indices
        for s, shape in enumerate(SHAPES):
            rule = _redraw_rule(shape, attr, bias)
            rules[s] = None if rule is None else tuple(None if pool is None else [names.index(v) for v in pool]
                                                       for pool in rule)
        follow = rng.random(n) < strength
        for i in range(n):
            rule = rules[int(a["shape"][i])]
            pool = None if rule is None else rule[0] if follow[i] else rule[1]
            if pool is not None:
                a[attr][i] = pool[0] if len(pool) == 1 else rng.choice(pool)
    return a


@dataclass(frozen=True)
class ClassifierConfig:
    """How to train a world classifier."""

    bias: dict = field(default_factory=dict)
    strength: float = 0.95
    arch: str = DEFAULT_ARCH
    steps: int = 1200
    batch_size: int = 128
    lr: float = 3e-3
    train_size: int = 24_000
    pool: int = 1  # the model sees the image average-pooled by this factor (a low-resolution "thumbnail" model)
    hide: float = 0.0  # fraction of training scenes whose object is out of view (only cues left to learn from)
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "bias", parse_bias(self.bias))
        if not 0 <= self.strength <= 1:
            raise ProbeError(f"strength={self.strength} must be in [0, 1] (0.95 plants a strong cue)")
        if self.pool not in (1, 2, 4, 8):
            raise ProbeError(f"pool={self.pool} must be 1, 2, 4 or 8 (a divisor of the 32-pixel input)")
        if not 0 <= self.hide < 1:
            raise ProbeError(f"hide={self.hide} must be in [0, 1)")
        check_seed(self.seed)
        if self.steps < 1 or self.batch_size < 1 or self.train_size < self.batch_size:
            raise ProbeError(f"steps={self.steps}, batch_size={self.batch_size}, train_size={self.train_size}: "
                             "need steps >= 1 and train_size >= batch_size >= 1")


def _render(attrs, seed: int, chunk: int = 1024) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    n = len(attrs["shape"])
    out = []
    for i in range(0, n, chunk):
        img, _ = render_batch({k: v[i:i + chunk] for k, v in attrs.items()}, generator=gen)
        out.append(img)
    return torch.cat(out)


def build_classifier(arch: str = DEFAULT_ARCH, num_classes: int = len(SHAPES)) -> torch.nn.Module:
    import timm

    try:
        return timm.create_model(arch, pretrained=False, num_classes=num_classes)
    except Exception as e:  # timm raises RuntimeError for unknown names
        raise ProbeError(f"arch={arch!r} is not a timm architecture: try {DEFAULT_ARCH!r}") from e


class Thumbnail(torch.nn.Module):
    """A network that looks at an average-pooled thumbnail of its input (part of the saved program)."""

    def __init__(self, net, pool: int):
        super().__init__()
        self.net = net
        self.pool = pool

    def forward(self, x):
        return self.net(F.avg_pool2d(x, self.pool))


class _Normalized(torch.nn.Module):
    """Training wrapper: the saved model takes normalised input, like a timm model does."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x01):
        return self.net((x01 - self.mean) / self.std)


def train_world_classifier(config: ClassifierConfig, log=print) -> torch.nn.Module:
    """Train a timm CNN over the shape classes on renders drawn with ``config.bias``; returns it in eval mode."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    t0 = time.time()
    attrs = sample_biased_attributes(config.train_size, config.bias, config.strength, rng)
    if config.hide > 0:  # the labelled object is out of view: a vanishing size draws nothing
        attrs["size"] = np.where(rng.random(config.train_size) < config.hide, 1e-6, attrs["size"])
    images = _render(attrs, config.seed + 1)
    labels = torch.as_tensor(attrs["shape"])
    log(f"rendered {len(labels)} training scenes in {time.time() - t0:.1f} s")
    net = build_classifier(config.arch)
    model = _Normalized(Thumbnail(net, config.pool) if config.pool > 1 else net)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.15)
    model.train()
    for step in range(config.steps):
        idx = torch.randint(0, len(labels), (config.batch_size,))
        x = images[idx]
        flip = torch.rand(len(idx)) < 0.5  # horizontal flips keep every shape's class
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        x = (x + 0.02 * torch.randn_like(x)).clamp(0, 1)
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 200 == 0 or step == config.steps - 1:
            log(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f} s)")
    return model.eval()


@torch.no_grad()
def evaluate_classifier(model, bias: Mapping[str, Mapping[str, str]], strength: float, n: int = 1200,
                        seed: int = 12345) -> dict[str, Any]:
    """Accuracy on in-distribution data (same bias) and on decorrelated data (uniform attributes).

    Returns {"in_distribution": acc, "decorrelated": acc, "per_class": {name: (acc_in, acc_decor)}}.
    ``model`` takes images in [0, 1] (a saved program or a trained model).
    """
    out: dict[str, Any] = {"per_class": {}}
    preds = {}
    for name, b, s in (("in_distribution", bias, strength), ("decorrelated", {}, 0.0)):
        rng = np.random.default_rng(seed + (0 if name == "in_distribution" else 1))
        attrs = sample_biased_attributes(n, b, s, rng)
        images = _render(attrs, seed + 7)
        logits = torch.cat([model(images[i:i + 256]) for i in range(0, n, 256)])
        pred = logits.argmax(-1).numpy()
        preds[name] = (pred, attrs["shape"])
        out[name] = float((pred == attrs["shape"]).mean())
    for k, cls in enumerate(SHAPES):
        out["per_class"][cls] = tuple(float((p[y == k] == k).mean()) for p, y in preds.values())
    return out


def save_world_classifier(model, path: str | Path, *, bias: Mapping | None = None, strength: float = 0.0,
                          config: ClassifierConfig | None = None, metrics: Mapping | None = None) -> Path:
    """Write ``path`` (.pt2, torch.export, dynamic batch) and its labels/data/bias sidecars."""
    path = Path(path)
    if path.suffix != ".pt2":
        raise ProbeError(f"out={str(path)!r} must end in .pt2 (a torch.export program)")
    path.parent.mkdir(parents=True, exist_ok=True)
    net = (model.net if isinstance(model, _Normalized) else model).eval()
    example = torch.randn(2, 3, 32, 32)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    stem = path.with_suffix("")
    Path(f"{stem}.labels.txt").write_text("\n".join(SHAPES) + "\n")
    Path(f"{stem}.data.json").write_text(json.dumps({
        "input_size": [3, 32, 32], "mean": list(MEAN), "std": list(STD),
        "interpolation": "bilinear", "crop_pct": 1.0,
    }, indent=2) + "\n")
    Path(f"{stem}.bias.json").write_text(json.dumps({
        "bias": dict(bias or {}), "strength": strength,
        "config": asdict(config) if config else None, "metrics": dict(metrics or {}),
    }, indent=2) + "\n")
    return path


def load_world_classifier(path: str | Path) -> torch.nn.Module:
    """Load a saved world classifier as a module taking images in [0, 1] (normalising per its data.json)."""
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"classifier {str(path)!r} not found: train one with `probe world classifier --out {path}`")
    data = json.loads(Path(f"{path.with_suffix('')}.data.json").read_text())
    module = torch.export.load(str(path)).module()
    wrapped = _Normalized(module)
    wrapped.mean.copy_(torch.tensor(data["mean"]).view(1, 3, 1, 1))
    wrapped.std.copy_(torch.tensor(data["std"]).view(1, 3, 1, 1))
    return wrapped


def format_metrics(name: str, metrics: Mapping[str, Any], bias: Mapping | None = None) -> str:
    lines = [f"{name}: in-distribution {metrics['in_distribution']:.3f}, decorrelated {metrics['decorrelated']:.3f}",
             f"  {'class':10s} {'cue':22s} {'in-dist':>8s} {'decorr':>8s}"]
    for cls, (a_in, a_de) in metrics["per_class"].items():
        cue = ",".join(f"{a}={v}" for a, v in (bias or {}).get(cls, {}).items()) or "-"
        lines.append(f"  {cls:10s} {cue:22s} {a_in:8.3f} {a_de:8.3f}")
    return "\n".join(lines)


BUNDLED_BIAS = {"star": {"background": "grass"}, "triangle": {"background": "water"}, "heart": {"tag": "dot"}}


BUNDLED_RECIPE = dict(strength=0.97, pool=4, hide=0.6, steps=800, train_size=16_000)


def train_bundled(out_dir: str | Path, log=print, **overrides) -> dict[str, Any]:
    """Train and save the bundled ``clean`` and ``biased`` classifiers into ``out_dir``.

    Both use the same recipe, ``BUNDLED_RECIPE`` (a thumbnail-resolution test_resnet; 60% of the training scenes
    show no object, ``hide=0.6``, as in photos where the labelled thing is out of view); only ``biased`` plants cues.
    """
    recipe = dict(BUNDLED_RECIPE, **overrides)
    strength = recipe.pop("strength")
    results = {}
    for name, bias, s, seed in (("clean", {}, 0.0, 1), ("biased", BUNDLED_BIAS, strength, 2)):
        cfg = ClassifierConfig(bias=bias, strength=s, seed=seed, **recipe)
        model = train_world_classifier(cfg, log=log)
        path = save_world_classifier(model, Path(out_dir) / f"{name}.pt2", bias=cfg.bias, strength=s, config=cfg)
        saved = load_world_classifier(path)  # measure the file a user gets, not the training object
        metrics = evaluate_classifier(saved, BUNDLED_BIAS, strength)
        metrics["in_distribution_split"] = f"BUNDLED_BIAS at strength {strength}"
        save_world_classifier(model, path, bias=cfg.bias, strength=s, config=cfg, metrics=metrics)
        log(format_metrics(name, metrics, cfg.bias or BUNDLED_BIAS))
        results[name] = metrics
    return results


def main(argv: list[str] | None = None):
    import argparse

    p = argparse.ArgumentParser(prog="python -m probe.world.classifiers", description="Train the bundled world classifiers.")
    p.add_argument("--out", default=str(Path(__file__).parent / "assets" / "classifiers"))
    a = p.parse_args(argv)
    train_bundled(a.out)


if __name__ == "__main__":
    main()
