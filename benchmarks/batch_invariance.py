"""Is generation batch-invariant? The same (prompt, seed) images generated in batches of different sizes and orders
(issue 21 item 2: a class measured alone on a Ray worker or a shard is batched differently from a local run that
batches every class together; its findings equal the local run's exactly only where the pixels do).

    .venv/bin/python benchmarks/batch_invariance.py        # the shapes world on the CPU, this process's threads
    .venv/bin/python benchmarks/batch_invariance.py 1      # one torch thread, as a Ray worker with one CPU slot

Measured 3 December 2026 on this 2-core machine (loaded by other jobs), one thread, 8 prompts at 5 DDIM steps: a batch of 8 equals 3 + 5
and the reversed order bit for bit; batches of 1 differ (max |pixel| 7.2e-7, P(class) by 1.2e-7), and the world's
classifier alone gives P(class) 6e-8 apart for a batch of 8 against 1 on the same images.
"""
import sys

import torch

from probe.classifiers import load_classifier
from probe.generators import load_generator
from probe.world.demo import DEMO_STEPS, demo_config

cfg = demo_config(out="unused")
if len(sys.argv) > 1:
    torch.set_num_threads(int(sys.argv[1]))
threads = torch.get_num_threads()
gen = load_generator(cfg.generator, device="cpu")
clf = load_classifier(cfg.model, device="cpu")
prompts = [f"a photo of a {s} on {b}" for s in ("star", "circle", "heart", "triangle") for b in ("grass", "sand")]
seeds = list(range(7000, 7000 + len(prompts)))
kw = dict(steps=DEMO_STEPS, guidance_scale=2.0)
with torch.no_grad():
    full = gen.generate(prompts, seeds, **kw).float()
    singles = torch.cat([gen.generate([p], [s], **kw).float() for p, s in zip(prompts, seeds)])
    split = torch.cat([gen.generate(prompts[:3], seeds[:3], **kw).float(), gen.generate(prompts[3:], seeds[3:], **kw).float()])
    reverse = gen.generate(prompts[::-1], seeds[::-1], **kw).float().flip(0)
    pf, ps = torch.softmax(clf(full), -1), torch.softmax(clf(singles), -1)
    alone = torch.cat([torch.softmax(clf(full[i:i + 1]), -1) for i in range(len(full))])
for name, other in (("1 x 8", singles), ("3 + 5", split), ("reversed", reverse)):
    d = (full - other).abs()
    print(f"threads={threads} batch of 8 vs {name}: bit-identical={torch.equal(full, other)} max|pixel|={d.max():.3g} "
          f"pixels differing={int((d > 0).sum())}/{d.numel()}")
print(f"classifier on the batch-of-8 vs the 1 x 8 images: max|dP|={(pf - ps).abs().max():.3g}")
print(f"classifier alone, the same images, batch 8 vs 1: bit-identical={torch.equal(pf, alone)} "
      f"max|dP|={(pf - alone).abs().max():.3g}")
