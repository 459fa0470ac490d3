"""Train the shapes world's text-to-image model (VAE, then UNet + text encoder) and its oracles.

One script for the CPU (slow) and the GPU (same code): seeded, time-budgeted and resumable.
Stages, each skipped when its checkpoint says it is done:

1. tokenizer  - CLIP-format BPE over the caption words (``probe.world.text``)
2. vae        - AutoencoderKL, f=2 (32x32x3 -> 16x16x4), L1 + gradient + tiny KL loss
3. oracles    - one small CNN per attribute, on renders and on VAE reconstructions of renders
4. unet       - UNet2DConditionModel + CLIPTextModel from scratch, DDPM epsilon loss with
                min-SNR weighting, caption dropout for classifier-free guidance, EMA weights
5. evaluate   - oracle accuracy on images generated from held-out caption combinations

Usage: ``python -m probe.world.training.train --out checkpoints/world --budget 540``; then
``python -m probe.world.training.train --out checkpoints/world --export probe/world/assets/generator``.
The checkpoint is ``OUT/state.pt``; ``--parts DIR`` also writes it split into <=15 MB parts
(and a log) to DIR after every save, and a later run reassembles them.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from probe.errors import ProbeError
from probe.world import models
from probe.world.training.checkpoint import load_state, make_scheduler  # noqa: F401 (load_state is re-exported)
from probe.world.oracles import ATTRIBUTES, Oracles
from probe.world.scenes import BACKGROUNDS, COLORS, SHAPES, TAGS, render_batch, sample_attributes
from probe.world.text import CaptionEncoder, caption_batch, full_caption

PART_BYTES = 15 * 1024 * 1024


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (saved in the checkpoint)."""

    out: str = "checkpoints/world"
    seed: int = 0
    device: str = "auto"
    budget_s: float = 3600.0  # wall-clock budget of this invocation (the UNet stage fills what is left)
    vae_steps: int = 3000
    vae_batch: int = 256
    vae_lr: float = 1e-3
    oracle_steps: int = 1500
    oracle_batch: int = 256
    unet_steps: int = 200_000  # upper bound; the budget usually ends the stage first
    unet_batch: int = 256
    unet_lr: float = 5e-4
    warmup: int = 300
    caption_dropout: float = 0.1
    ema_decay: float = 0.9995
    min_snr_gamma: float = 5.0
    eval_every_s: float = 120.0
    save_every_s: float = 120.0
    reserve_s: float = 45.0  # kept at the end of the budget for the final evaluation and save
    parts: str | None = None
    bank_size: int = 200_000  # scenes rendered and encoded once for the UNet stage
    bank_chunk: int = 2048
    bank_max_s: float = 60.0

    def __post_init__(self):
        for name in ("vae_steps", "oracle_steps", "unet_steps"):
            if getattr(self, name) < 0:
                raise ProbeError(f"{name}={getattr(self, name)} must be >= 0")
        for name in ("vae_batch", "oracle_batch", "unet_batch"):
            if getattr(self, name) < 1:
                raise ProbeError(f"{name}={getattr(self, name)} must be >= 1")
        if not 0 <= self.caption_dropout < 1:
            raise ProbeError(f"caption_dropout={self.caption_dropout} must be in [0, 1)")
        if not 0 < self.ema_decay < 1:
            raise ProbeError(f"ema_decay={self.ema_decay} must be in (0, 1)")
        if self.budget_s <= 0:
            raise ProbeError(f"budget_s={self.budget_s} must be > 0 seconds")


def heldout_triples() -> list[tuple[int, int, int]]:
    """(shape, color, background) index triples never shown to the generator in training."""
    return [(s, c, b) for s in range(len(SHAPES)) for c in range(len(COLORS)) for b in range(len(BACKGROUNDS))
            if (s + 2 * c + 3 * b) % 10 == 0]


def _heldout_mask(attrs: dict[str, np.ndarray]) -> np.ndarray:
    held = {s * 100 + c * 10 + b for s, c, b in heldout_triples()}
    code = attrs["shape"] * 100 + attrs["color"] * 10 + attrs["background"]
    return np.isin(code, list(held))


def sample_training_attributes(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Uniform attributes, excluding the held-out (shape, color, background) triples."""
    out: dict[str, list] = {}
    have = 0
    while have < n:
        a = sample_attributes(2 * n, rng)
        keep = ~_heldout_mask(a)
        for k, v in a.items():
            out.setdefault(k, []).append(v[keep])
        have += int(keep.sum())
    return {k: np.concatenate(v)[:n] for k, v in out.items()}


def fidelity_cases(seeds_per_case: int = 1) -> list[dict[str, Any]]:
    """Held-out full captions: every held-out triple with every tag, ``seeds_per_case`` times."""
    cases = []
    for s, c, b in heldout_triples():
        for t in range(len(TAGS)):
            attrs = {"shape": SHAPES[s], "color": COLORS[c], "background": BACKGROUNDS[b], "tag": TAGS[t]}
            for k in range(seeds_per_case):
                cases.append({**attrs, "prompt": full_caption(attrs), "seed": k})
    return cases


def score_fidelity(images01: torch.Tensor, cases: list[dict[str, Any]], oracles: Oracles) -> dict[str, float]:
    """Fraction of images whose oracle prediction matches the prompt, per attribute."""
    pred = oracles.predict(images01)
    return {a: float(np.mean([p == case[a] for p, case in zip(pred[a], cases)])) for a in ATTRIBUTES}


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

class Log:
    def __init__(self, path: Path | None):
        self.path = path
        self.t0 = time.time()

    def __call__(self, msg: str):
        line = f"[{time.time() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        if self.path:
            with open(self.path, "a") as f:
                f.write(line + "\n")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ProbeError(f"device={name!r} but CUDA is not available: use --device cpu")
    return torch.device(name)


def _lr(step: int, total: int, warmup: int, peak: float, progress: float | None = None) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = progress if progress is not None else (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, p)))))


def _batch(n: int, rng: np.random.Generator, gen: torch.Generator, device, training=True):
    attrs = sample_training_attributes(n, rng) if training else sample_attributes(n, rng)
    images, _ = render_batch(attrs, generator=gen, device=device)
    return attrs, images


def save_state(state: dict, out: Path, parts: Path | None, log: Log):
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "state.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / "state.pt")
    if parts is not None:
        parts.mkdir(parents=True, exist_ok=True)
        data = (out / "state.pt").read_bytes()
        names = [f"state.pt.part{i // PART_BYTES:02d}" for i in range(0, len(data), PART_BYTES)]
        for name, i in zip(names, range(0, len(data), PART_BYTES)):  # the new parts first, under other names
            (parts / f".{name}.new").write_bytes(data[i:i + PART_BYTES])
        for name in names:  # then each swapped in: the earlier parts stay whole until the new ones are written
            os.replace(parts / f".{name}.new", parts / name)
        for old in parts.glob("state.pt.part*"):
            if old.name not in names:
                old.unlink()
    log(f"saved checkpoint ({(out / 'state.pt').stat().st_size / 2**20:.1f} MiB)")


def get_tokenizer(out: Path):
    from transformers import CLIPTokenizer

    from probe.generators.tokenizer import write_tokenizer
    from probe.world.text import caption_words

    folder = out / "tokenizer"
    if (folder / "tokenizer_config.json").exists():
        return CLIPTokenizer.from_pretrained(folder)
    return write_tokenizer(folder, caption_words())


@torch.no_grad()
def generate_latents(unet, text_encoder, encoder: CaptionEncoder, prompts: list[str], *, steps: int,
                     guidance: float, seed: int, device, dtype=torch.float32) -> torch.Tensor:
    """DDIM sampling with classifier-free guidance (the same maths as StableDiffusionPipeline)."""
    sched = make_scheduler("ddim")
    sched.set_timesteps(steps, device=device)
    ids = encoder(prompts).to(device)
    empty = encoder([""] * len(prompts)).to(device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        cond = text_encoder(ids)[0]
        uncond = text_encoder(empty)[0]
    ctx = torch.cat([uncond, cond])
    g = torch.Generator(device="cpu").manual_seed(seed)
    lat = torch.randn(len(prompts), 4, 16, 16, generator=g).to(device) * sched.init_noise_sigma
    for t in sched.timesteps:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            eps = unet(torch.cat([lat, lat]), t, ctx).sample.float()
        e_u, e_c = eps.chunk(2)
        lat = sched.step(e_u + guidance * (e_c - e_u), t, lat).prev_sample
    return lat


# ---------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------

def train_vae(cfg: TrainConfig, state: dict, device, log: Log, bf16: bool):
    vae = models.build_vae().to(device)
    if "vae" in state:
        vae.load_state_dict(state["vae"])
    start = state.get("vae_step", 0)
    if start >= cfg.vae_steps:
        return vae.eval()
    rng = np.random.default_rng(cfg.seed + 1 + start)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 1 + start)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    vae.train()
    t0 = time.time()
    for step in range(start, cfg.vae_steps):
        for grp in opt.param_groups:
            grp["lr"] = _lr(step, cfg.vae_steps, 100, cfg.vae_lr)
        _, img = _batch(cfg.vae_batch, rng, gen, device, training=False)
        x = img * 2 - 1
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            post = vae.encode(x).latent_dist
            rec = vae.decode(post.sample()).sample.float()
        l1 = (rec - x).abs().mean()
        grad = ((rec.diff(dim=-1) - x.diff(dim=-1)).abs().mean() + (rec.diff(dim=-2) - x.diff(dim=-2)).abs().mean())
        kl = post.kl().float().mean() / (16 * 16 * 4)
        loss = l1 + 0.5 * grad + 1e-5 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 250 == 0 or step == cfg.vae_steps - 1:
            log(f"vae step {step} l1 {l1.item():.4f} grad {grad.item():.4f} kl {kl.item():.2f} "
                f"({(time.time() - t0) / (step - start + 1):.3f} s/step)")
    state["vae"] = {k: v.detach().cpu() for k, v in vae.state_dict().items()}
    state["vae_step"] = cfg.vae_steps
    return vae.eval()


@torch.no_grad()
def latent_scale(vae, device, seed: int) -> float:
    rng = np.random.default_rng(seed + 7)
    gen = torch.Generator(device=device).manual_seed(seed + 7)
    _, img = _batch(1024, rng, gen, device, training=False)
    z = vae.encode(img * 2 - 1).latent_dist.mean
    return float(1.0 / z.float().std())


def train_oracles(cfg: TrainConfig, state: dict, vae, device, log: Log, bf16: bool) -> Oracles:
    oracles = Oracles().to(device)
    if "oracles" in state:
        oracles.load_state_dict(state["oracles"])
    if state.get("oracle_step", 0) >= cfg.oracle_steps:
        return oracles.eval()
    rng = np.random.default_rng(cfg.seed + 2)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 2)
    opt = torch.optim.AdamW(oracles.parameters(), lr=2e-3, weight_decay=1e-4)
    oracles.train()
    t0 = time.time()
    for step in range(cfg.oracle_steps):
        for grp in opt.param_groups:
            grp["lr"] = _lr(step, cfg.oracle_steps, 100, 2e-3)
        attrs, img = _batch(cfg.oracle_batch, rng, gen, device, training=False)
        # Augment as generated images look: half go through the VAE; blur and noise on some.
        with torch.no_grad():
            half = img.shape[0] // 2
            rec = vae.decode(vae.encode(img[:half] * 2 - 1).latent_dist.sample()).sample.float()
            img = torch.cat([((rec + 1) / 2).clamp(0, 1), img[half:]])
            blur = torch.rand(img.shape[0], 1, 1, 1, device=device, generator=gen) < 0.3
            soft = F.avg_pool2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
            img = torch.where(blur, 0.5 * img + 0.5 * soft, img)
            img = (img + 0.03 * torch.rand(img.shape[0], 1, 1, 1, device=device, generator=gen)
                   * torch.randn(img.shape, device=device, generator=gen)).clamp(0, 1)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = oracles(img)
        loss = sum(F.cross_entropy(logits[a].float(), torch.as_tensor(attrs[a], device=device)) for a in ATTRIBUTES)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == cfg.oracle_steps - 1:
            log(f"oracle step {step} loss {loss.item():.4f} ({(time.time() - t0) / (step + 1):.3f} s/step)")
    oracles.eval()
    acc = oracle_accuracy(oracles, device, cfg.seed + 99, 2048)
    log("oracle accuracy on fresh renders: " + ", ".join(f"{a} {v:.4f}" for a, v in acc.items()))
    state["oracles"] = {k: v.detach().cpu() for k, v in oracles.state_dict().items()}
    state["oracle_step"] = cfg.oracle_steps
    state["oracle_accuracy"] = acc
    return oracles


@torch.no_grad()
def oracle_accuracy(oracles: Oracles, device, seed: int, n: int = 2048) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    attrs, img = _batch(n, rng, gen, device, training=False)
    pred = oracles.probabilities(img)
    return {a: float((pred[a].argmax(-1).cpu().numpy() == attrs[a]).mean()) for a in ATTRIBUTES}


def evaluate(unet, text_encoder, vae, encoder, oracles, scale, device, *, steps=20, guidance=4.0,
             seeds_per_case=2, bf16=False) -> tuple[dict[str, float], torch.Tensor]:
    cases = fidelity_cases(seeds_per_case)
    images = []
    for i in range(0, len(cases), 256):
        chunk = cases[i:i + 256]
        lat = generate_latents(unet, text_encoder, encoder, [c["prompt"] for c in chunk], steps=steps,
                               guidance=guidance, seed=1000 + i, device=device,
                               dtype=torch.bfloat16 if bf16 else torch.float32)
        with torch.no_grad():
            img = vae.decode(lat / scale).sample.float()
        images.append(((img + 1) / 2).clamp(0, 1))
    images = torch.cat(images)
    return score_fidelity(images, cases, oracles), images


@torch.no_grad()
def build_bank(cfg: TrainConfig, vae, encoder: CaptionEncoder, rng, gen, device, log: Log, deadline: float,
               variants: int = 4) -> dict[str, torch.Tensor]:
    """Render training scenes once, keep their VAE posteriors and a few tokenised captions each."""
    t0 = time.time()
    limit = t0 + min(cfg.bank_max_s, 0.15 * max(1.0, deadline - t0))
    means, stds, ids = [], [], []
    n = 0
    while n < cfg.bank_size and (n == 0 or time.time() < limit):
        attrs, img = _batch(cfg.bank_chunk, rng, gen, device, training=True)
        post = vae.encode(img * 2 - 1).latent_dist
        means.append(post.mean.to(torch.bfloat16))
        stds.append(post.std.to(torch.bfloat16))
        caps = [caption_batch(attrs, rng) for _ in range(variants)]
        ids.append(torch.stack([encoder(c) for c in caps], dim=1).to(device))
        n += img.shape[0]
    bank = {"mean": torch.cat(means), "std": torch.cat(stds), "ids": torch.cat(ids)}
    log(f"training bank: {n} scenes x {variants} captions in {time.time() - t0:.1f} s")
    return bank


def train_unet(cfg: TrainConfig, state: dict, vae, oracles, tokenizer, device, log: Log, bf16: bool,
               deadline: float, save):
    scale = state["scaling_factor"]
    unet = models.build_unet().to(device)
    text = models.build_text_encoder(tokenizer).to(device)
    if "unet_ema" in state:  # resume: the raw weights restart from the EMA weights
        unet.load_state_dict(state["unet_ema"])
        text.load_state_dict(state["text_ema"])
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text).eval()
    for m in (ema_unet, ema_text):
        m.requires_grad_(False)
    params = list(unet.parameters()) + list(text.parameters())
    ema_params = list(ema_unet.parameters()) + list(ema_text.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.01, fused=device.type == "cuda")
    noise_sched = make_scheduler("ddpm")
    alphas = noise_sched.alphas_cumprod.to(device)
    snr_all = alphas / (1 - alphas)
    encoder = CaptionEncoder(tokenizer)
    start = state.get("unet_step", 0)
    rng = np.random.default_rng(cfg.seed + 3 + start)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 3 + start)
    if device.type == "cuda":
        unet.to(memory_format=torch.channels_last)
    bank = build_bank(cfg, vae, encoder, rng, gen, device, log, deadline)
    n_bank, n_var = bank["ids"].shape[:2]
    empty_ids = encoder([""]).to(device)
    t_start = time.time()
    stage_budget = max(1.0, deadline - t_start)
    last_eval = last_save = time.time()
    history = state.setdefault("history", [])
    step = start
    unet.train()
    text.train()
    while step < cfg.unet_steps and time.time() < deadline:
        progress = (time.time() - t_start) / stage_budget
        lr = _lr(step - start, cfg.unet_steps - start, cfg.warmup, cfg.unet_lr, progress=progress)
        for grp in opt.param_groups:
            grp["lr"] = lr
        b = cfg.unet_batch
        idx = torch.randint(0, n_bank, (b,), device=device, generator=gen)
        var = torch.randint(0, n_var, (b,), device=device, generator=gen)
        ids = bank["ids"][idx, var]
        drop = torch.rand(b, device=device, generator=gen) < cfg.caption_dropout
        ids = torch.where(drop[:, None], empty_ids, ids)
        mean, std = bank["mean"][idx].float(), bank["std"][idx].float()
        z = (mean + std * torch.randn(mean.shape, device=device, generator=gen)) * scale
        noise = torch.randn(z.shape, device=device, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (z.shape[0],), device=device, generator=gen)
        zt = noise_sched.add_noise(z, noise, t)
        if device.type == "cuda":
            zt = zt.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            ctx = text(ids)[0]
            pred = unet(zt, t, ctx).sample.float()
        snr = snr_all[t]
        weight = torch.clamp(snr, max=cfg.min_snr_gamma) / snr
        loss = (weight * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step - start) / (10 + step - start))
        torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1 - decay)
        step += 1
        if step % 200 == 0:
            rate = (time.time() - t_start) / (step - start)
            log(f"unet step {step} loss {loss.item():.4f} gnorm {float(gnorm):.2f} lr {lr:.2e} ({rate:.3f} s/step)")
            history.append({"step": step, "loss": float(loss.item()), "time": time.time()})
        now = time.time()
        if now - last_eval > cfg.eval_every_s and now < deadline - 30:
            fid, _ = evaluate(ema_unet, ema_text, vae, encoder, oracles, scale, device, seeds_per_case=1, bf16=bf16)
            log(f"unet step {step} held-out fidelity (EMA, 20 DDIM steps, g=4): " + ", ".join(f"{a} {v:.3f}" for a, v in fid.items()))
            history.append({"step": step, "fidelity": fid})
            last_eval = time.time()
        if now - last_save > cfg.save_every_s:
            state.update(unet_ema=_cpu(ema_unet), text_ema=_cpu(ema_text), unet_step=step)
            save()
            last_save = time.time()
    state.update(unet_ema=_cpu(ema_unet), text_ema=_cpu(ema_text), unet_step=step)
    log(f"unet stage ends at step {step} after {time.time() - t_start:.0f} s")
    return ema_unet, ema_text, encoder


def _cpu(module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------

def train(config: TrainConfig) -> dict:
    """Run (or resume) every stage within ``config.budget_s`` seconds; returns the checkpoint state."""
    t0 = time.time()
    deadline = t0 + config.budget_s - config.reserve_s
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = Path(config.parts) if config.parts else None
    if parts is not None:
        parts.mkdir(parents=True, exist_ok=True)
    log = Log(parts / "train.log" if parts else out / "train.log")
    device = _device(config.device)
    bf16 = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(config.seed)
    state = load_state(out, parts) or {}
    state["config"] = asdict(config)
    log(f"device {device} (bf16 {bf16}); resuming from {({k: state.get(k) for k in ('vae_step', 'oracle_step', 'unet_step')})}")
    tokenizer = get_tokenizer(out)

    def save():
        save_state(state, out, parts, log)

    vae = train_vae(config, state, device, log, bf16)
    vae.requires_grad_(False)
    if "scaling_factor" not in state:
        state["scaling_factor"] = latent_scale(vae, device, config.seed)
        log(f"latent scaling factor {state['scaling_factor']:.4f}")
    oracles = train_oracles(config, state, vae, device, log, bf16)
    oracles.requires_grad_(False)
    save()
    unet, text, encoder = train_unet(config, state, vae, oracles, tokenizer, device, log, bf16, deadline, save)
    save()
    if config.reserve_s > 0 and state.get("unet_step", 0) > 0:
        state["final_fidelity"] = []
        for steps, guidance in ((20, 4.0), (20, 2.5), (20, 6.0), (10, 4.0)):
            if time.time() > t0 + config.budget_s - 12:
                break
            fid, images = evaluate(unet, text, vae, encoder, oracles, state["scaling_factor"], device,
                                   steps=steps, guidance=guidance, seeds_per_case=4, bf16=bf16)
            log(f"final held-out fidelity (steps {steps}, guidance {guidance}, {images.shape[0]} images): "
                + ", ".join(f"{a} {v:.3f}" for a, v in fid.items()))
            state.setdefault("final_fidelity", []).append({"steps": steps, "guidance": guidance, **fid})
            if parts is not None and (steps, guidance) == (20, 4.0):
                _save_grid(images[: 8 * 12], parts / "samples.png")
        save()
    log(f"done in {time.time() - t0:.0f} s")
    return state


def _save_grid(images: torch.Tensor, path: Path, cols: int = 12):
    from PIL import Image

    n = images.shape[0]
    rows = math.ceil(n / cols)
    grid = torch.ones(3, rows * 34, cols * 34)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[:, r * 34 + 1:r * 34 + 33, c * 34 + 1:c * 34 + 33] = images[i].cpu()
    arr = (grid.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(arr).resize((arr.shape[1] * 3, arr.shape[0] * 3), Image.NEAREST).save(path)


def main(argv: list[str] | None = None):
    p = argparse.ArgumentParser(prog="python -m probe.world.training.train", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="checkpoints/world")
    p.add_argument("--budget", type=float, default=3600.0, help="seconds for this invocation")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae-steps", type=int, default=TrainConfig.vae_steps)
    p.add_argument("--oracle-steps", type=int, default=TrainConfig.oracle_steps)
    p.add_argument("--unet-steps", type=int, default=TrainConfig.unet_steps)
    p.add_argument("--vae-batch", type=int, default=TrainConfig.vae_batch)
    p.add_argument("--oracle-batch", type=int, default=TrainConfig.oracle_batch)
    p.add_argument("--unet-batch", type=int, default=TrainConfig.unet_batch)
    p.add_argument("--unet-lr", type=float, default=TrainConfig.unet_lr)
    p.add_argument("--eval-every", type=float, default=TrainConfig.eval_every_s)
    p.add_argument("--save-every", type=float, default=TrainConfig.save_every_s)
    p.add_argument("--reserve", type=float, default=TrainConfig.reserve_s)
    p.add_argument("--bank-size", type=int, default=TrainConfig.bank_size)
    p.add_argument("--parts", default=None, help="also write the checkpoint as <=15 MB parts and the log here")
    a = p.parse_args(argv)
    cfg = TrainConfig(out=a.out, seed=a.seed, device=a.device, budget_s=a.budget, vae_steps=a.vae_steps,
                      oracle_steps=a.oracle_steps, unet_steps=a.unet_steps, vae_batch=a.vae_batch,
                      oracle_batch=a.oracle_batch, unet_batch=a.unet_batch, unet_lr=a.unet_lr,
                      eval_every_s=a.eval_every, save_every_s=a.save_every, reserve_s=a.reserve, parts=a.parts,
                      bank_size=a.bank_size, bank_chunk=min(TrainConfig.bank_chunk, a.bank_size))
    train(cfg)


if __name__ == "__main__":
    main()
