"""Tokens: learn a discriminative class token S_c against a frozen classifier.

``optimize_class_token(generator, classifier, target, config)`` follows the paper's method with the
reference code's defects fixed:

* every image of a step is sampled in one UNet batch (not one image + gradient accumulation); the part
  that carries gradient runs in chunks of ``max_batch`` images, each chunk's backward before the next
  chunk's forward, so memory is bounded by a chunk (probe/generators/gradient.py);
* exactly ``grad_steps`` UNet calls carry gradient, counted as calls (PNDM's repeated step included);
* the optimiser sees one float32 vector, so no weight decay or update can reach other rows;
* the gradient is clipped after ``backward`` (clipping before it, as the reference did, does nothing);
* targets are 0-based class indices everywhere, for the token and the baseline alike.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from probe.classifiers.classifier import called, probabilities
from probe.devices import module_device
from probe.errors import TokenError
from probe.generators.gradient import token_gradient_step
from probe.generators.memory import resolve_max_batch
from probe.token_config import TokenConfig  # the settings live torch-free; imported from here as before

MOVED_RELATIVE = 0.02  # a token whose vector moved less than 2% of its initial norm is reported as unchanged
DIVERGED_FACTOR = 4.0  # a loss this many times the best one (and above 1 nat) is a blow-up, not a step


def token_string(class_index: int) -> str:
    return f"<probe-{class_index}>"


def class_prompts(templates: Sequence[str], name: str | None, token: str | None) -> list[str]:
    """One prompt per template. ``name`` None gives token-only prompts ("a photo of a S_c")."""
    if token is None and not name:
        raise TokenError("a baseline prompt needs a class name; this class has none, so only token prompts are possible")
    words = " ".join(w for w in (token, name) if w)
    return [t.format(words) for t in templates]


@dataclass
class ClassToken:
    """The result of one optimisation: the learned vector, its history and how it stopped."""

    class_index: int
    class_name: str | None
    token: str
    vector: torch.Tensor
    init_word: str
    prompts: list[str]
    history: list[dict] = field(default_factory=list)
    best_step: int = 0
    stopped: str = "max_steps"
    seconds: float = 0.0
    initial_vector: torch.Tensor | None = None

    @property
    def movement(self) -> dict:
        """How far the kept vector is from the initial word's: distance, relative to its norm, cosine, moved or not."""
        if self.initial_vector is None:
            return {"distance": None, "relative": None, "cosine": None, "moved": None}
        v, v0 = self.vector.detach().float().cpu(), self.initial_vector.detach().float().cpu()
        distance = float((v - v0).norm())
        relative = distance / max(float(v0.norm()), 1e-12)
        cosine = float(F.cosine_similarity(v[None], v0[None])[0])
        return {"distance": round(distance, 6), "relative": round(relative, 6), "cosine": round(cosine, 6),
                "moved": relative >= MOVED_RELATIVE}

    @property
    def best_accuracy(self) -> float:
        scored = [r for r in self.history if r["step"] == self.best_step and not r.get("event")]
        return scored[0]["accuracy"] if scored else float("nan")

    def save(self, path: str | Path, generator=None) -> Path:
        """diffusers textual-inversion format: ``pipe.load_textual_inversion(path)`` loads it. A ``generator`` with
        its own layout (``save_token``: SDXL's one row per encoder, clip_l / clip_g) writes that instead."""
        from safetensors.torch import save_file

        from probe.files import atomic_path

        if generator is not None and hasattr(generator, "save_token"):
            return generator.save_token(self.token, path, self.vector)
        path = Path(path)
        with atomic_path(path) as tmp:
            save_file({self.token: self.vector.detach().float().cpu().contiguous()}, str(tmp))
        return path

    def __repr__(self) -> str:
        return (f"ClassToken({self.token!r} for class {self.class_index} {self.class_name!r}: "
                f"best accuracy {self.best_accuracy:.2f} at step {self.best_step}, "
                f"{len(self.history)} steps, stopped by {self.stopped}, {self.seconds:.1f}s)")


def _init_word(config: TokenConfig, class_name: str | None) -> str:
    if config.init_word == "@class":
        return (class_name or "a").split()[-1]
    return config.init_word


def _class_name(classifier, target: int) -> str | None:
    labels = getattr(classifier, "labels", None)
    if not labels:
        return None
    name = str(labels[target]).strip()
    # A name that is only the index ("17") or empty carries no meaning for the text encoder.
    return None if (not name or name.isdigit()) else name


def score_images(classifier, images: torch.Tensor, target: int, topk: int = 5) -> dict:
    """Classify ``images`` once; accuracy, target probabilities and top-k per image for ``target``."""
    with torch.no_grad():
        logits = classifier(images)
    probs = probabilities(classifier, logits)
    hits = called(classifier, probs, target)
    k = min(topk, probs.shape[-1])
    top_p, top_i = probs.topk(k, dim=-1)
    labels = getattr(classifier, "labels", None)
    per_image = []
    for row_p, row_i, hit in zip(top_p.tolist(), top_i.tolist(), hits.tolist()):
        per_image.append({
            "correct": bool(hit),
            "topk": [{"index": i, "label": (labels[i] if labels else str(i)), "prob": round(p, 5)}
                     for p, i in zip(row_p, row_i)],
        })
    target_probs = probs[:, target]
    return {
        "accuracy": float(hits.float().mean()),
        "mean_target_prob": float(target_probs.mean()),
        "n": int(images.shape[0]),
        "target_probs": target_probs.tolist(),
        "per_image": per_image,
    }


def optimize_class_token(generator, classifier, target: int, config: TokenConfig | None = None, *,
                         class_name: str | None = ..., token: str | None = None,
                         on_step=None) -> ClassToken:
    """Learn S_c for class ``target`` (0-based) so generated images are classified as it.

    ``on_step(record)`` is called after every step with the history record (for progress bars).
    Raises TokenError when the first loss is not finite (nothing to back off to); a later NaN or infinite loss backs
    the learning rate off, and after ``max_backoffs`` of them the run ends with ``stopped="diverged"`` keeping the best
    vector so far. With ``min_steps`` N the stop rule may stop from step N on: the vector scored at step k has had k
    updates.
    """
    config = config or TokenConfig()
    if class_name is ...:
        class_name = _class_name(classifier, target)
    token = token or token_string(target)
    init_word = _init_word(config, class_name)
    # Always start from init_word, also when the token exists from an earlier audit with this generator.
    generator.add_token(token, init_word, reinitialise=True)
    vector = generator.trainable_token(token)
    # 1. Optimiser over the token's vector only; no other tensor can be updated or decayed.
    optimizer = torch.optim.AdamW([vector], lr=config.lr, weight_decay=0.0)
    prompts = class_prompts(config.templates, class_name, token)
    seeds = config.train_seeds
    batch_prompts = [prompts[i % len(prompts)] for i in range(len(seeds))]
    device = module_device(classifier)
    labels = torch.full((len(seeds),), target, dtype=torch.long, device=device)
    max_batch = config.max_batch if config.max_batch is not None else resolve_max_batch(generator, config).max_batch

    multi_label = bool(getattr(classifier, "multi_label", False))

    def loss_fn(images: torch.Tensor, rows: slice):
        # The classifier's own differentiable preprocessing, then the objective toward the target.
        logits = classifier(images.to(device)).float()
        return objective_loss(logits, labels[rows], config, multi_label=multi_label), logits

    initial = vector.detach().clone()
    result = ClassToken(class_index=target, class_name=class_name, token=token, vector=initial.clone(),
                        init_word=init_word, prompts=prompts, initial_vector=initial)
    best_key = (-1.0, -math.inf)
    best_loss, backoffs, since_best = math.inf, 0, 0
    start = time.perf_counter()
    try:
        for step in range(config.max_steps):
            # 2-3. One batch through the sampler, the gradient through the last grad_steps UNet calls, the decode
            #      and the classifier's objective, taken chunk by chunk (probe/generators/gradient.py) into vector.grad.
            optimizer.zero_grad(set_to_none=True)
            step_result = token_gradient_step(generator, batch_prompts, seeds, loss_fn, steps=config.steps,
                                              guidance_scale=config.guidance_scale, grad_steps=config.grad_steps,
                                              max_batch=max_batch, scheduler=config.scheduler,
                                              gradient_checkpointing=config.gradient_checkpointing)
            logits, loss_value = step_result.logits, step_result.loss
            current = vector.detach().clone()  # the vector that produced these images, scored before any update
            # 4. A blow-up (non-finite, or far above the best loss) is not a step: its gradient is dropped, the
            #    best token restored and lr lowered.
            if not math.isfinite(loss_value) or (math.isfinite(best_loss) and
                                                 loss_value > max(DIVERGED_FACTOR * best_loss, 1.0)):
                if not math.isfinite(best_loss):
                    raise TokenError(f"loss became {loss_value} at step {step} for class {target}; "
                                     "lower --lr, use --dtype fp32, or check the classifier's outputs")
                backoffs += 1
                vector.grad = None
                result.history.append({"step": step, "loss": loss_value, "accuracy": float("nan"),
                                       "mean_target_prob": float("nan"), "grad_norm": float("nan"),
                                       "lr": optimizer.param_groups[0]["lr"], "event": "backoff",
                                       "seconds": time.perf_counter() - start})
                with torch.no_grad():
                    vector.copy_(result.vector.to(vector.device, vector.dtype))
                optimizer.state.clear()  # forget the moments that pushed it over
                for group in optimizer.param_groups:
                    group["lr"] *= config.lr_backoff
                if backoffs > config.max_backoffs:
                    result.stopped = "diverged"
                    break
                continue
            with torch.no_grad():
                probs = probabilities(classifier, logits)
                accuracy = float(called(classifier, probs, target).float().mean())
                target_prob = float(probs[:, target].mean())
            lr = optimizer.param_groups[0]["lr"]
            # 5. Clip after backward (the reference clipped before it, which did nothing), then step.
            grad_norm = float(torch.nn.utils.clip_grad_norm_([vector], config.grad_clip))
            optimizer.step()
            record = {"step": step, "loss": loss_value, "accuracy": accuracy, "mean_target_prob": target_prob,
                      "grad_norm": grad_norm, "lr": lr, "seconds": time.perf_counter() - start}
            result.history.append(record)
            best_loss = min(best_loss, loss_value)
            score = accuracy if config.stop_metric == "accuracy" else target_prob
            key = (score, -loss_value)
            # with min_steps the kept token must be an updated one (step 0 scores the initial word)
            eligible = step >= 1 or config.min_updates == 0
            if eligible and key > best_key:
                best_key, since_best = key, 0
                result.best_step, result.vector = step, current
            elif eligible:
                since_best += 1
            if on_step is not None:
                on_step(record)
            # 6. Early stop when the batch score exceeds the threshold, or when the token stopped improving.
            if step < config.min_updates:  # the vector scored at step k has had k updates
                continue
            if score > config.accuracy_threshold and eligible:
                result.stopped = "threshold"
                break
            if since_best >= config.patience:
                result.stopped = "patience"
                break
    finally:
        # Keep the best vector in the token's embedding row, whatever happened.
        generator.commit_token(token, result.vector)
        result.seconds = time.perf_counter() - start
    return result


def objective_loss(logits: torch.Tensor, labels: torch.Tensor, config: TokenConfig, *,
                   multi_label: bool = False) -> torch.Tensor:
    """The optimisation objective: cross-entropy (the paper), or a capped log-probability margin.

    "margin" is softplus(cap - (log p_target - max_other log p)), averaged over images: it keeps pushing when
    the classifier already accepts the images (where cross-entropy is nearly flat), and fades beyond ``cap``.
    ``multi_label`` (each class its own sigmoid): cross-entropy is -log sigmoid(z_target), the margin is the
    target's log-odds z_target = log p - log(1 - p) (softplus(cap - z_target)); the other classes do not enter.
    """
    if multi_label:
        target_logit = logits.gather(1, labels[:, None])[:, 0]
        if config.objective == "cross_entropy":
            return F.softplus(-target_logit).mean()  # = -log sigmoid(z)
        return F.softplus(config.margin_cap - target_logit).mean()
    if config.objective == "cross_entropy":
        return F.cross_entropy(logits, labels)
    logp = logits.log_softmax(-1)
    target = logp.gather(1, labels[:, None])[:, 0]
    others = logp.masked_fill(F.one_hot(labels, logp.shape[-1]).bool(), float("-inf")).max(-1).values
    return F.softplus(config.margin_cap - (target - others)).mean()


@dataclass
class Evaluation:
    """Token vs baseline on fresh seeds, by the training classifier and optionally a held-out one."""

    baseline: dict
    token: dict
    images: dict  # kind -> Tensor (N,3,H,W)
    prompts: dict  # kind -> list of prompts, one per image
    seeds: list[int]
    eval_baseline: dict | None = None
    eval_token: dict | None = None

    def __repr__(self) -> str:
        text = (f"Evaluation(baseline accuracy {self.baseline['accuracy']:.2f} -> token {self.token['accuracy']:.2f}, "
                f"target prob {self.baseline['mean_target_prob']:.2f} -> {self.token['mean_target_prob']:.2f}")
        if self.eval_token is not None:
            text += f"; held-out classifier {self.eval_baseline['accuracy']:.2f} -> {self.eval_token['accuracy']:.2f}"
        return text + ")"


def evaluate_class_token(generator, classifier, class_token: ClassToken, config: TokenConfig | None = None,
                         eval_classifier=None, eval_target: int | None = None) -> Evaluation:
    """Generate baseline and token images on ``config.eval_seeds`` and score them."""
    config = config or TokenConfig()
    seeds = config.eval_seeds
    kinds = {"token": class_prompts(config.templates, class_token.class_name, class_token.token)}
    if class_token.class_name:
        kinds["baseline"] = class_prompts(config.templates, class_token.class_name, None)
    else:
        # No usable name: the baseline is the template with only the article, so both are comparable.
        kinds["baseline"] = [t.format("").replace("  ", " ").strip() for t in config.templates]
    images, prompts, scores, eval_scores = {}, {}, {}, {}
    device = module_device(classifier)
    for kind, kind_prompts in kinds.items():
        per_image = [kind_prompts[i % len(kind_prompts)] for i in range(len(seeds))]
        with torch.no_grad():
            imgs = generator.generate(per_image, seeds, steps=config.steps, guidance_scale=config.guidance_scale,
                                      max_batch=config.max_batch, scheduler=config.scheduler)
        images[kind], prompts[kind] = imgs.cpu(), per_image
        scores[kind] = score_images(classifier, imgs.to(device), class_token.class_index, config.topk)
        if eval_classifier is not None:
            target = class_token.class_index if eval_target is None else eval_target
            eval_scores[kind] = score_images(eval_classifier, imgs.to(module_device(eval_classifier)), target, config.topk)
    return Evaluation(baseline=scores["baseline"], token=scores["token"], images=images, prompts=prompts, seeds=seeds,
                      eval_baseline=eval_scores.get("baseline"), eval_token=eval_scores.get("token"))
