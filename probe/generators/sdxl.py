"""SDXL generators (SDXL base 1.0, SDXL-Turbo and their fine-tunes): the family's differences from SD 1.x.

``load_generator`` picks this class for a ``StableDiffusionXLPipeline`` folder (``_class_name`` in
model_index.json) or the ``sdxl`` / ``sdxl-turbo`` aliases. What differs from :class:`probe.generators.Generator`:

1. Text: two CLIP encoders. Each prompt is tokenised by both; the hidden states of each encoder's penultimate
   layer are concatenated (768 + 1280 = 2048 features in SDXL), and the pooled, projected embedding of encoder 2
   conditions the UNet's addition embedding. With ``force_zeros_for_empty_prompt`` (SDXL base) the
   unconditional context is all zeros, as in diffusers.
2. Added conditioning: ``time_ids`` = original size + crop top-left + target size (image_size, (0, 0),
   image_size: uncropped images at the model's native size), with the pooled embedding as ``text_embeds``.
3. Packing: the context handed to the sampler is one tensor, the encoders' token states followed by one extra
   row holding the pooled embedding (zero-padded to the context width). The chunked gradient
   (probe/generators/gradient.py) therefore runs unchanged: it detaches, indexes and backpropagates one tensor per prompt,
   and the gradient reaches the token through both the token states and the pooled embedding.
4. VAE: SDXL's VAE overflows in fp16 (NaN images). When the model runs in fp16 and the VAE's config asks for it
   (``force_upcast``: True for SDXL's own VAE, False for a fixed fp16 VAE such as madebyollin/sdxl-vae-fp16-fix,
   which ``load_generator(vae=...)`` swaps in), the VAE is kept in float32 and latents are upcast to decode.

The class token: one trainable float32 vector per encoder (768 features for CLIP-L, 1280 for OpenCLIP-G in
SDXL), because the two encoders have different embedding spaces and widths: one shared vector projected into
both would need a learned projection that no diffusers pipeline can load, whereas two rows load with
``load_textual_inversion`` as they are. For the optimiser the two vectors are held as the two halves of one
float32 parameter (``trainable_token`` returns it; ``vector[:d_l]`` is encoder 1's row, ``vector[d_l:]``
encoder 2's). AdamW is elementwise and the gradient clipping is over the token's whole gradient either way, so
this is the same optimisation as two parameters, while the token loop, backoff, best-vector bookkeeping and
the run format keep seeing one vector per class. Token files use diffusers' SDXL textual-inversion layout:
``{"clip_l": row of encoder 1, "clip_g": row of encoder 2}`` (see :meth:`SDXLGenerator.save_token`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from probe.errors import GeneratorError
from probe.generators.generator import Generator, add_token_row, vocab_id

TOKEN_KEYS = ("clip_l", "clip_g")  # diffusers' SDXL textual-inversion keys: encoder 1, encoder 2


class SDXLGenerator(Generator):
    """A loaded StableDiffusionXLPipeline: two text encoders, pooled + size conditioning, a float32 VAE decode."""

    def __init__(self, pipe, **kwargs):
        super().__init__(pipe, **kwargs)
        self.tokenizer_2 = pipe.tokenizer_2
        self.text_encoder_2 = pipe.text_encoder_2
        self.text_encoder_2.requires_grad_(False)
        self.text_encoder_2.eval()
        self._ids_2: dict[int, int] = {}  # encoder 1's token id -> encoder 2's, for the substitution hook
        self._hook_2 = self.text_encoder_2.get_input_embeddings().register_forward_hook(self._substitute_tokens_2)
        self.zero_uncond = bool(getattr(pipe.config, "force_zeros_for_empty_prompt", True))
        # 1. VAE upcast: fp16 overflows in SDXL's VAE unless it is a fixed one (force_upcast False).
        if self.dtype == torch.float16 and getattr(self.vae.config, "force_upcast", False):
            self.vae.to(torch.float32)

    # ------------------------------------------------------------------ description
    @property
    def widths(self) -> tuple[int, int]:
        """(encoder 1, encoder 2) embedding widths: the two halves of the token's vector."""
        return (self.text_encoder.get_input_embeddings().weight.shape[1],
                self.text_encoder_2.get_input_embeddings().weight.shape[1])

    def describe(self) -> dict:
        info = super().describe()
        info.update({"family": "sdxl", "token_widths": list(self.widths),
                     "vae_dtype": str(self.vae.dtype).replace("torch.", "")})
        return info

    # ------------------------------------------------------------------ tokens
    def add_token(self, token: str, init_word: str = "a", *, reinitialise: bool = False) -> int:
        """Add ``token`` to both tokenizers, each row initialised from ``init_word`` in its own encoder."""
        token_id = super().add_token(token, init_word, reinitialise=reinitialise)
        self._ids_2[token_id], _ = add_token_row(self.tokenizer_2, self.text_encoder_2, token, init_word)
        emb = self.text_encoder_2.get_input_embeddings()
        if self._hook_2 is not None and emb is not getattr(self, "_hooked_2", None):
            self._hook_2.remove()
            emb.weight.requires_grad_(False)
            self._hook_2 = emb.register_forward_hook(self._substitute_tokens_2)
        self._hooked_2 = emb
        return token_id

    def _id_2(self, token: str) -> int:
        return vocab_id(self.tokenizer_2, token, f"token {token!r} is in the first tokenizer but not in tokenizer_2; "
                                                 "add it with add_token()")

    def _rows(self, token: str) -> torch.Tensor:
        w1 = self.text_encoder.get_input_embeddings().weight[self.token_id(token)]
        w2 = self.text_encoder_2.get_input_embeddings().weight[self._id_2(token)]
        return torch.cat([w1.detach().float().cpu(), w2.detach().float().cpu()])

    def token_vector(self, token: str) -> torch.Tensor:
        """The token's two rows, concatenated (encoder 1 then encoder 2), float32."""
        tid = self.token_id(token)
        if tid in self._trainable:
            return self._trainable[tid].detach().clone()
        return self._rows(token)

    def trainable_token(self, token: str) -> torch.nn.Parameter:
        """One float32 parameter, both encoders' rows end to end; it replaces them in every forward until commit."""
        tid = self.token_id(token)
        self._id_2(token)
        if tid not in self._trainable:
            device = self.text_encoder.get_input_embeddings().weight.device
            self._trainable[tid] = torch.nn.Parameter(self._rows(token).to(device))
        return self._trainable[tid]

    def split(self, vector: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(encoder 1 row, encoder 2 row) of a concatenated token vector."""
        d1, d2 = self.widths
        if vector.ndim != 1 or vector.shape[0] != d1 + d2:
            raise GeneratorError(f"an SDXL token vector has {d1}+{d2}={d1 + d2} features (clip_l, clip_g), got "
                                 f"{tuple(vector.shape)}; load a token learned with this generator family")
        return vector[:d1], vector[d1:]

    def _write_token_rows(self, token: str, vector: torch.Tensor) -> None:
        """Write both halves of ``vector`` into the token's rows of encoder 1 and encoder 2."""
        v1, v2 = self.split(vector)
        for encoder, row, part in ((self.text_encoder, self.token_id(token), v1),
                                   (self.text_encoder_2, self._id_2(token), v2)):
            weight = encoder.get_input_embeddings().weight
            with torch.no_grad():
                weight[row] = part.to(device=weight.device, dtype=weight.dtype)

    def token_state(self, token: str, vector: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """diffusers' SDXL textual-inversion state: {"clip_l": row of encoder 1, "clip_g": row of encoder 2}."""
        v = self.token_vector(token) if vector is None else vector
        v1, v2 = self.split(v.detach().float().cpu())
        return {"clip_l": v1.contiguous(), "clip_g": v2.contiguous()}

    def save_token(self, token: str, path: str | Path, vector: torch.Tensor | None = None) -> Path:
        """Write the token as one safetensors file with ``clip_l`` / ``clip_g``; load it in diffusers with
        ``pipe.load_textual_inversion(state["clip_l"], token=..., text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer)`` and the same with ``clip_g`` / ``text_encoder_2`` / ``tokenizer_2``."""
        from safetensors.torch import save_file

        from probe.files import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:  # the token string rides in the metadata, which diffusers ignores
            save_file(self.token_state(token, vector), str(tmp), metadata={"token": token})
        return path

    def load_token(self, path: str | Path, token: str | None = None) -> str:
        """Load a token file: diffusers' SDXL layout {clip_l, clip_g} (named by ``token``, else by the file's
        ``token`` metadata that :meth:`save_token` writes, else by the file's stem), or {token: both rows end to end}."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        state = load_file(str(path))
        if set(state) == set(TOKEN_KEYS):
            with safe_open(str(path), framework="pt") as f:
                named = (f.metadata() or {}).get("token")
            token = token or named or Path(path).stem
            vector = torch.cat([state["clip_l"].float().flatten(), state["clip_g"].float().flatten()])
        elif len(state) == 1:
            (name, vector), = state.items()
            token = token or name
        else:
            raise GeneratorError(f"{path} holds {sorted(state)}; an SDXL token file holds clip_l and clip_g, "
                                 "or exactly one {token: vector}")
        self.split(vector.flatten())  # a clear error before any row changes
        if token not in self.tokenizer.get_vocab() or token not in self.tokenizer_2.get_vocab():
            self.add_token(token, "a", reinitialise=token in self.tokenizer.get_vocab())
        self.commit_token(token, vector.flatten())
        return token

    def _substitute_tokens(self, module, inputs, output):
        return self._substitute(inputs[0], output, lambda tid: tid, 0)

    def _substitute_tokens_2(self, module, inputs, output):
        # encoder 1's token id -> encoder 2's, looked up once per token (get_vocab() copies the whole vocabulary)
        missing = [tid for tid in self._trainable if tid not in self._ids_2]
        if missing:
            vocab = self.tokenizer_2.get_vocab()
            for tid in missing:
                self._ids_2[tid] = vocab.get(self.tokenizer.convert_ids_to_tokens(tid), -1)
        return self._substitute(inputs[0], output, self._ids_2.get, 1)

    def _substitute(self, ids, output, id_in_encoder, half: int):
        if not self._trainable:
            return output
        d1 = self.widths[0]
        for tid, vector in self._trainable.items():
            part = vector[:d1] if half == 0 else vector[d1:]
            mask = (ids == id_in_encoder(tid)).unsqueeze(-1)
            if bool(mask.any()):
                output = torch.where(mask, part.to(output.dtype), output)
        return output

    # ------------------------------------------------------------------ text
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Packed context (N, L+1, D1+D2): both encoders' penultimate hidden states, then the pooled row."""
        states, pooled = [], None
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            ids = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(self.device)
            out = encoder(ids, output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = out[0]  # the last encoder's projected, pooled embedding (text_embeds)
        context = torch.cat(states, dim=-1)
        if pooled.ndim != 2:
            raise GeneratorError("text_encoder_2 did not return a pooled embedding; an SDXL pipeline needs a "
                                 "CLIPTextModelWithProjection as text_encoder_2")
        row = torch.zeros(context.shape[0], 1, context.shape[-1], dtype=context.dtype, device=context.device)
        row = torch.cat([pooled[:, None, :].to(context.dtype), row[..., pooled.shape[-1]:]], dim=-1)
        return torch.cat([context, row], dim=1)

    def _unconditional(self) -> torch.Tensor:
        if self._uncond_cache is None:
            with torch.no_grad():
                uncond = self.encode([""])
                self._uncond_cache = torch.zeros_like(uncond) if self.zero_uncond else uncond
        return self._uncond_cache

    def time_ids(self, n: int) -> torch.Tensor:
        """SDXL's size conditioning per image: original size, crop top-left (0, 0), target size."""
        size = self.image_size
        return torch.tensor([[size, size, 0, 0, size, size]], dtype=self.dtype, device=self.device).expand(n, -1)

    def unet_call(self, unet, model_in: torch.Tensor, t, context: torch.Tensor) -> torch.Tensor:
        """Unpack the context (token states, pooled row) into SDXL's UNet arguments."""
        pooled_width = int(self.text_encoder_2.config.projection_dim)
        states, pooled = context[:, :-1], context[:, -1, :pooled_width]
        added = {"text_embeds": pooled, "time_ids": self.time_ids(model_in.shape[0])}
        if self.sampling_autocast is not None and not torch.is_grad_enabled():  # as the base family does
            with torch.autocast(self.device.type, dtype=self.sampling_autocast):
                return unet(model_in, t, encoder_hidden_states=states, added_cond_kwargs=added).sample.to(model_in.dtype)
        return unet(model_in, t, encoder_hidden_states=states, added_cond_kwargs=added).sample
