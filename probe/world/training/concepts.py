"""Train the shapes world's own concept model: a tiny transformers ``CLIPModel`` that reads renders zero-shot.

It is the world's stand-in for ``openai/clip-vit-large-patch14``: saved in the plain transformers CLIP layout
(``CLIPModel.from_pretrained(folder)`` and ``CLIPProcessor.from_pretrained(folder)``), so ``--concepts world``
exercises exactly the code a user's downloaded CLIP goes through (probe/concepts/, ConceptModelCheck).

Steps (each run is seeded, time-budgeted and resumable from ``OUT/state.pt``):

1. tokenizer - the world's byte-level BPE (probe.generators.tokenizer.write_tokenizer) over the caption words plus the
               words of the other phrasings below, so none of them falls back to bytes
2. pool      - a pool of rendered scenes (attributes known), re-used with fresh captions and augmentations
3. train     - contrastive image-caption loss with soft targets: a caption matches every image of the batch
               whose attributes it states (a partial caption such as "something on grass" has many positives),
               in both directions, like CLIP otherwise (learned temperature, AdamW, cosine schedule)
4. export    - ``save_pretrained`` of the model (safetensors) and a CLIPProcessor into ``--export DIR``
5. evaluate  - zero-shot accuracy per attribute on held-out renders, through ``load_concepts`` and
               ConceptModelCheck's own phrases (what an audit asks) and through the other phrasings

Usage: ``python -m probe.world.training.concepts --out checkpoints/world-concepts --budget 900
--export probe/world/assets/concepts --results benchmarks/results/world_concepts.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from probe.errors import ProbeError
from probe.world.scenes import COLORS, SHAPES, VOCAB, render_batch, sample_attributes

__all__ = ["ConceptTrainConfig", "train_concepts", "export_concepts", "evaluate_concepts", "OTHER_PHRASINGS"]

ATTRIBUTES = ("shape", "color", "background", "tag")

#: Ways to say a context that the world's cue list does not use (the cue list says "{} on grass", "red {}",
#: "{} with a dot in the corner"); the model learns them so a user's own wording is read too.
OTHER_PHRASINGS: dict[str, dict[str, tuple[str, ...]]] = {
    "background": {
        "grass": ("on a grassy background", "on green grass", "in a green field", "on a lawn",
                  "with grass behind it", "in the grass"),
        "water": ("on a water background", "in the water", "on blue water", "floating on a lake",
                  "over the sea", "with water behind it"),
        "sand": ("on a sandy background", "on a beach", "in the desert", "on yellow sand",
                 "with sand behind it", "in the sand"),
        "snow": ("on a snowy background", "in the snow", "on white snow", "in winter snow",
                 "with snow behind it", "on a snowfield"),
        "wood": ("on a wooden background", "on a wooden table", "on wooden planks", "on a wood floor",
                 "with wood behind it", "on timber"),
    },
    "color": {c: (f"colored {c}", f"painted {c}", f"in {c}") for c in COLORS},
    "tag": {
        "dot": ("with a pink dot in the corner", "marked with a dot", "with a small dot", "with a spot in the corner"),
        "bar": ("with a cyan bar in the corner", "marked with a bar", "with a small bar", "with a stripe in the corner"),
        "none": ("with a clean corner", "with no mark", "without a tag", "unmarked"),
    },
}

#: The caption grammar's own phrases (probe.world.text and the cue list's templates).
_BACKGROUND_PHRASES = ("on {}", "on a {} background")
_TAG_PHRASES = {"none": "with no tag", "dot": "with a dot in the corner", "bar": "with a bar in the corner"}
_SUBJECTS = ("something", "something", "object", "shape", "thing")
_PREFIXES = ("a photo of", "a picture of", "an image of", "a close-up photo of", "")


class ConceptTrainError(ProbeError):
    """The concept model's training settings or files are unusable."""


@dataclass(frozen=True)
class ConceptTrainConfig:
    """Settings of one training run of the world concept model (saved in the checkpoint)."""

    out: str = "checkpoints/world-concepts"
    seed: int = 0
    budget_s: float = 900.0  # wall-clock budget of this invocation; a later one resumes
    steps: int = 1200
    batch: int = 256
    lr: float = 1e-3
    warmup: int = 60
    pool: int = 24_000  # rendered scenes re-used with fresh captions and augmentations
    hidden: int = 128
    vision_layers: int = 4
    text_layers: int = 3
    patch: int = 8
    projection: int = 64
    threads: int = 1  # other jobs share the machine's cores
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        bad = {k: v for k, v in {"steps": self.steps, "batch": self.batch, "pool": self.pool, "hidden": self.hidden,
                                 "threads": self.threads, "checkpoint_every": self.checkpoint_every}.items() if v < 1}
        if bad:
            raise ConceptTrainError(f"{', '.join(f'{k}={v}' for k, v in bad.items())} must be at least 1")
        if 32 % self.patch:
            raise ConceptTrainError(f"patch={self.patch} must divide the world's 32-pixel renders (4, 8 or 16)")
        if not self.lr > 0 or self.budget_s <= 0:
            raise ConceptTrainError(f"lr={self.lr} and budget_s={self.budget_s} must be positive")


# ---------------------------------------------------------------------------
# 1. Tokenizer and model.
# ---------------------------------------------------------------------------

def vocabulary_words() -> list[str]:
    """Every word a training caption can contain: the world's caption words and the other phrasings'."""
    from probe.world.text import caption_words

    words = set(caption_words())
    texts = [*_SUBJECTS, *_PREFIXES, *_TAG_PHRASES.values(), "something colored painted in"]
    for values in OTHER_PHRASINGS.values():
        for phrases in values.values():
            texts += list(phrases)
    for text in texts:
        words.update(w for w in text.replace("-", " ").split() if w)
    return sorted(words)


def build_model(tokenizer, config: ConceptTrainConfig):
    from transformers import CLIPConfig, CLIPModel

    tower = dict(hidden_size=config.hidden, intermediate_size=3 * config.hidden, num_attention_heads=4,
                 hidden_act="quick_gelu")
    clip_config = CLIPConfig(
        text_config=dict(tower, num_hidden_layers=config.text_layers, vocab_size=len(tokenizer),
                         max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(tower, num_hidden_layers=config.vision_layers, image_size=32, patch_size=config.patch),
        projection_dim=config.projection,
    )
    return CLIPModel(clip_config)


def make_processor(tokenizer):
    from transformers import CLIPImageProcessor, CLIPProcessor

    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return CLIPProcessor(image_processor=images, tokenizer=tokenizer)


# ---------------------------------------------------------------------------
# 2. Captions with known constraints.
# ---------------------------------------------------------------------------

def random_caption(attrs: dict[str, int], rng: np.random.Generator) -> tuple[str, dict[str, int]]:
    """A caption of one scene (attribute indices) and the attributes it states ({attribute: index}).

    A third of the captions state exactly one attribute, as the intervention check's phrases do ("a photo of
    something on grass"); the rest state the shape and a random subset of the others. A third of the stated
    contexts use the other phrasings.
    """
    single = rng.random() < 1 / 3
    if single:
        stated = {str(rng.choice(ATTRIBUTES)): True}
    else:
        stated = {"shape": True, **{a: bool(rng.random() < 0.55) for a in ("color", "background", "tag")}}
    names = {a: VOCAB[a][attrs[a]] for a in ATTRIBUTES}
    other = lambda: rng.random() < 1 / 3  # noqa: E731

    subject = names["shape"] if stated.get("shape") else str(rng.choice(_SUBJECTS))
    color, color_after = "", False
    if stated.get("color"):
        color_after = other()
        color = str(rng.choice(OTHER_PHRASINGS["color"][names["color"]])) if color_after else names["color"]
    prefix = str(rng.choice(_PREFIXES))
    before = f"{color} {subject}" if color and not color_after else subject
    if subject != "something":  # "a red star", "an object"; the check's own phrase is "red something"
        before = ("an " if before[0] in "aeiou" else "a ") + before
    head = f"{prefix} {before}" + (f" {color}" if color_after else "")
    words = [head.strip()]
    if stated.get("background"):
        bg = names["background"]
        words.append(str(rng.choice(OTHER_PHRASINGS["background"][bg])) if other()
                     else str(rng.choice(_BACKGROUND_PHRASES)).format(bg))
    if stated.get("tag"):
        tag = names["tag"]
        words.append(str(rng.choice(OTHER_PHRASINGS["tag"][tag])) if other() else _TAG_PHRASES[tag])
    return " ".join(words), {a: attrs[a] for a, on in stated.items() if on}


def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Generator-like degradations of renders: a light blur on some, pixel noise and a small colour jitter."""
    b = images.shape[0]
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    pick = (torch.rand(b, 1, 1, 1, generator=gen) < 0.5).float()
    out = pick * blurred + (1 - pick) * images
    out = out * (1 + 0.06 * (torch.rand(b, 3, 1, 1, generator=gen) - 0.5))
    out = out + 0.03 * torch.randn(out.shape, generator=gen)
    return out.clamp(0, 1)


def soft_targets(stated: list[dict[str, int]], attrs: dict[str, np.ndarray]) -> torch.Tensor:
    """(captions, images) 0/1: caption i fits image j when every attribute it states has j's value."""
    n = len(stated)
    fits = np.ones((n, n), dtype=bool)
    for i, constraint in enumerate(stated):
        for a, v in constraint.items():
            fits[i] &= attrs[a] == v
    return torch.from_numpy(fits.astype(np.float32))


# ---------------------------------------------------------------------------
# 3. Training.
# ---------------------------------------------------------------------------

def _normalise(images: torch.Tensor, processor) -> torch.Tensor:
    mean = torch.tensor(processor.image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_processor.image_std).view(1, 3, 1, 1)
    return (images - mean) / std


def _render_pool(n: int, seed: int) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    attrs = sample_attributes(n, rng)
    gen = torch.Generator().manual_seed(seed)
    images = torch.cat([render_batch({k: v[i:i + 512] for k, v in attrs.items()}, generator=gen)[0]
                        for i in range(0, n, 512)])
    return images, {a: np.asarray(attrs[a]) for a in ATTRIBUTES}


def train_concepts(config: ConceptTrainConfig, *, log=print) -> tuple[object, object, dict]:
    """Train (or resume) the concept model; returns (model, processor, checkpoint state)."""
    from probe.generators.tokenizer import write_tokenizer

    torch.set_num_threads(config.threads)
    started = time.time()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    # 1. tokenizer and model (a checkpoint restores both the weights and where training stopped)
    tokenizer = write_tokenizer(out / "tokenizer", vocabulary_words())
    processor = make_processor(tokenizer)
    torch.manual_seed(config.seed)
    model = build_model(tokenizer, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.05)
    state = {"step": 0, "losses": [], "config": asdict(config), "seconds": 0.0}
    path = out / "state.pt"
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        log(f"resumed at step {state['step']} ({state['seconds']:.0f} s trained)")
    before = float(state["seconds"])
    state["config"] = asdict(config)  # a resume may shorten the schedule (--steps) to end within a budget
    if state["step"]:
        state.setdefault("resumed_at", []).append(state["step"])
    # 2. the pool of renders (the same pool on every resume: it comes from the seed)
    t = time.time()
    pool, pool_attrs = _render_pool(config.pool, config.seed)
    log(f"rendered a pool of {config.pool} scenes in {time.time() - t:.0f} s")

    def save():
        state["seconds"] = before + time.time() - started
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state},
                   path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)

    # 3. the contrastive loop with soft targets
    model.train()
    while state["step"] < config.steps and time.time() - started < config.budget_s:
        step = state["step"]
        rng = np.random.default_rng([config.seed, step])
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        idx = rng.choice(config.pool, size=config.batch, replace=False)
        attrs = {a: v[idx] for a, v in pool_attrs.items()}
        captions, stated = zip(*(random_caption({a: int(attrs[a][i]) for a in ATTRIBUTES}, rng)
                                 for i in range(config.batch)))
        tokens = tokenizer(list(captions), padding=True, return_tensors="pt")
        images = _normalise(augment(pool[idx], gen), processor)
        lr = config.lr * min(1.0, (step + 1) / config.warmup) * 0.5 * (1 + math.cos(math.pi * step / config.steps))
        for g in optimizer.param_groups:
            g["lr"] = lr
        out_ = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, pixel_values=images)
        logits = out_.logits_per_text  # (captions, images)
        fits = soft_targets(list(stated), attrs)
        loss = 0.5 * (-(fits / fits.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
                      - (fits.T / fits.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        state["step"] = step + 1
        state["losses"].append(float(loss.detach()))
        if (step + 1) % 25 == 0:
            recent = state["losses"][-25:]
            log(f"step {step + 1}/{config.steps} loss {sum(recent) / len(recent):.3f} lr {lr:.2e} "
                f"scale {float(model.logit_scale.detach().exp()):.1f} ({time.time() - started:.0f} s)")
        if (step + 1) % config.checkpoint_every == 0:
            save()
    save()
    model.eval()
    return model, processor, state


# ---------------------------------------------------------------------------
# 4. Export.
# ---------------------------------------------------------------------------

def export_concepts(model, processor, folder: str | Path, *, note: str = "") -> Path:
    """Save the model (safetensors) and its CLIPProcessor into ``folder``, loadable with plain transformers."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if note:
        (folder / "README.md").write_text(note)
    return folder


# ---------------------------------------------------------------------------
# 5. Evaluation.
# ---------------------------------------------------------------------------

def _heldout(n: int, seed: int) -> tuple[torch.Tensor, dict[str, list[str]]]:
    images, attrs = _render_pool(n, seed)
    return images, {a: [VOCAB[a][i] for i in attrs[a]] for a in ATTRIBUTES}


def evaluate_concepts(folder: str | Path, *, n: int = 600, seed: int = 10_000_019, device: str = "cpu",
                      dtype: str | None = None) -> dict:
    """Zero-shot accuracy per attribute on ``n`` held-out renders (seeds the pool never used).

    ``check``: through ConceptModelCheck with the world's cues (the phrases an audit asks, e.g. "a photo of
    something on grass"); ``other``: argmax over the other phrasings ("a photo of something in the snow"),
    averaged over phrasing variants; ``chance``: 1 / number of values. ``device`` and ``dtype`` as
    :func:`probe.concepts.load_concepts` takes them (on a GPU: half precision unless ``dtype`` says otherwise).
    """
    from probe.analysis.checks import ConceptModelCheck
    from probe.concepts import load_concepts
    from probe.world.domain import world_cues

    concepts = load_concepts(folder, batch_size=256, device=device, dtype=dtype)
    images, truth = _heldout(n, seed)
    check = ConceptModelCheck(concepts, list(SHAPES), world_cues(), object_attribute="shape")
    read = check.predict(images)
    table: dict[str, dict] = {}
    for a in ATTRIBUTES:
        acc = float(np.mean([p == t for p, t in zip(read[a], truth[a])]))
        table[a] = {"check": acc, "chance": 1 / len(VOCAB[a]), "values": len(VOCAB[a])}
    for a, values in OTHER_PHRASINGS.items():
        variants = min(len(v) for v in values.values())
        accs = []
        for k in range(variants):
            names = list(values)
            if a == "color":
                phrases = [f"a photo of something {values[v][k]}" for v in names]
            else:
                phrases = [f"a photo of something {values[v][k]}" for v in names]
            scores = concepts.score(images, phrases)
            accs.append(float(np.mean([names[i] == t for i, t in zip(scores.argmax(1), truth[a])])))
        table[a]["other"] = float(np.mean(accs))
        table[a]["other_phrasings"] = variants
    size = sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())
    return {"model": str(Path(folder).name), "heldout_renders": n, "seed": seed, "bytes": size, "accuracy": table,
            "device": device, "dtype": str(concepts.dtype).replace("torch.", "")}


def results_table(results: dict) -> str:
    """The evaluation as a markdown table (README, benchmarks/results)."""
    lines = ["| attribute | values | chance | check phrases | other phrasings |", "|---|---|---|---|---|"]
    for a, row in results["accuracy"].items():
        other = f"{row['other']:.3f}" if "other" in row else "–"
        lines.append(f"| {a} | {row['values']} | {row['chance']:.3f} | {row['check']:.3f} | {other} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None):
    p = argparse.ArgumentParser(prog="python -m probe.world.training.concepts", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=ConceptTrainConfig.out, help="checkpoint folder (resumed when it holds state.pt)")
    p.add_argument("--budget", type=float, default=ConceptTrainConfig.budget_s, help="wall-clock seconds of this run")
    p.add_argument("--steps", type=int, default=ConceptTrainConfig.steps)
    p.add_argument("--seed", type=int, default=ConceptTrainConfig.seed)
    p.add_argument("--threads", type=int, default=ConceptTrainConfig.threads)
    p.add_argument("--export", default=None, help="save the model and processor here when training is done")
    p.add_argument("--results", default=None, help="write the held-out zero-shot accuracy here (JSON, and .md)")
    p.add_argument("--eval-only", action="store_true", help="only evaluate the folder given with --export")
    args = p.parse_args(argv)
    if args.eval_only:
        if not args.export:
            raise ConceptTrainError("--eval-only needs --export FOLDER (the model folder to evaluate)")
        folder = Path(args.export)
    else:
        config = ConceptTrainConfig(out=args.out, budget_s=args.budget, steps=args.steps, seed=args.seed,
                                    threads=args.threads)
        model, processor, state = train_concepts(config)
        if state["step"] < config.steps:
            print(f"stopped at step {state['step']}/{config.steps} (budget); run again to resume")
            return
        if not args.export:
            return
        note = (f"# The shapes world's concept model\n\nA tiny CLIP (transformers CLIPModel) trained by "
                f"`python -m probe.world.training.concepts` ({config.steps} steps of {config.batch}, seed "
                f"{config.seed}, {state['seconds']:.0f} s on {config.threads} CPU thread(s) of a shared machine"
                + (f"; resumed at step(s) {', '.join(map(str, state['resumed_at']))} with the cosine schedule "
                   f"shortened to end at step {config.steps}" if state.get("resumed_at") else "")
                + ") on rendered scenes with "
                "the world's captions and other phrasings. Load it with `CLIPModel.from_pretrained(folder)` or "
                "`probe.concepts.load_concepts('world')`.\n")
        folder = export_concepts(model, processor, args.export, note=note)
    torch.set_num_threads(args.threads)
    results = evaluate_concepts(folder)
    print(results_table(results))
    if args.results:
        target = Path(args.results)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(results, indent=2) + "\n")
        target.with_suffix(".md").write_text(results_table(results) + "\n")


if __name__ == "__main__":
    main()
