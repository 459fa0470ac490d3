"""The Generator: a loaded diffusers text-to-image pipeline with the operations the token optimiser needs.

``Generator.generate`` samples a batch of (prompt, seed) pairs with classifier-free guidance and keeps the autograd
graph only through the last ``grad_steps`` UNet calls and the VAE decode, so a class token can be optimised through it.

How a token is trained without touching anything else: the token gets its own row in the text
encoder's embedding matrix (so saved tokens work in any diffusers pipeline), but during
optimisation a forward hook on the embedding layer substitutes a separate trainable vector at the
token's positions. The matrix, the text encoder, the UNet and the VAE never require grad, so the
gradient can only reach that vector; ``commit_token`` copies the result into the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from probe.devices import native_bf16
from probe.errors import GeneratorError
from probe.generators.registry import SCHEDULERS


@dataclass(frozen=True)
class SamplingDefaults:
    steps: int
    guidance_scale: float


class Generator:
    """A loaded text-to-image pipeline with the operations the token optimiser needs."""

    def __init__(self, pipe, *, source: str, device: torch.device, dtype: torch.dtype,
                 defaults: SamplingDefaults, settings: dict | None = None, alias: str | None = None,
                 licence: str | None = None, lora: str | None = None):
        self.pipe = pipe
        self.source = source
        self.alias = alias
        self.licence = licence
        self.lora = lora
        self._compiled: tuple | None = None  # (unet, decode) under torch.compile, see compile()
        self.device = device
        self.dtype = dtype
        self.defaults = defaults
        self.settings = dict(settings or {})
        self.tokenizer = pipe.tokenizer
        self.text_encoder = pipe.text_encoder
        self.unet = pipe.unet
        self.vae = pipe.vae
        self.scheduler = pipe.scheduler
        for module in (self.text_encoder, self.unet, self.vae):
            module.requires_grad_(False)
            module.eval()
        # Channels-last layout on a GPU (tensor cores). Not on the CPU: under the bf16 sampling autocast its group
        # norms ran 5-30x slower than in the default layout, and the shapes-world UNet 1.35x slower per image
        # (batches of 10-64, 1 and 2 threads, torch 2.14, 5 December 2026); in float32 the two layouts tie.
        if torch.device(device).type == "cuda":
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)
        self.sampling_autocast = _sampling_autocast(self.settings, device, dtype)
        self._trainable: dict[int, torch.nn.Parameter] = {}
        self._hook = self.text_encoder.get_input_embeddings().register_forward_hook(self._substitute_tokens)
        self._uncond_cache: torch.Tensor | None = None

    # ------------------------------------------------------------------ description
    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    def describe(self) -> dict:
        return {
            "source": self.source,
            "alias": self.alias,
            "licence": self.licence,
            "lora": self.lora,
            "compiled": self.is_compiled,
            "pipeline": type(self.pipe).__name__,
            "scheduler": type(self.scheduler).__name__,
            "image_size": self.image_size,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "sampling_autocast": str(self.sampling_autocast).replace("torch.", "") if self.sampling_autocast else None,
            "default_steps": self.defaults.steps,
            "guidance_scale": self.defaults.guidance_scale,
        }

    def __repr__(self) -> str:
        return (f"Generator({self.source!r}, {type(self.scheduler).__name__}, {self.image_size}px, "
                f"{self.device}, {str(self.dtype).replace('torch.', '')})")

    # ------------------------------------------------------------------ compilation
    @property
    def is_compiled(self) -> bool:
        return self._compiled is not None

    def compile(self, *, backend: str | None = None) -> "Generator":
        """``torch.compile`` the UNet and the VAE decode for the token gradient step (idempotent).

        Shapes are static (``dynamic=False``): each distinct batch shape compiles once per Generator, i.e. once
        per run (the sampling batch and the gradient chunk; a short last chunk is padded to the chunk size by
        probe/generators/gradient.py), never per class. Evaluation
        and analysis images keep the eager modules, whose batch sizes vary. Pays on a GPU for long runs: the
        issue's measurement on one H200 was ~180 s of compiling for 1.6x per step (SD 1.x, 512 px, fp16).
        """
        if self._compiled is None:
            options = {"dynamic": False} if backend is None else {"dynamic": False, "backend": backend}
            vae = self.vae
            self._compiled = (torch.compile(self.unet, **options),
                              torch.compile(lambda z: vae.decode(z).sample, **options))
        return self

    # ------------------------------------------------------------------ tokens
    def add_token(self, token: str, init_word: str = "a", *, reinitialise: bool = False) -> int:
        """Add ``token`` to the vocabulary with its row initialised from ``init_word``.

        ``init_word`` may span several tokens (e.g. a class name); their mean is used. A token that is
        already there is an error, unless ``reinitialise`` is set: then its row is reset from ``init_word``
        (a Generator reused for a second audit must not start from the first audit's tokens).
        """
        if token in self.tokenizer.get_vocab():
            if not reinitialise:
                raise GeneratorError(f"token {token!r} is already in the tokenizer's vocabulary; choose another token string")
            self._trainable.pop(self.token_id(token), None)
        token_id, resized = add_token_row(self.tokenizer, self.text_encoder, token, init_word)
        if resized:  # resize replaces the module: hook the new one and keep it frozen.
            self._hook.remove()
            emb = self.text_encoder.get_input_embeddings()
            emb.weight.requires_grad_(False)
            self._hook = emb.register_forward_hook(self._substitute_tokens)
        return token_id

    def token_id(self, token: str) -> int:
        return vocab_id(self.tokenizer, token, f"token {token!r} is not in the tokenizer; add it with add_token() or "
                                               "load_token()")

    def token_vector(self, token: str) -> torch.Tensor:
        """The token's current embedding (the trainable vector while training, else its row)."""
        tid = self.token_id(token)
        if tid in self._trainable:
            return self._trainable[tid].detach().clone()
        return self.text_encoder.get_input_embeddings().weight[tid].detach().float().clone()

    def trainable_token(self, token: str) -> torch.nn.Parameter:
        """A float32 parameter that replaces the token's row in every forward until ``commit_token``."""
        tid = self.token_id(token)
        if tid not in self._trainable:
            row = self.text_encoder.get_input_embeddings().weight[tid].detach().float().clone()
            self._trainable[tid] = torch.nn.Parameter(row)
        return self._trainable[tid]

    def commit_token(self, token: str, vector: torch.Tensor | None = None) -> None:
        """Write ``vector`` (default: the trainable one) into the token's row and stop substituting."""
        tid = self.token_id(token)
        param = self._trainable.pop(tid, None)
        if vector is None:
            if param is None:
                return
            vector = param.detach()
        self._write_token_rows(token, vector.detach())

    def _write_token_rows(self, token: str, vector: torch.Tensor) -> None:
        """Write ``vector`` into the token's embedding row (a family with more text encoders writes each)."""
        weight = self.text_encoder.get_input_embeddings().weight
        with torch.no_grad():
            weight[self.token_id(token)] = vector.to(device=weight.device, dtype=weight.dtype)

    def load_token(self, path: str | Path, token: str | None = None) -> str:
        """Load a textual-inversion file (diffusers format: {token: vector}); returns the token string."""
        from safetensors.torch import load_file

        state = load_file(str(path))
        if len(state) != 1:
            raise GeneratorError(f"{path} holds {len(state)} tensors; a token file holds exactly one {{token: vector}}")
        (name, vector), = state.items()
        width = int(self.text_encoder.get_input_embeddings().weight.shape[1])
        if vector.numel() != width:  # checked before the token is added: a refused file leaves the tokenizer as it was
            raise GeneratorError(f"{path} holds a {vector.numel()}-wide token and this generator's text encoder is "
                                 f"{width} wide: it was learned with another generator; pass the generator the run "
                                 "was audited with")
        token = token or name
        if token not in self.tokenizer.get_vocab():
            self.add_token(token, "a")
        self.commit_token(token, vector)
        return token

    def _substitute_tokens(self, module, inputs, output):
        if not self._trainable:
            return output
        ids = inputs[0]
        for tid, vector in self._trainable.items():
            mask = (ids == tid).unsqueeze(-1)
            if bool(mask.any()):
                output = torch.where(mask, vector.to(output.dtype), output)
        return output

    # ------------------------------------------------------------------ text
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompt embeddings (N, L, D); differentiable in any trainable token."""
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids)[0]

    def _unconditional(self) -> torch.Tensor:
        if self._uncond_cache is None:
            with torch.no_grad():
                self._uncond_cache = self.encode([""])
        return self._uncond_cache

    # ------------------------------------------------------------------ sampling
    def make_scheduler(self, name: str | None = None):
        """A fresh scheduler per call: schedulers keep state (PNDM's history, step index)."""
        import diffusers

        if name is None:
            return type(self.scheduler).from_config(self.scheduler.config)
        if name not in SCHEDULERS:
            raise GeneratorError(f"--scheduler {name!r} is unknown; use one of {', '.join(SCHEDULERS)}")
        return getattr(diffusers, SCHEDULERS[name]).from_config(self.scheduler.config)

    def initial_latents(self, seeds: Sequence[int]) -> torch.Tensor:
        """One latent per seed, drawn on the CPU so a seed gives the same image on every device."""
        size = int(self.unet.config.sample_size)
        shape = (int(self.unet.config.in_channels), size, size)
        noise = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds]
        return torch.stack(noise).to(self.device, self.dtype)

    def start_sampling(self, seeds: Sequence[int], *, steps: int | None = None, guidance_scale: float | None = None,
                       grad_steps: int = 0, scheduler: str | None = None) -> "Sampling":
        """A fresh sampling plan and the initial latents for ``seeds`` (one per image)."""
        steps = int(steps or self.defaults.steps)
        guidance = self.defaults.guidance_scale if guidance_scale is None else float(guidance_scale)
        if grad_steps < 0 or grad_steps > steps:
            raise GeneratorError(f"grad_steps={grad_steps} must be between 0 and steps={steps}")
        sched = self.make_scheduler(scheduler)
        try:
            sched.set_timesteps(steps, device=self.device)
        except ValueError as e:  # LCM: at most its original 50 steps
            raise GeneratorError(f"--steps {steps} does not suit the {type(sched).__name__} sampler ({e}); use "
                                 "fewer --steps or another --scheduler") from None
        latents = self.initial_latents(seeds) * sched.init_noise_sigma
        # PNDM repeats a timestep, so count UNet calls, not scheduler steps: exactly grad_steps calls carry grad.
        return Sampling(scheduler=sched, timesteps=sched.timesteps, guidance=guidance,
                        first_grad=len(sched.timesteps) - grad_steps, latents=latents,
                        step_noise=step_noise_generators(sched, seeds))

    def denoise(self, sampling: "Sampling", i: int, latents: torch.Tensor, uncond: torch.Tensor, cond: torch.Tensor,
                max_batch: int | None = None, scheduler=None, compiled: bool = False, which=None) -> torch.Tensor:
        """UNet call ``i`` of the plan (classifier-free guidance when on) and its scheduler step.

        ``max_batch`` splits the UNet call into chunks of that many *images* (2 rows each under guidance).
        ``scheduler`` replaces the plan's scheduler (a copy holding only some images' state), and ``which`` names
        those images (indices into the plan's batch, None for any padding copy); ``compiled`` uses the compiled UNet
        when :meth:`compile` was called.
        """
        sched = sampling.scheduler if scheduler is None else scheduler
        unet = self._compiled[0] if (compiled and self._compiled) else self.unet
        t = sampling.timesteps[i]
        n = latents.shape[0]
        step = max_batch or n
        parts = []
        for start in range(0, n, step):
            rows = slice(start, start + step)
            if sampling.use_cfg:
                model_in = torch.cat([latents[rows], latents[rows]])
                context = torch.cat([uncond[rows], cond[rows]])
            else:
                model_in, context = latents[rows], cond[rows]
            noise = self.unet_call(unet, sched.scale_model_input(model_in, t), t, context)
            if sampling.use_cfg:
                noise_uncond, noise_cond = noise.chunk(2)
                noise = noise_uncond + sampling.guidance * (noise_cond - noise_uncond)
            parts.append(noise)
        noise = parts[0] if len(parts) == 1 else torch.cat(parts)
        if sampling.step_noise is None:
            return sched.step(noise, t, latents).prev_sample
        picked = sampling.step_noise if which is None else [
            sampling.step_noise[r] if r is not None else torch.Generator("cpu").manual_seed(0) for r in which]
        return sched.step(noise, t, latents, generator=picked).prev_sample

    def unet_call(self, unet, model_in: torch.Tensor, t, context: torch.Tensor) -> torch.Tensor:
        """The UNet's noise prediction for ``model_in`` at ``t`` under the text ``context`` (a family may unpack more
        conditioning from it, see probe/generators/sdxl.py). Calls without gradient run under the generator's
        ``sampling_autocast`` when it has one (see :func:`_sampling_autocast`)."""
        if self.sampling_autocast is not None and not torch.is_grad_enabled():
            with torch.autocast(self.device.type, dtype=self.sampling_autocast):
                return unet(model_in, t, encoder_hidden_states=context).sample.to(model_in.dtype)
        return unet(model_in, t, encoder_hidden_states=context).sample

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in backward instead of keeping them, in the UNet and the VAE decoder."""
        for module in (self.unet, self.vae):
            if not getattr(module, "_supports_gradient_checkpointing", False):
                continue
            if enabled and not module.is_gradient_checkpointing:
                module.enable_gradient_checkpointing()
            elif not enabled and module.is_gradient_checkpointing:
                module.disable_gradient_checkpointing()

    def text_context(self, prompts: Sequence[str], *, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(unconditional, conditional) prompt embeddings in the model's dtype, one row per prompt."""
        with torch.set_grad_enabled(grad):
            cond = self.encode(prompts).to(self.dtype)
        uncond = self._unconditional().to(self.dtype).expand(len(prompts), -1, -1)
        return uncond, cond

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], *, steps: int | None = None,
                 guidance_scale: float | None = None, grad_steps: int = 0, max_batch: int | None = None,
                 scheduler: str | None = None, gradient_checkpointing: bool = False) -> torch.Tensor:
        """Images (N,3,H,W) float32 in [0,1] for prompt i with seed i.

        Only the last ``grad_steps`` UNet calls and the VAE decode carry gradient (0: none). The whole
        batch goes through the UNet together, split into chunks of ``max_batch`` images if given. To
        optimise a token with bounded memory, use :func:`probe.generators.gradient.token_gradient_step` instead:
        it takes the gradient chunk by chunk, where this keeps every chunk's graph until one backward.
        """
        if len(prompts) != len(seeds):
            raise GeneratorError(f"got {len(prompts)} prompts but {len(seeds)} seeds; pass one seed per prompt")
        sampling = self.start_sampling(seeds, steps=steps, guidance_scale=guidance_scale, grad_steps=grad_steps,
                                       scheduler=scheduler)
        self.unet.train(False)
        self.set_gradient_checkpointing(gradient_checkpointing)
        uncond, cond = self.text_context(prompts, grad=grad_steps > 0)
        latents = sampling.latents
        for i in range(len(sampling.timesteps)):
            with torch.set_grad_enabled(i >= sampling.first_grad):
                latents = self.denoise(sampling, i, latents, uncond, cond, max_batch)
        with torch.set_grad_enabled(grad_steps > 0):
            images = self.decode(latents, max_batch)
        return images

    def decode(self, latents: torch.Tensor, max_batch: int | None = None, *, compiled: bool = False) -> torch.Tensor:
        """Latents to images (N,3,H,W) float32 in [0,1], ``max_batch`` images per VAE call."""
        scale = self.vae.config.scaling_factor
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        latents = (latents / scale + shift).to(self.vae.dtype)  # the VAE may run in float32 (SDXL's upcast)
        step = max_batch or latents.shape[0]
        decode = self._compiled[1] if (compiled and self._compiled) else (lambda z: self.vae.decode(z).sample)
        parts = [decode(latents[i:i + step]) for i in range(0, latents.shape[0], step)]
        images = (parts[0] if len(parts) == 1 else torch.cat(parts)).float()
        return (images / 2 + 0.5).clamp(0, 1)


def add_token_row(tokenizer, text_encoder, token: str, init_word: str) -> tuple[int, bool]:
    """Add ``token`` to ``tokenizer`` if missing and set its row of ``text_encoder``'s embedding to the mean of
    ``init_word``'s tokens; returns (token id, whether the embedding was resized, i.e. replaced)."""
    init_ids = tokenizer(init_word, add_special_tokens=False).input_ids
    if not init_ids:
        raise GeneratorError(f"init word {init_word!r} produced no tokens; use a plain word such as 'a'")
    if token not in tokenizer.get_vocab():
        tokenizer.add_tokens(token)
    token_id = tokenizer.convert_tokens_to_ids(token)
    resized = token_id >= text_encoder.get_input_embeddings().weight.shape[0]
    if resized:
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[token_id] = weight[init_ids].float().mean(0).to(weight.dtype)
    return token_id, resized


@dataclass
class Sampling:
    """One sampling run's plan: a fresh scheduler, its timesteps (one per UNet call), the guidance scale,
    the index of the first UNet call that carries gradient, and the initial latents."""

    scheduler: object
    timesteps: torch.Tensor
    guidance: float
    first_grad: int
    latents: torch.Tensor
    step_noise: list | None = None  # a stochastic sampler's per-image noise streams (step_noise_generators)

    @property
    def use_cfg(self) -> bool:
        return self.guidance > 1.0

    @property
    def calls(self) -> int:
        return len(self.timesteps)



def step_noise_generators(scheduler, seeds: Sequence[int]) -> list[torch.Generator] | None:
    """One CPU noise stream per image for a sampler that adds noise at each step (LCM, Euler ancestral, DDPM: their
    ``step`` takes a ``generator``), seeded from the image's seed; None for a deterministic one (DDIM, PNDM, DPM).
    With the global RNG in their place, a seed gave another image at each call, batch size, chunking and shard."""
    import inspect

    if "generator" not in inspect.signature(scheduler.step).parameters:
        return None
    # a stream apart from the initial latents' (Generator(seed)): the same seed would replay that noise
    return [torch.Generator("cpu").manual_seed((int(s) * 6364136223846793005 + 1442695040888963407) % 2 ** 63)
            for s in seeds]


def vocab_id(tokenizer, token: str, missing: str) -> int:
    """``token``'s id in ``tokenizer``'s vocabulary; a GeneratorError with the message ``missing`` when absent."""
    vocab = tokenizer.get_vocab()
    if token not in vocab:
        raise GeneratorError(missing)
    return vocab[token]


def cpu_sampling_precision(settings: dict, native_bf16: bool) -> str:
    """What a float32 pipeline's no-gradient images are sampled in on a CPU: "bfloat16 autocast" where its
    probe_generator.json opts in (``cpu_sampling_autocast``, set only where its fidelity was measured under it) and
    the CPU computes bfloat16 natively (probe.devices.native_bf16), else "float32". Gradient steps stay float32.
    The generator (:func:`_sampling_autocast`) and the cost model's throughput rows read this one answer."""
    wanted = str(settings.get("cpu_sampling_autocast") or "").lower()
    return "bfloat16 autocast" if native_bf16 and wanted in ("bfloat16", "bf16") else "float32"


def _sampling_autocast(settings: dict, device: torch.device, dtype: torch.dtype) -> torch.dtype | None:
    """The autocast dtype of no-gradient UNet calls: ``cpu_sampling_autocast`` of the folder's probe_generator.json
    ("bfloat16"), used only on a CPU with native bfloat16 (AVX512-BF16 or AMX) and a float32 model; else None.

    A pipeline opts in only where its fidelity was measured under it (the shapes world's: benchmarks/world_fidelity.py
    --autocast); gradient steps stay in float32 whatever the setting.
    """
    if not settings.get("cpu_sampling_autocast") or torch.device(device).type != "cpu" or dtype != torch.float32:
        return None
    return torch.bfloat16 if cpu_sampling_precision(settings, native_bf16()) == "bfloat16 autocast" else None
