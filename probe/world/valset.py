"""A labelled validation set for a world classifier, drawn from its training distribution (``probe world valset``).

``render_validation_set("biased", "val/biased", n=3000)`` reads the classifier's ``NAME.bias.json`` (its planted
cues and their strength, as ``probe world classifier`` saved them), draws ``n`` scenes with
:func:`probe.world.classifiers.sample_biased_attributes` at that strength, so every planted cue appears with its
training rate (the biased star is on grass 97% of the time, the other classes avoid grass as often), and writes them
in ImageFolder layout (``OUT/<shape>/<k>.png``) with ``OUT/attributes.csv``, the true attributes of every image.

One difference from training, on purpose: training hides the object in a share of the scenes (``hide``, so the
classifier has only the cue to learn from there); a validation image always shows the shape it is labelled with.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.errors import ProbeError
from probe.files import save_png, write_text

__all__ = ["ValidationSet", "ValidationImages", "render_validation_set", "validation_images", "classifier_bias",
           "validation_truth"]


MAX_SCENES = 200_000  # per validation set: rendered in memory before anything is written


def classifier_bias(classifier: str | Path) -> tuple[dict, float, Path]:
    """(planted bias, strength, .pt2 path) of a bundled classifier name ("biased", "clean") or a saved .pt2."""
    from probe.world.assets import CLASSIFIER_NAMES, bundled_classifier_path
    from probe.world.classifiers import parse_bias

    path = bundled_classifier_path(str(classifier)) if str(classifier) in CLASSIFIER_NAMES else Path(classifier)
    sidecar = Path(f"{path.with_suffix('')}.bias.json")  # as save_world_classifier names it: biased.v2.bias.json
    if not sidecar.is_file():
        raise ProbeError(f"{str(sidecar)!r} not found: a world classifier's training distribution is read from its "
                         "bias.json; pass 'biased', 'clean' or a .pt2 written by `probe world classifier`")
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        bias, strength = parse_bias(data.get("bias") or {}), float(data.get("strength", 0.0))
    except (ValueError, TypeError, AttributeError) as e:
        raise ProbeError(f"{str(sidecar)!r} is not a world classifier's bias file ({e}); re-save it with "
                         "`probe world classifier`") from e
    if not 0 <= strength <= 1:
        raise ProbeError(f"{str(sidecar)!r}: strength {strength} is outside [0, 1]; re-save it with `probe world classifier`")
    return bias, strength, path


@dataclass(frozen=True)
class ValidationSet:
    """What was written: the folder, the images per shape, and per planted cue how many of its class show it."""

    out: Path
    n: int
    per_class: dict = field(default_factory=dict)
    planted: dict = field(default_factory=dict)  # "star: background=grass" -> (shown, of)
    strength: float = 0.0

    def lines(self) -> list[str]:
        out = [f"{self.n} images in {self.out} (ImageFolder; true attributes in attributes.csv), drawn at strength "
               f"{self.strength:g}: " + ", ".join(f"{k} {v}" for k, v in self.per_class.items())]
        out += [f"planted {cue}: {shown} of {of} images show it" for cue, (shown, of) in self.planted.items()]
        return out

    def __repr__(self) -> str:
        return "\n".join(self.lines())


def _scenes(classifier: str | Path, n: int, seed: int, classes=None):
    """(images (m,3,32,32), attribute indices, bias, strength): the training sampler at the training strength, every
    object in view. ``classes``: keep only the scenes of these shapes among the ``n`` drawn (their attributes as the
    full draw has them, each scene's size, place and rotation too; the background textures are drawn afresh, as the
    texture generator runs over fewer scenes), so a check that needs one class's rare slice renders only it."""
    from probe.world.classifiers import _render, sample_biased_attributes
    from probe.world.scenes import SHAPES, check_seed

    seed = check_seed(seed)
    if n < len(SHAPES):
        raise ProbeError(f"n={n} is too small: render at least {len(SHAPES)} images (one per shape), e.g. --n 3000")
    if n > MAX_SCENES:  # every scene is rendered in memory first (12 KB each in float32)
        raise ProbeError(f"n={n} is more than {MAX_SCENES:,} scenes (about {MAX_SCENES * 3 * 32 * 32 * 4 // 10 ** 9:,} GB in memory); "
                         "render several sets with other --seed values instead")
    unknown = sorted(set(classes or ()) - set(SHAPES))
    if unknown:
        raise ProbeError(f"classes {unknown} are not shapes of the world; pass some of {', '.join(SHAPES)}")
    bias, strength, _ = classifier_bias(classifier)
    attrs = sample_biased_attributes(n, bias, strength, np.random.default_rng(seed))
    if classes:
        keep = np.isin(attrs["shape"], [SHAPES.index(c) for c in classes])
        attrs = {a: v[keep] for a, v in attrs.items()}
        if not keep.any():
            raise ProbeError(f"no {' or '.join(classes)} among the {n} scenes drawn with seed {seed}; raise n")
    return _render(attrs, seed + 1), attrs, bias, strength


class ValidationImages:
    """The same scenes in memory, as a torch-style map Dataset of (image (3,32,32) in [0,1], shape name): what
    ``confirm_run`` takes from Python without writing a folder (``classes``, ``targets`` and ``attributes`` too)."""

    def __init__(self, classifier: str | Path = "biased", n: int = 3000, seed: int = 54321, classes=None):
        from probe.world.scenes import SHAPES, VOCAB

        self.images, attrs, self.bias, self.strength = _scenes(classifier, n, seed, classes)
        self.classes = list(SHAPES)
        self.targets = [int(s) for s in attrs["shape"]]
        self.attributes = {a: [VOCAB[a][int(v)] for v in attrs[a]] for a in ("color", "background", "tag")}

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.images[i], self.classes[self.targets[i]]


def validation_images(classifier: str | Path = "biased", n: int = 3000, seed: int = 54321, classes=None):
    """:class:`ValidationImages` as a ``torch.utils.data.Dataset``; ``classes`` keeps only those shapes' scenes of the
    ``n`` drawn (``validation_images("biased", 10000, classes=["heart"])``: the about 1600 hearts of 10,000 scenes)."""
    import torch

    class _Dataset(ValidationImages, torch.utils.data.Dataset):
        pass

    return _Dataset(classifier, n, seed, classes)


def validation_truth(classifier: str | Path = "biased", n: int = 300, seed: int = 0, *, model=None):
    """The classifier's true effects in its validation set's population (``probe.world.true_effects`` on scenes whose
    cue attributes follow its bias.json as the validation scenes do): the yardstick of a real-data confirmation.

    A real-data gap averages the cue's effect over the contexts the data has; where the effect differs between
    contexts the two populations disagree (measured: a square's dependence on sand, +0.20 over uniform contexts, is
    +0.10 among the squares of its own training distribution, which are rarely blue). ``model``: the loaded
    classifier, if at hand (else loaded from ``classifier``'s .pt2)."""
    from probe.world.truth import ScenePool, true_effects

    bias, strength, path = classifier_bias(classifier)
    if model is None:
        from probe.classifiers import load_classifier

        model = load_classifier(str(path), device="cpu")
    return true_effects(model, pool=ScenePool(n, seed, bias=bias, strength=strength))


def render_validation_set(classifier: str | Path, out: str | Path, *, n: int = 3000, seed: int = 54321) -> ValidationSet:
    """Render ``n`` labelled scenes from ``classifier``'s training distribution into ``out`` (see the module)."""
    from probe.world.scenes import SHAPES, VOCAB

    # 1. a fresh folder
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ProbeError(f"--out {str(out)!r} exists and is not an empty folder; pass a new folder")
    # 2. the scenes: the classifier's training distribution at its strength, every object in view
    images, attrs, bias, strength = _scenes(classifier, n, seed)
    # 3. ImageFolder layout and the true attributes
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "label", "color", "background", "tag"])
    for k in range(n):
        shape = SHAPES[int(attrs["shape"][k])]
        rel = f"{shape}/{k:05d}.png"
        (out / shape).mkdir(exist_ok=True)
        save_png(out / rel, images[k])
        writer.writerow([rel, shape, *(VOCAB[a][int(attrs[a][k])] for a in ("color", "background", "tag"))])
    write_text(out / "attributes.csv", buffer.getvalue())
    per_class = {s: int((attrs["shape"] == i).sum()) for i, s in enumerate(SHAPES)}
    planted = {}
    for cls, cues in bias.items():
        mine = attrs["shape"] == SHAPES.index(cls)
        for attribute, value in cues.items():
            shown = int((attrs[attribute][mine] == VOCAB[attribute].index(value)).sum())
            planted[f"{cls}: {attribute}={value}"] = (shown, int(mine.sum()))
    return ValidationSet(out, n, per_class, planted, strength)
