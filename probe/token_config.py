"""TokenConfig: the settings of one class-token optimisation, typed and torch-free.

They travel inside ``AuditConfig`` (saved in config.json, read back by every later command) and into
``probe.tokens.optimize_class_token``, which re-exports the class (``from probe.tokens import TokenConfig``). Nothing
here loads torch: reading a run's settings, planning its cost and checking flags stay light.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from probe.errors import TokenError, settings_from_dict

__all__ = ["TokenConfig", "DEFAULT_TEMPLATES", "OBJECTIVES", "DEFAULT_MIN_STEPS", "MAX_BATCH_SIZE", "MAX_EVAL_IMAGES"]

DEFAULT_TEMPLATES = ("a photo of a {}", "a close-up photo of a {}", "a picture of a {}")
OBJECTIVES = ("cross_entropy", "margin")
DEFAULT_MIN_STEPS = 3  # updates before the default stop rule may stop (see TokenConfig)


# the CLI flag of each setting, for messages (the Python keyword is the flag without dashes, except the threshold)
_FLAGS = {"accuracy_threshold": "--threshold"}
MAX_BATCH_SIZE = 1024  # images per optimisation step at most: memory grows with it (5 is the default)
MAX_EVAL_IMAGES = 10_000  # evaluation images per prompt kind at most


def _flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


@dataclass(frozen=True)
class TokenConfig:
    """Settings of one class-token optimisation.

    The defaults follow the paper (init word "a", lr 5e-3, 5 images a step, cross-entropy, 50 steps) except
    for the stop rule: the paper stops once the batch's accuracy exceeds 0.7, which the baseline images of a
    well-trained classifier already meet, so the token keeps its initial word and shows nothing. probe stops
    when the mean probability of the class exceeds 0.95, after at least :data:`DEFAULT_MIN_STEPS` updates
    (fewer when ``max_steps`` is smaller), so every token moves. :meth:`paper` is the paper's rule
    (``probe audit --paper-stop``).
    """

    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    init_word: str = "a"  # "a" as in the paper; "@class" uses the class name's last token
    lr: float = 5e-3
    batch_size: int = 5  # images per optimisation step, from fixed seeds
    max_steps: int = 50
    accuracy_threshold: float = 0.95  # early stop when the batch's stop_metric exceeds it (the paper: accuracy > 0.7)
    stop_metric: str = "target_prob"  # mean probability of the class, or "accuracy" (the paper)
    patience: int = 15  # ... or after this many steps without a better token
    min_steps: int | None = None  # no stop before this many updates, and the kept token is an updated one (0: the
    # paper; None: DEFAULT_MIN_STEPS, or max_steps - 1 when that is smaller, read as ``min_updates``)
    objective: str = "cross_entropy"  # or "margin": capped log-probability margin of the target over the others
    margin_cap: float = 5.0  # "margin": no push beyond this log-probability margin (nats)
    lr_backoff: float = 0.5  # a step that blows the loss up restores the best token and scales lr by this
    max_backoffs: int = 4  # ... at most this many times, then the run stops ("diverged") keeping the best token
    grad_clip: float = 1.0
    steps: int | None = None  # sampling steps; None: the generator's default
    guidance_scale: float | None = None
    grad_steps: int = 1  # UNet calls at the end of sampling that carry gradient
    max_batch: int | None = None  # images per gradient chunk (memory knob); None: automatic on CUDA, else one chunk
    gradient_checkpointing: bool = False
    scheduler: str | None = None
    seed: int = 0  # training seeds are seed .. seed+batch_size-1
    eval_images: int = 6  # per prompt kind (baseline, token), on fresh seeds
    eval_seed: int = 1000
    topk: int = 5

    @classmethod
    def paper(cls, **changes) -> "TokenConfig":
        """The paper's stop rule: stop once the batch's accuracy exceeds 0.7, no minimum number of updates (a
        token may keep its initial word where the classifier already accepts the baseline images)."""
        return cls(**{"stop_metric": "accuracy", "accuracy_threshold": 0.7, "min_steps": 0, **changes})

    @property
    def min_updates(self) -> int:
        """The updates before the stop rule may stop: ``min_steps``, or when it is left out (None) the default for
        this ``max_steps``. Left out, it follows ``max_steps`` through ``dataclasses.replace`` (a notebook's
        ``replace(config.token, max_steps=2)`` gets 1, not an error for the default 3); config.json records the
        number used (``to_dict``)."""
        if self.min_steps is not None:
            return self.min_steps
        return max(0, min(DEFAULT_MIN_STEPS, self.max_steps - 1)) if isinstance(self.max_steps, int) else DEFAULT_MIN_STEPS

    def __eq__(self, other) -> bool:
        """Equal when they run the same optimisation: a default ``min_steps`` equals the number it resolves to (the
        settings read back from config.json equal those that wrote it)."""
        return isinstance(other, TokenConfig) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(self.to_dict().items())))

    def __post_init__(self):
        if not isinstance(self.init_word, str) or not self.init_word.strip():
            raise TokenError(f"--init-word {self.init_word!r} is empty; use a plain word such as 'a' (the paper's) or "
                             "'@class' (the class name's last token)")
        if not self.templates or any(not isinstance(t, str) or "{}" not in t for t in self.templates):
            raise TokenError(f"prompt templates {list(self.templates)!r} (--prompt) must be non-empty and each contain "
                             "'{}' where the token and the class name go, e.g. 'a photo of a {}'")
        for t in self.templates:  # filled with str.format: any other brace would fail at the first prompt
            try:
                t.format("x")
            except (IndexError, KeyError, ValueError):
                raise TokenError(f"prompt template {t!r} has braces other than the one '{{}}' where the token and "
                                 "class name go; write a literal brace as '{{' or '}}'") from None
        checks = {
            "lr": self.lr > 0, "batch_size": self.batch_size >= 1, "max_steps": self.max_steps >= 1,
            "accuracy_threshold": 0.0 <= self.accuracy_threshold <= 1.0, "patience": self.patience >= 1,
            "grad_clip": self.grad_clip > 0, "grad_steps": self.grad_steps >= 1,
            "eval_images": self.eval_images >= 1, "topk": self.topk >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise TokenError(f"{_flag(name)} {getattr(self, name)!r} is out of range; see `probe audit --help`")
        for name, most, what in (("batch_size", MAX_BATCH_SIZE, "images in each optimisation step"),
                                 ("max_batch", MAX_BATCH_SIZE, "images in each gradient chunk"),
                                 ("eval_images", MAX_EVAL_IMAGES, "evaluation images per prompt kind and class")):
            value = getattr(self, name)
            if isinstance(value, int) and value > most:  # checked before any model loads: memory grows with it
                raise TokenError(f"{_flag(name)} {value} asks for {value:,} {what}, far beyond what a device's memory "
                                 f"or the run's time allows; use at most {most:,}")
        if isinstance(self.seed, int) and isinstance(self.eval_seed, int) and \
                self.seed < self.eval_seed + self.eval_images and self.eval_seed < self.seed + self.batch_size:
            raise TokenError(  # the token would be scored on the images it was trained on
                f"--seed {self.seed}: the optimisation's seeds {self.seed}..{self.seed + self.batch_size - 1} overlap the "
                f"evaluation's {self.eval_seed}..{self.eval_seed + self.eval_images - 1}, which must be fresh; pick a "
                f"--seed from {self.eval_seed + self.eval_images} on (or below {self.eval_seed - self.batch_size + 1}), "
                "or a smaller --batch-size")
        if self.stop_metric not in ("accuracy", "target_prob"):
            raise TokenError(f"--stop-metric {self.stop_metric!r} is unknown; use 'accuracy' or 'target_prob'")
        if self.objective not in OBJECTIVES:
            raise TokenError(f"--objective {self.objective!r} is unknown; use one of {', '.join(OBJECTIVES)}")
        if self.min_steps is not None and (not isinstance(self.min_steps, int) or self.min_steps < 0
                                           or (self.min_steps > 0 and self.min_steps >= self.max_steps)):
            raise TokenError(f"--min-steps {self.min_steps} must be 0, or below --max-steps {self.max_steps} (the kept "
                             "token is scored after its updates)")
        if not (math.isfinite(self.margin_cap) and self.margin_cap > 0):
            raise TokenError(f"margin_cap={self.margin_cap!r} must be a positive number of nats, e.g. 5")
        if not 0 < self.lr_backoff < 1 or self.max_backoffs < 0:
            raise TokenError(f"lr_backoff={self.lr_backoff} must lie in (0, 1) and max_backoffs={self.max_backoffs} >= 0")
        if self.max_batch is not None and self.max_batch < 1:
            raise TokenError(f"--max-batch {self.max_batch} must be >= 1, or left out")
        if self.steps is not None and self.steps < 1:
            raise TokenError(f"--steps {self.steps} must be at least 1 (sampling steps per image), or left out for the "
                             "generator's default")
        if self.steps is not None and self.grad_steps > self.steps:
            raise TokenError(f"--grad-steps {self.grad_steps} exceeds --steps {self.steps}: at most every sampling step can "
                             "carry gradient; lower --grad-steps or raise --steps")
        if self.guidance_scale is not None and not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0):
            raise TokenError(f"--guidance-scale {self.guidance_scale!r} must be a finite number >= 0 (1 or less turns "
                             "classifier-free guidance off)")
        for name in ("lr", "grad_clip", "accuracy_threshold"):
            if not math.isfinite(getattr(self, name)):
                raise TokenError(f"{_flag(name)} {getattr(self, name)!r} must be a finite number")
        if self.scheduler is not None:
            from probe.generators.registry import SCHEDULER_NAMES

            if self.scheduler not in SCHEDULER_NAMES:
                raise TokenError(f"--scheduler {self.scheduler!r} is unknown; use one of {', '.join(SCHEDULER_NAMES)}")

    @property
    def train_seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.batch_size))

    @property
    def eval_seeds(self) -> list[int]:
        return list(range(self.eval_seed, self.eval_seed + self.eval_images))

    def to_dict(self) -> dict:
        return {**asdict(self), "min_steps": self.min_updates}  # the number used, for config.json

    @classmethod
    def from_dict(cls, data: dict) -> "TokenConfig":
        data = settings_from_dict(cls, data, "token settings", TokenError)
        data["templates"] = tuple(data.get("templates", DEFAULT_TEMPLATES))
        return cls(**data)
