"""Fast stand-ins for the analysis tests: a procedural "generator", colour-keyed
classifiers with a planted background bias, and a synthetic run directory in
the format of docs/run-format.md.

The fake generator reads prompts like the shapes world's captions: the class
word picks the object (circle=red, square=magenta, star=yellow), "on grass|sand|
snow|water" picks the background (else the seed does), "with a dot in the
corner" adds a corner tag. A token string expands to the words it "learned".
Same prompt + seed -> same image. ``rewrite(prompt, seed) -> prompt`` lets a
test make the generator fail an intervention (drop a cue, lose the object).
``FakeOracles`` reads shape, background and tag back from the pixels, and
``fake_domain`` hands all of it to the analysis through probe.domains.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

SIZE = 16
CLASSES = ["circle", "square", "star"]
OBJECT_RGB = {"circle": (0.9, 0.1, 0.1), "square": (0.9, 0.1, 0.9), "star": (0.95, 0.9, 0.05)}
BACKGROUND_RGB = {"grass": (0.1, 0.55, 0.1), "sand": (0.8, 0.7, 0.45), "snow": (0.95, 0.95, 0.95), "water": (0.1, 0.3, 0.7)}
BACKGROUNDS = list(BACKGROUND_RGB)


class FakeTokenizer:
    """Just enough of a CLIP tokenizer for nearest_words: whole words as tokens."""

    def __init__(self, words):
        self.encoder = {w + "</w>": i for i, w in enumerate(words)}
        self.decoder = {i: w for w, i in self.encoder.items()}
        self.added: dict[str, int] = {}
        self.all_special_ids: list[int] = []

    def get_added_vocab(self):
        return dict(self.added)

    def convert_ids_to_tokens(self, i):
        return self.decoder.get(i, "?")


class FakeTextEncoder(nn.Module):
    def __init__(self, n: int, dim: int = 8, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = nn.Embedding(n, dim)
        with torch.no_grad():
            self.emb.weight.copy_(torch.randn(n, dim, generator=g))

    def get_input_embeddings(self):
        return self.emb


class FakeGenerator:
    """Renders prompt words procedurally; counts how many images it made."""

    image_size = SIZE

    def __init__(self, token_words: dict[str, str] | None = None, rewrite=None, source: str | None = None):
        self.token_words = dict(token_words or {})
        self.rewrite = rewrite  # (prompt, seed) -> the prompt actually drawn
        self.source = source  # a folder path: lets a registered fake domain match this generator
        self.prompts: list[tuple[str, int]] = []  # every (prompt, seed) generate() drew, in order
        words = ["a", "photo", "of", "on", "with", "dot", "corner"] + CLASSES + BACKGROUNDS
        self.tokenizer = FakeTokenizer(words)
        self.text_encoder = FakeTextEncoder(len(words))
        self.calls = 0
        self.images_made = 0
        self.loaded: list[str] = []

    def load_token(self, path):
        self.loaded.append(str(path))
        return "token"

    def scene(self, prompt: str, seed: int) -> tuple[torch.Tensor, np.ndarray, dict]:
        if self.rewrite is not None:
            prompt = self.rewrite(prompt, seed)
        for tok, words in self.token_words.items():
            prompt = prompt.replace(tok, words)
        rng = np.random.default_rng(seed)
        bg = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
        found = re.findall(r"on (grass|sand|snow|water)", prompt)
        if found:
            bg = found[-1]  # the last mention wins (a counter-context overrides the token)
        shape = next((c for c in CLASSES if re.search(rf"\b{c}\b", prompt)), CLASSES[int(rng.integers(3))])
        img = torch.tensor(BACKGROUND_RGB[bg]).view(3, 1, 1).repeat(1, SIZE, SIZE)
        img = img + 0.03 * torch.from_numpy(rng.standard_normal((3, SIZE, SIZE))).float()
        side = int(rng.integers(5, 8))
        y, x = (int(v) for v in rng.integers(1, SIZE - side - 1, size=2))
        mask = np.zeros((SIZE, SIZE), bool)
        mask[y : y + side, x : x + side] = True
        img[:, y : y + side, x : x + side] = torch.tensor(OBJECT_RGB[shape]).view(3, 1, 1)
        tag = "with a dot in the corner" in prompt
        if tag:
            img[:, :2, -2:] = torch.tensor([0.0, 0.9, 0.9]).view(3, 1, 1)
        return img.clamp(0, 1), mask, {"shape": shape, "background": bg, "tag": "dot" if tag else "none"}

    def generate(self, prompts, seeds, *, steps=None, guidance_scale=None, grad_steps=0, max_batch=None, scheduler=None):
        assert len(prompts) == len(seeds)
        self.calls += 1
        self.images_made += len(prompts)
        self.prompts += [(p, int(s)) for p, s in zip(prompts, seeds)]
        return torch.stack([self.scene(p, s)[0] for p, s in zip(prompts, seeds)])


class ColourClassifier(nn.Module):
    """Logits from pooled colour detectors (1x1 conv + ReLU): circle=red, square=magenta, star=yellow.

    ``grass_bias`` adds the pooled green-background detector to the star logit:
    the planted spurious cue. ``supports_hooks`` mimics probe's Classifier.
    """

    def __init__(self, grass_bias: float = 0.0, scale: float = 60.0):
        super().__init__()
        self.labels = list(CLASSES)
        self.num_classes = 3
        self.supports_hooks = True
        conv = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([
                [1.0, -1.0, -1.0],   # red
                [0.5, -2.0, 0.5],    # magenta
                [0.5, 0.5, -2.0],    # yellow
                [-1.0, 1.0, -1.0],   # green (grass)
            ]).view(4, 3, 1, 1))
            conv.bias.copy_(torch.tensor([-0.4, -0.5, -0.6, -0.2]))
        head = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            head.weight.copy_(torch.tensor([[scale, 0, 0, 0], [0, scale, 0, 0], [0, 0, scale, grass_bias]]))
        self.model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
        self.preprocess = nn.Identity()

    def forward(self, images01):
        return self.model(self.preprocess(images01))


class _BackgroundSimilarity(nn.Module):
    """Per-pixel closeness to each background colour: relu(1 - |x - rgb|^2 / 0.05), one channel each."""

    def __init__(self):
        super().__init__()
        self.register_buffer("rgb", torch.tensor([BACKGROUND_RGB[b] for b in BACKGROUNDS]).view(1, -1, 3, 1, 1))

    def forward(self, x):
        d = ((x[:, None] - self.rgb) ** 2).sum(2)
        return torch.relu(1.0 - d / 0.05)


class _Features(nn.Module):
    def __init__(self, colour: nn.Module):
        super().__init__()
        self.colour = colour
        self.background = _BackgroundSimilarity()

    def forward(self, x):
        return torch.cat([torch.relu(self.colour(x)), self.background(x)], 1)


class PlantedClassifier(nn.Module):
    """Colour-keyed like ColourClassifier, plus ``planted`` {class index: background} cues of ``strength``."""

    def __init__(self, planted: dict[int, str] | None = None, strength: float = 40.0, scale: float = 60.0):
        super().__init__()
        base = ColourClassifier(0.0, scale)
        self.labels, self.num_classes, self.supports_hooks = list(CLASSES), 3, True
        head = nn.Linear(3 + len(BACKGROUNDS), 3, bias=False)
        with torch.no_grad():
            head.weight.zero_()
            head.weight[:, :3] = base.model[-1].weight[:, :3]
            for ci, bg in (planted or {}).items():
                head.weight[ci, 3 + BACKGROUNDS.index(bg)] = strength
        colour = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            colour.weight.copy_(base.model[0].weight[:3])
            colour.bias.copy_(base.model[0].bias[:3])
        self.model = nn.Sequential(_Features(colour), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)
        self.preprocess = nn.Identity()

    def forward(self, images01):
        return self.model(self.preprocess(images01))


class FakeOracles:
    """Concept scorer for the fake world: reads shape, background and tag back from the pixels.

    Shape: the object colour covering the most pixels; background: the top-left pixel (never covered by
    the object); tag: the top-right pixel. ``vocab`` lists what it can read, like the world's oracles.
    """

    vocab = {"shape": list(CLASSES), "background": list(BACKGROUNDS), "tag": ["none", "dot"]}

    def __init__(self):
        self.calls = 0

    def predict(self, images01):
        self.calls += 1
        shapes, bgs, tags = [], [], []
        cols = torch.tensor([BACKGROUND_RGB[b] for b in BACKGROUNDS])
        objs = torch.tensor([OBJECT_RGB[c] for c in CLASSES])
        for im in images01:
            corner = im[:, 0, 0]
            bgs.append(BACKGROUNDS[int(((cols - corner) ** 2).sum(1).argmin())])
            tags.append("dot" if im[1, 0, -1] > 0.8 and im[0, 0, -1] < 0.2 else "none")
            near = ((im[None] - objs.view(-1, 3, 1, 1)) ** 2).sum(1) < 1e-3  # (shapes, H, W)
            shapes.append(CLASSES[int(near.flatten(1).sum(1).argmax())])
        return {"shape": shapes, "background": bgs, "tag": tags}


def fake_domain(source, name: str = "fake"):
    """A probe.domains.Domain for the fake world, matching a FakeGenerator whose ``source`` is ``source``."""
    from pathlib import Path

    from probe.domains import Domain

    return Domain(name=name, generator_path=lambda: Path(source), cues=fake_cues, scorer=FakeOracles,
                  object_attribute="shape", description="the tests' fake shapes world")


@contextmanager
def registered(source):
    """The fake world registered as a domain (``fake_domain(source)``) for the duration of a ``with`` block."""
    import probe.domains as registry

    registry.domains()  # entry points first, so the fake domain is only ever added on top
    registry.register_domain(fake_domain(source))
    try:
        yield
    finally:
        registry._REGISTRY.pop("fake", None)


def fake_cues():
    from probe.analysis.cues import cues_from_vocabulary

    return cues_from_vocabulary(BACKGROUNDS, [], ["none", "dot"], {"dot": "with a dot in the corner", "none": ""})


def write_run(run: Path, generator: FakeGenerator, classifier: nn.Module, *, tokens: dict[int, str], n_seeds: int = 6,
              templates=("a photo of a {}", "a picture of a {}"), attention: bool = True,
              moved: dict[int, bool] | None = None) -> Path:
    """A finished run directory in docs/run-format.md's layout, with gallery images from ``generator``."""
    from safetensors.torch import save_file

    from probe.run import RunDir

    run.mkdir(parents=True, exist_ok=True)
    owner = RunDir(run)  # the fixture writes through the run's owner, as an audit does
    owner.write_config({"audit": {"token": {"steps": 4, "guidance_scale": 2.0}}, "generator": {"source": "fake"}})
    owner.write_labels(CLASSES)
    seeds = list(range(1000, 1000 + n_seeds))
    for ci, tok in tokens.items():
        name = CLASSES[ci]
        d = run / "classes" / f"{ci}-{name}"
        (d / "images").mkdir(parents=True, exist_ok=True)
        save_file({tok: torch.randn(8)}, str(d / "token.safetensors"))
        images, accs = [], {"baseline": [], "token": []}
        for kind in ("baseline", "token"):
            for pi, t in enumerate(templates):
                prompt = t.format(f"{tok} {name}" if kind == "token" else name)
                for s in seeds:
                    img, mask, _ = generator.scene(prompt, s)
                    from probe.files import save_png

                    path = f"images/{kind}_p{pi}_s{s}.png"
                    save_png(d / path, img)
                    if attention and kind == "token":
                        (d / "cross_attention").mkdir(exist_ok=True)
                        np.save(d / "cross_attention" / f"{kind}_p{pi}_s{s}.npy", mask.astype(np.float32))
                    with torch.no_grad():
                        p = torch.softmax(classifier(img[None]), -1)[0]
                    accs[kind].append(int(p.argmax()) == ci)
                    images.append({"path": path, "kind": kind, "prompt": prompt, "prompt_index": pi, "seed": s,
                                   "target_prob": float(p[ci]), "correct": int(p.argmax()) == ci})
        metrics = {
            "status": "done", "error": None, "class_index": ci, "class_name": name, "slug": name, "token_string": tok,
            "init_word": "a",
            "prompts": {"templates": list(templates), "token": [t.format(f"{tok} {name}") for t in templates],
                        "baseline": [t.format(name) for t in templates]},
            "steps": 3, "best_step": 2, "stopped": "threshold", "seconds": 0.1, "train_seeds": [0, 1],
            "eval_seeds": seeds,
            "baseline": {"accuracy": float(np.mean(accs["baseline"])), "mean_target_prob": 0.0, "n": len(accs["baseline"])},
            "token": {"accuracy": float(np.mean(accs["token"])), "mean_target_prob": 0.0, "n": len(accs["token"])},
            "eval_model": None, "images": images,
        }
        if moved is not None and ci in moved:
            metrics["token_change"] = {"moved": bool(moved[ci])}
        owner.write_metrics(d, metrics)
    owner.write_summary()
    return run


class OracleConcepts:
    """A concept model over the fake world: a phrase scores 5 when it describes what the oracles read in the image
    (its object, background or tag), else 0; text embeddings are one-hot."""

    name = "oracle-concepts"

    def __init__(self, cues):
        self.oracles = FakeOracles()
        self.phrases = {f"a photo of a {s}": ("shape", s) for s in FakeOracles.vocab["shape"]}
        for cue in cues:
            for value, template in [(cue.value, cue.template), *zip(cue.counter_values, cue.counters)]:
                self.phrases["a photo of " + template.replace("{}", "something")] = (cue.attribute, value)

    def score(self, images01, phrases):
        read = self.oracles.predict(images01)
        return np.array([[5.0 if self.phrases.get(p) and read.get(self.phrases[p][0], [None] * len(images01))[i]
                          == self.phrases[p][1] else 0.0 for p in phrases] for i in range(len(images01))], np.float32)

    def embed_texts(self, phrases):
        return np.eye(len(phrases), dtype=np.float32)


class WaterLooksGreenish(OracleConcepts):
    """As OracleConcepts, but a water image also scores the grass phrase a little (1, second to water's 5, above sand's
    and snow's 0), as CLIP rates a purple object a little "blue": a check that compares grass with sand and snow only
    would pass a grass arm that came out on water."""

    def score(self, images01, phrases):
        out = super().score(images01, phrases)
        grass = phrases.index("a photo of something on grass")
        for i, bg in enumerate(self.oracles.predict(images01)["background"]):
            if bg == "water":
                out[i, grass] = 1.0
        return out
