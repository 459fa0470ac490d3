"""Seconds per optimisation step: probe's optimiser vs a faithful re-implementation of the reference loop.

Both run in this one process on the same components, the same classifier, the same number of images
per step (5), the same scheduler (PNDM, 30 steps) and gradient through the last step. The reference
loop is re-implemented here from the paper's code as we read it:

* one image per forward, gradients accumulated over 5 images, then one optimiser step;
* the whole embedding matrix is trainable with AdamW (weight decay on every row), and the gradient of
  the other rows is zeroed after backward;
* the gradient clip is called before backward (so it clips nothing);
* "the last step" under gradient is PNDM's last timestep index, which PNDM's repeated timestep turns
  into two UNet calls carrying gradient.

Usage:
    python benchmarks/optimizer_speed.py                   # the bundled shapes world if present, else tiny SD
    python benchmarks/optimizer_speed.py --generator DIR   # any diffusers folder
    python benchmarks/optimizer_speed.py --tiny            # random tiny SD components built from configs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def reference_step(gen, classifier, embedding_optimizer, token_id, prompt, seeds, target, steps, guidance):
    """One optimisation step of the reference loop: batch 1, accumulate, PNDM, clip before backward."""
    scheduler = gen.make_scheduler("pndm")
    embedding = gen.text_encoder.get_input_embeddings().weight
    embedding_optimizer.zero_grad()
    for seed in seeds:
        scheduler.set_timesteps(steps)
        timesteps = scheduler.timesteps
        cond = gen.encode([prompt]).to(gen.dtype)
        uncond = gen.encode([""]).to(gen.dtype)
        latents = gen.initial_latents([seed]) * scheduler.init_noise_sigma
        # The reference enabled grad for the final scheduler index range covering the repeated timestep.
        grad_from = len(timesteps) - 2
        for i, t in enumerate(timesteps):
            with torch.set_grad_enabled(i >= grad_from):
                model_in = scheduler.scale_model_input(torch.cat([latents, latents]), t)
                noise = gen.unet(model_in, t, encoder_hidden_states=torch.cat([uncond, cond])).sample
                noise_uncond, noise_cond = noise.chunk(2)
                noise = noise_uncond + guidance * (noise_cond - noise_uncond)
                latents = scheduler.step(noise, t, latents).prev_sample
        image = gen.decode(latents)
        loss = F.cross_entropy(classifier(image).float(), torch.tensor([target], device=image.device)) / len(seeds)
        torch.nn.utils.clip_grad_norm_([embedding], 1.0)  # before backward: a no-op, as in the reference
        loss.backward()
        # Zero every row's gradient but the token's, as the reference does.
        mask = torch.zeros_like(embedding.grad)
        mask[token_id] = 1
        embedding.grad.mul_(mask)
        scheduler = gen.make_scheduler("pndm")
    embedding_optimizer.step()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default=None)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from probe.generators import load_generator
    from probe.tokens import TokenConfig, optimize_class_token

    torch.manual_seed(0)
    source = args.generator
    if source is None and not args.tiny:
        try:
            from probe.world import bundled_generator_path

            source = str(bundled_generator_path())
        except Exception:
            source = None
    if source is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_sd import build_tiny_sd

        source = str(build_tiny_sd(Path(tempfile.mkdtemp()) / "tiny"))
    gen = load_generator(source, device="cpu")
    size = gen.image_size

    class MeanColour(torch.nn.Module):  # a stand-in classifier with a real backward pass
        labels = ["red", "green", "blue"]

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.head = torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.conv(x).relu().mean((2, 3)))

    classifier = MeanColour().requires_grad_(False)
    target, prompt_name, n_images = 0, "star", 5
    guidance = gen.defaults.guidance_scale if gen.defaults.guidance_scale > 1 else 4.0

    # Reference loop.
    token = "<ref>"
    token_id = gen.add_token(token, "a")
    embedding = gen.text_encoder.get_input_embeddings().weight
    embedding.requires_grad_(True)
    optimizer = torch.optim.AdamW([embedding], lr=5e-3, weight_decay=1e-2)
    seeds = list(range(n_images))
    reference_step(gen, classifier, optimizer, token_id, f"a photo of a {token} {prompt_name}", seeds, target,
                   args.steps, guidance)  # warm-up
    ref_times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        reference_step(gen, classifier, optimizer, token_id, f"a photo of a {token} {prompt_name}", seeds, target,
                       args.steps, guidance)
        ref_times.append(time.perf_counter() - start)
    embedding.requires_grad_(False)
    embedding.grad = None

    # probe's optimiser, same components, scheduler, steps, images per step; early stopping off.
    config = TokenConfig(max_steps=args.repeats + 1, patience=10**6, accuracy_threshold=1.0, batch_size=n_images,
                         steps=args.steps, guidance_scale=guidance, scheduler="pndm", templates=("a photo of a {}",))
    result = optimize_class_token(gen, classifier, target, config, class_name=prompt_name)
    seconds = [r["seconds"] for r in result.history]
    ours_times = [b - a for a, b in zip(seconds[:-1], seconds[1:])][-args.repeats:]

    # probe's optimiser at its own defaults (the generator's scheduler and step count), same images per step.
    defaults = TokenConfig(max_steps=args.repeats + 1, patience=10**6, accuracy_threshold=1.0, batch_size=n_images,
                           guidance_scale=guidance, templates=("a photo of a {}",))
    result = optimize_class_token(gen, classifier, target, defaults, class_name=prompt_name, token="<defaults>")
    seconds = [r["seconds"] for r in result.history]
    default_times = [b - a for a, b in zip(seconds[:-1], seconds[1:])][-args.repeats:]

    ref, ours, ours_default = (statistics.median(t) for t in (ref_times, ours_times, default_times))
    print(f"generator: {source} ({size}px, {type(gen.scheduler).__name__} -> PNDM {args.steps} steps), "
          f"{n_images} images/step, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"reference loop (batch 1 x 5 accumulated, 2 grad UNet calls): {ref:.3f} s/step  (runs: "
          + ", ".join(f"{t:.3f}" for t in ref_times) + ")")
    print(f"probe optimiser (one batch of 5, 1 grad UNet call):        {ours:.3f} s/step  (runs: "
          + ", ".join(f"{t:.3f}" for t in ours_times) + ")")
    print(f"speed-up, same sampler: {ref / ours:.2f}x")
    print(f"probe optimiser at the generator's defaults ({type(gen.scheduler).__name__}, {gen.defaults.steps} steps): "
          f"{ours_default:.3f} s/step, speed-up {ref / ours_default:.2f}x")


if __name__ == "__main__":
    main()
