"""The throughput table of the cost model (probe/auditing/cost.py): measured seconds per image, per generator family
and device kind, each row with where it was measured. No row is guessed: a (family, device) pair without a row is
*unmeasured*, and the plan says so instead of printing a time.

A row holds what a benchmark measured at one sampling (steps, guidance), and, where a second sampling was measured
too, the split of a cost into a fixed part (decode, classifier, backward) and a part per UNet evaluation, so that a
plan at another step count is computed from two measurements instead of scaled from one:

- ``image_s``: seconds per image sampled and decoded *without* gradient (the analysis, the evaluation), at
  ``image_batch`` images per call;
- ``step_s``: seconds per optimisation step of ``step_images`` images (the token), sampling included.

Torch-free: read before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from probe.errors import RunError

__all__ = ["Throughput", "THROUGHPUT", "throughput_for", "REFERENCE_DEVICE", "cpu_flags", "Measured"]


@dataclass(frozen=True)
class Measured:
    """This machine's cost at one audit's own settings, timed just now (``probe audit --dry-run --measure``,
    probe/auditing/measure.py): what a plan uses instead of a :class:`Throughput` row, on any device.

    ``image_s``: seconds per image sampled (at the analysis's steps and guidance), decoded and classified, at
    ``image_batch`` images per call (median of ``image_calls`` calls after a warm-up); ``step_s``: seconds per
    optimisation step of the token's ``step_images`` images at the token's sampling (median of ``token_steps``
    steps after a warm-up step)."""

    image_s: float
    image_batch: int
    image_calls: int
    step_s: float
    step_images: int
    token_steps: int
    device: str  # the device measured on, as torch names it ("cpu", "cuda:0")

    def __post_init__(self):
        if not (self.image_s > 0 and self.step_s > 0) or min(self.image_batch, self.image_calls, self.step_images,
                                                            self.token_steps) < 1:
            raise RunError(f"a measurement needs positive times and counts, got {self}")

    def describe(self) -> str:
        return (f"measured just now on {self.device}: {self.image_s:.3g} s per image (median of {self.image_calls} "
                f"calls of {self.image_batch}), {self.step_s:.3g} s per {self.step_images}-image token step (median "
                f"of {self.token_steps})")


@dataclass(frozen=True)
class Throughput:
    """One measured row: seconds per image (no gradient) and per optimisation step, at the sampling measured.

    ``*_per_call`` (optional): the part of the cost that grows with each UNet evaluation (a step with guidance is
    two evaluations), from a second measured sampling; without it a plan at another sampling is not scaled."""

    family: str  # "sd1", "sd2", "sdxl", "world"
    device: str  # "cpu", "h200": the device kind (cost.device_kind)
    steps: int  # the sampling measured
    guidance: float
    image_s: float | None  # seconds per image without gradient; None: not measured
    image_batch: int | None
    step_s: float | None  # seconds per optimisation step of step_images images; None: not measured
    step_images: int = 5
    image_per_call: float | None = None  # seconds per image per UNet evaluation (no gradient)
    step_per_call: float | None = None  # seconds per step per UNet evaluation (the step's step_images images)
    source: str = ""
    # what the no-gradient images were sampled in, where one device kind has rows for several ("float32", "bfloat16
    # autocast": probe.generators.generator.cpu_sampling_precision); None: the only precision measured on that device
    precision: str | None = None
    # a CPU flag (/proc/cpuinfo) of the machine measured that sets its speed apart ("amx_bf16": bf16 matrix units); such
    # a row serves only CPUs with the flag, before any row without one; None: any CPU of the device kind
    cpu: str | None = None

    def __post_init__(self):
        if not self.family or not self.device:
            raise RunError("a throughput row needs a generator family and a device kind")
        for name in ("image_s", "step_s", "image_per_call", "step_per_call"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise RunError(f"throughput row {self.family}/{self.device}: {name}={value!r} must be a positive "
                               "number of seconds, or None when not measured")
        if self.steps < 1 or self.step_images < 1:
            raise RunError(f"throughput row {self.family}/{self.device}: steps and step_images must be at least 1")

    @property
    def calls(self) -> int:
        return evaluations(self.steps, self.guidance)

    def seconds_per_image(self, steps: int, guidance: float) -> tuple[float | None, str]:
        """(seconds per image without gradient at this sampling, how it was obtained)."""
        return self._at(self.image_s, self.image_per_call, steps, guidance)

    def seconds_per_step(self, steps: int, guidance: float, images: int) -> tuple[float | None, str]:
        """(seconds per optimisation step of ``images`` images at this sampling, how it was obtained); the cost is
        taken as proportional to the images of a step (what the measured rows at 5 and 10 images roughly show)."""
        value, how = self._at(self.step_s, self.step_per_call, steps, guidance)
        return (None if value is None else value * images / self.step_images), how

    def _at(self, measured, per_call, steps, guidance):
        if measured is None:
            return None, "unmeasured"
        calls = evaluations(steps, guidance)
        if calls == self.calls:
            return measured, "measured"
        if per_call is not None:
            return max(measured + per_call * (calls - self.calls), per_call), "from two measured samplings"
        if calls < self.calls:
            return measured, f"measured at {self.steps} steps (an upper bound for {steps})"
        return None, f"measured only at {self.steps} steps"


def evaluations(steps: int, guidance: float | None) -> int:
    """UNet evaluations per image: one per step, two with classifier-free guidance (guidance above 1)."""
    return int(steps) * (2 if guidance is not None and guidance > 1 else 1)


# Device kind a plan falls back to as a *reference* (clearly labelled) when its own device has no row.
REFERENCE_DEVICE = "h200"

_H200 = "benchmarks/results/h200-2026-11-26"
THROUGHPUT: tuple[Throughput, ...] = (
    # SD 1.x full size (random weights), fp16, 512 px, resnet50 classifier, one H200. Images: the `floor` row (sampling +
    # decode of 5 images, no gradient) 0.721 s. Steps: `default` (DDIM 15, guidance 7.5, 5 images) 0.989 s and
    # `distilled` (2 steps, no guidance) 0.474 s: 0.0184 s per UNet evaluation of a 5-image step, the rest fixed; the
    # no-gradient images take the same per-evaluation cost (the same UNet calls), the rest of the floor is the decode.
    Throughput("sd1", "h200", steps=15, guidance=7.5, image_s=0.7208 / 5, image_batch=5, step_s=0.9893, step_images=5,
               image_per_call=(0.9893 - 0.4739) / 28 / 5, step_per_call=(0.9893 - 0.4739) / 28,
               source=f"{_H200}/sd1.json rows floor, default, distilled (median of 3 steps)"),
    # SD 2.x base full size with a ViT-B/16 classifier: only the optimisation step was measured.
    Throughput("sd2", "h200", steps=15, guidance=7.5, image_s=None, image_batch=None, step_s=1.1180, step_images=5,
               source=f"{_H200}/sd2-vit.json row default (median of 2 steps); images without gradient unmeasured"),
    # SDXL full size (1024 px): floor 3.686 s and default 5.502 s per 5-image step (DDIM 15, guidance 5).
    Throughput("sdxl", "h200", steps=15, guidance=5.0, image_s=3.686 / 5, image_batch=5, step_s=5.502, step_images=5,
               source=f"{_H200}/sdxl.md rows floor, default (median of 3 steps)"),
    # The shapes world on a 2-core CPU at the demo's sampling (5 steps, guidance 4, 2 threads, idle machine), one row
    # per sampling precision, since the world's pipeline samples in bf16 autocast where the CPU computes bf16 natively.
    # float32: an AMD EPYC (Zen 3, AVX2 only), 6 December 2026: 0.205 s per image at the analysis's batch of 16 (0.40 s
    # alone), 1.40 s per 5-image token step (3 December, on a machine of then, in float32: 0.179 s and 1.05 s).
    Throughput("world", "cpu", steps=5, guidance=4.0, image_s=0.2049, image_batch=16, step_s=1.404, step_images=5,
               precision="float32",
               source="benchmarks/results/generation-batch-world-cpu-float32-epyc-2026-12-06.json (benchmarks/"
                      "generation_batch.py --steps 5 --images 16 --batches 1,4,8,16 --grad-step --threads 2; AMD EPYC, "
                      "float32)"),
    # bfloat16 autocast: an AMD EPYC (Zen 4, AVX512-BF16, no AMX), 7 December 2026: 0.102 s per image at the
    # analysis's batch of 16 (0.21 s alone), 0.865 s per 5-image token step. The split per UNet evaluation comes from
    # a second pair measured back to back later that day at 5 and 20 steps (the world's own default, what plain
    # `probe audit --generator world` samples with): 0.1173 and 0.4219 s per image, 0.892 and 2.989 s per step, so
    # (0.4219 - 0.1173) / 30 = 0.01015 s per image and (2.989 - 0.892) / 30 = 0.0699 s per step per evaluation.
    Throughput("world", "cpu", steps=5, guidance=4.0, image_s=0.1023, image_batch=16, step_s=0.8648, step_images=5,
               image_per_call=0.01015, step_per_call=0.0699, precision="bfloat16 autocast",
               source="benchmarks/results/generation-batch-world-cpu-bf16-zen4-2026-12-07.json (benchmarks/"
                      "generation_batch.py --steps 5 --images 16 --batches 1,4,8,16 --grad-step --threads 2; AMD EPYC "
                      "Zen 4, bfloat16 autocast); per evaluation: generation-batch-world-cpu-bf16-zen4-steps{5,20}-"
                      "2026-12-07.json (--steps 5 and 20 --images 32 --batches 16 --grad-step --threads 2)"),
    # ... and an Intel Xeon with AMX, 5 December 2026: 0.0548 s per image at a batch of 32, about twice as fast. Its
    # token step (float32 gradient, sampled under the autocast) was not measured there: unmeasured, not guessed.
    Throughput("world", "cpu", steps=5, guidance=4.0, image_s=0.0548, image_batch=32, step_s=None, step_images=5,
               precision="bfloat16 autocast", cpu="amx_bf16",
               source="benchmarks/results/generation_layout-default-xeon-2026-12-05.json (benchmarks/generation_batch.py "
                      "--steps 5 --batches 32 --images 64 --layout default; Intel Xeon with AMX)"),
)


def cpu_flags() -> frozenset[str]:
    """This machine's CPU flags as Linux lists them (/proc/cpuinfo), or none where it does not."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def throughput_for(family: str, device: str, table: tuple[Throughput, ...] = THROUGHPUT,
                   precision: str | None = None, flags: frozenset[str] = frozenset()) -> Throughput | None:
    """The row of ``family`` on ``device`` (a device kind) sampled in ``precision``, or None: unmeasured. A row
    without a precision serves any; a precision no row of the pair has is unmeasured (never another's row). A row
    measured on a CPU set apart by a flag (``Throughput.cpu``) serves a machine whose ``flags`` hold it, first."""
    rows = [row for row in table if row.family == family and row.device == device
            and (row.precision is None or precision is None or row.precision == precision)]
    return next((row for row in rows if row.cpu is not None and row.cpu in flags), None) or \
        next((row for row in rows if row.cpu is None), None)
