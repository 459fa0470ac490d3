"""Images per second against batch size, for generation without gradient (issue 21, item 3's measurement).

The analysis, the evaluation and `probe generate` sample without gradient; this measures how their cost per image
falls as more prompts share one UNet batch. Each batch size generates the same number of images (``--images``,
distinct prompts and seeds, as the analysis asks for them) after one warm-up batch, and the table gives seconds per
batch, images per second and seconds per image. ``--grad-step`` also times optimisation steps of a class token (5
images, the audit's default), the other row of the cost model's throughput table (probe/auditing/throughput.py).

    .venv/bin/python benchmarks/generation_batch.py                    # the shapes world on the CPU
    .venv/bin/python benchmarks/generation_batch.py --steps 5 --grad-step
    .venv/bin/python benchmarks/generation_batch.py --generator DIR --device cuda --batches 1,2,4,8,16,32
    .venv/bin/python benchmarks/generation_batch.py --steps 5 --batches 32 --layout channels_last   # vs --layout default

On a shared machine the figures move with other jobs: the header records the torch threads and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUBJECTS = ("circle", "square", "triangle", "star", "cross", "heart")
CONTEXTS = ("", " on grass", " on sand", " on snow", " on water", " on wood")


def prompts(n: int) -> list[str]:
    """``n`` distinct prompts in the analysis's style (an object in a stated context)."""
    out = [f"a photo of a {s}{c}" for c in CONTEXTS for s in SUBJECTS]
    return [out[i % len(out)] for i in range(n)]


def time_batches(generator, batch: int, images: int, steps, guidance, seed0: int = 7000) -> list[float]:
    """Seconds of each batch of ``batch`` images (``images`` in all, rounded down to whole batches), after one
    warm-up batch (probe.auditing.measure.time_images, what `probe audit --dry-run --measure` times with)."""
    from probe.auditing.measure import time_images

    n = batch * (1 + max(images, batch) // batch)  # the warm-up batch, then the timed ones
    return time_images(generator, prompts(n), list(range(seed0, seed0 + n)), batch, steps=steps, guidance=guidance,
                       max_batch=batch)


def time_grad_steps(generator, classifier, steps, guidance, n_steps: int = 4, batch: int = 5) -> list[float]:
    """Seconds of each optimisation step of a class token (``batch`` images a step), the first left out
    (probe.auditing.measure.time_token_steps)."""
    from probe.auditing.measure import time_token_steps
    from probe.tokens import TokenConfig

    return time_token_steps(generator, classifier, 0, TokenConfig(batch_size=batch, steps=steps, guidance_scale=guidance),
                            n_steps - 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generator", default=None, help="a diffusers folder (default: the shapes world's)")
    parser.add_argument("--classifier", default=None, help="for --grad-step (default: the world's biased classifier)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the generator's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the generator's)")
    parser.add_argument("--batches", default="1,2,4,8,16,32")
    parser.add_argument("--images", type=int, default=32, help="images timed per batch size")
    parser.add_argument("--grad-step", action="store_true", help="also time token optimisation steps (5 images)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--layout", choices=["as-loaded", "default", "channels_last"], default="as-loaded",
                        help="the UNet's and VAE's memory layout (as loaded: channels-last on a GPU only, "
                             "probe/generators/generator.py)")
    args = parser.parse_args(argv)

    import torch

    from probe.generators import load_generator

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.generator is None:
        from probe.world import bundled_generator_path

        args.generator = str(bundled_generator_path())
    generator = load_generator(args.generator, device=args.device, dtype=args.dtype)
    if args.layout != "as-loaded":
        layout = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
        for module in (generator.unet, generator.vae):
            module.to(memory_format=layout)
    defaults = getattr(generator, "defaults", None)
    steps = args.steps or getattr(defaults, "steps", None)
    guidance = args.guidance if args.guidance is not None else getattr(defaults, "guidance_scale", None)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = (f"# generation_batch: {args.generator} on {args.device} ({args.layout} layout), {steps} steps, guidance {guidance}; torch "
              f"{torch.__version__}, {torch.get_num_threads()} threads, load average {load:.2f} at start; "
              f"{args.images} images per batch size after one warm-up batch")
    print(header)
    print("| batch | s per batch (median) | images/s | s per image |")
    print("|---|---|---|---|")
    rows = []
    for batch in [int(b) for b in args.batches.split(",") if b.strip()]:
        seconds = time_batches(generator, batch, args.images, steps, guidance)
        median = statistics.median(seconds)
        row = {"batch": batch, "batches_timed": len(seconds), "s_per_batch": round(median, 4),
               "images_per_s": round(batch / median, 3), "s_per_image": round(median / batch, 4)}
        rows.append(row)
        print(f"| {batch} | {median:.3f} | {row['images_per_s']:.2f} | {row['s_per_image']:.4f} |", flush=True)
    result = {"header": header, "steps": steps, "guidance": guidance, "rows": rows}
    if args.grad_step:
        from probe.classifiers import load_classifier

        if args.classifier is None:
            from probe.world import bundled_classifier_path

            args.classifier = str(bundled_classifier_path("biased"))
        classifier = load_classifier(args.classifier, device=args.device)
        seconds = time_grad_steps(generator, classifier, steps, guidance)
        result["grad_step"] = {"images": 5, "seconds": [round(s, 4) for s in seconds],
                               "s_per_step": round(statistics.median(seconds), 4)}
        print(f"token optimisation step (5 images, gradient through the last UNet call): "
              f"{statistics.median(seconds):.3f} s (median of {len(seconds)})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
