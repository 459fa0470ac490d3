"""The bundled shapes-world pipeline: standard diffusers layout, CPU generation, fidelity smoke test."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from probe.world import bundled_generator_path, load_oracles  # noqa: E402
from probe.world.training.train import fidelity_cases, heldout_triples  # noqa: E402

STEPS = 10


@pytest.fixture(scope="module")
def pipe():
    from diffusers import StableDiffusionPipeline

    p = StableDiffusionPipeline.from_pretrained(str(bundled_generator_path()), dtype=torch.float32)
    p.set_progress_bar_config(disable=True)
    return p


def _sizes(path):
    return sum(f.stat().st_size for f in path.rglob("*.safetensors"))


def test_layout_and_size():
    path = bundled_generator_path()
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"] and index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
    assert index["safety_checker"] == [None, None] and index["requires_safety_checker"] is False
    meta = json.loads((path / "probe_generator.json").read_text())
    assert meta["image_size"] == 32 and meta["default_steps"] > 0 and meta["guidance_scale"] > 1
    assert _sizes(path) <= 20 * 2**20


def test_the_plain_from_pretrained_call_generates_on_a_cpu():
    """The README calls the bundled model a standard diffusers pipeline: the call without torch_dtype must work."""
    from diffusers import StableDiffusionPipeline

    plain = StableDiffusionPipeline.from_pretrained(str(bundled_generator_path()))
    plain.set_progress_bar_config(disable=True)
    dtypes = {plain.text_encoder.dtype, plain.unet.dtype, plain.vae.dtype}
    assert dtypes == {torch.float32}, dtypes
    images = plain("a photo of a star", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                   output_type="pt").images
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()


def test_generates_32px_images_and_new_tokens_work(pipe):
    assert pipe.vae_scale_factor == 2 and pipe.unet.config.sample_size == 16
    pipe.tokenizer.add_tokens("<probe-test>")  # what the audit does
    pipe.text_encoder.resize_token_embeddings(len(pipe.tokenizer))
    out = pipe(["a photo of a <probe-test> star", "a picture of a heart"], num_inference_steps=4,
               guidance_scale=4.0, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.images.shape == (2, 3, 32, 32)
    assert torch.isfinite(out.images).all() and out.images.std() > 0.05


def _fidelity(pipe, cases):
    images = pipe([c["prompt"] for c in cases], num_inference_steps=STEPS, guidance_scale=4.0,
                  generator=torch.Generator().manual_seed(1), output_type="pt").images
    pred = load_oracles().predict(images)
    return {a: sum(p == c[a] for p, c in zip(pred[a], cases)) / len(cases) for a in pred}


def _cases(n=12):
    cases = fidelity_cases(1)
    return cases[:: max(1, len(cases) // n)][:n]


def test_heldout_captions_are_never_trained_and_cover_every_value():
    held = heldout_triples()
    assert 10 <= len(held) <= 20
    assert len({s for s, _, _ in held}) >= 5 and len({c for _, c, _ in held}) == 5 and len({b for _, _, b in held}) == 5


def test_fidelity_smoke_on_heldout_captions(pipe):
    acc = _fidelity(pipe, _cases())
    assert all(v >= 0.75 for v in acc.values()), acc


def test_fidelity_smoke_fails_on_a_random_weight_pipeline(pipe):
    """The same check must fail on an untrained model of the same architecture (so it can catch breakage)."""
    from diffusers import StableDiffusionPipeline

    from probe.world import models

    torch.manual_seed(0)
    broken = StableDiffusionPipeline(
        vae=pipe.vae, text_encoder=models.build_text_encoder(pipe.tokenizer), tokenizer=pipe.tokenizer,
        unet=models.build_unet(), scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    broken.set_progress_bar_config(disable=True)
    acc = _fidelity(broken, _cases())
    assert min(acc.values()) < 0.75, acc


def test_oracles_are_right_on_renders():
    from probe.world.scenes import render_batch, sample_attributes
    import numpy as np

    attrs = sample_attributes(120, np.random.default_rng(7))
    images, _ = render_batch(attrs, generator=torch.Generator().manual_seed(7))
    oracles = load_oracles()
    probs = oracles.probabilities(images)
    for a, p in probs.items():
        assert p.shape == (120, len(oracles.vocab[a]))
        assert (p.argmax(-1).numpy() == attrs[a]).mean() >= 0.98, a
    assert set(oracles.predict(images[:2])) == {"shape", "color", "background", "tag"}
