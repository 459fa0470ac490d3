"""The chunked token gradient: equal to the one-backward gradient, only the token receives it, chunks freed in turn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from probe.generators.gradient import chunk_slices, token_gradient_step
from probe.tokens import TokenConfig, optimize_class_token

PROMPTS = ["a photo of a <t> star", "a close-up photo of a <t> star", "a picture of a <t> star"] * 2
PROMPTS = PROMPTS[:5]
SEEDS = [0, 1, 2, 3, 4]
TARGET = 1


def _classifier():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(6, 3))
    return net.requires_grad_(False).eval()


def _loss_fn(classifier):
    def loss_fn(images, rows):
        logits = classifier(images).float()
        labels = torch.full((images.shape[0],), TARGET, dtype=torch.long)
        return F.cross_entropy(logits, labels), logits
    return loss_fn


def _unchunked(generator, classifier, vector, **kw):
    """The reference: the whole batch's graph, one loss, one backward (what probe did before chunking)."""
    vector.grad = None
    images = generator.generate(PROMPTS, SEEDS, **kw)
    logits = classifier(images).float()
    loss = F.cross_entropy(logits, torch.full((len(SEEDS),), TARGET, dtype=torch.long))
    loss.backward()
    return float(loss.detach()), logits.detach(), vector.grad.clone()


@pytest.mark.parametrize("scheduler,grad_steps", [("ddim", 1), ("pndm", 2), ("dpm", 1), ("euler-ancestral", 2),
                                                  ("lcm", 1)])
def test_chunked_gradient_equals_the_unchunked_one(tiny_generator, scheduler, grad_steps):
    # PNDM and DPM keep per-image history in the scheduler: each chunk must continue from its own rows of it.
    # Euler ancestral and LCM add noise at each step: each image's own stream, whatever the chunk (they drew it from
    # the global RNG, so no two calls gave the same images; found by review, 7 December 2026).
    classifier = _classifier()
    tiny_generator.add_token("<t>", "a")
    vector = tiny_generator.trainable_token("<t>")
    kw = dict(guidance_scale=3.0, grad_steps=grad_steps, scheduler=scheduler)
    ref_loss, ref_logits, ref_grad = _unchunked(tiny_generator, classifier, vector, **kw)
    assert ref_grad.abs().sum() > 0
    for max_batch in (1, 2, None):
        vector.grad = None
        step = token_gradient_step(tiny_generator, PROMPTS, SEEDS, _loss_fn(classifier), max_batch=max_batch, **kw)
        assert step.chunks == {1: (1,) * 5, 2: (2, 2, 1), None: (5,)}[max_batch]
        assert step.loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
        torch.testing.assert_close(step.logits, ref_logits, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(vector.grad, ref_grad, rtol=1e-3, atol=1e-3 * float(ref_grad.abs().max()))


def test_only_the_token_vector_receives_gradient(tiny_generator):
    classifier = _classifier()
    tiny_generator.add_token("<t>", "a")
    tiny_generator.add_token("<other>", "a")
    other = tiny_generator.trainable_token("<other>")  # trainable but absent from the prompts
    vector = tiny_generator.trainable_token("<t>")
    token_gradient_step(tiny_generator, PROMPTS, SEEDS, _loss_fn(classifier), max_batch=2, grad_steps=2)
    assert vector.grad is not None and vector.grad.abs().sum() > 0
    assert other.grad is None or other.grad.abs().sum() == 0
    for module in (tiny_generator.text_encoder, tiny_generator.unet, tiny_generator.vae, classifier):
        assert all(p.grad is None for p in module.parameters())


def test_each_chunk_is_backpropagated_before_the_next_one_runs(tiny_generator):
    # Memory is bounded by a chunk only if a chunk's graph is gone before the next chunk's forward.
    events = []
    decoder = tiny_generator.vae.decoder
    handles = [decoder.register_forward_hook(lambda m, i, o: events.append(("forward", i[0].shape[0]))),
               decoder.register_full_backward_hook(lambda m, gi, go: events.append(("backward", go[0].shape[0])))]
    unet_calls = []
    handles.append(tiny_generator.unet.register_forward_hook(
        lambda m, i, o: unet_calls.append((torch.is_grad_enabled(), i[0].shape[0]))))
    tiny_generator.add_token("<t>", "a")
    tiny_generator.trainable_token("<t>")
    token_gradient_step(tiny_generator, PROMPTS, SEEDS, _loss_fn(_classifier()), max_batch=2, guidance_scale=3.0)
    for handle in handles:
        handle.remove()
    assert events == [("forward", 2), ("backward", 2), ("forward", 2), ("backward", 2), ("forward", 1), ("backward", 1)]
    # sampling stays batched: 3 UNet calls without gradient over all 10 rows, then the last call per chunk
    assert unet_calls == [(False, 10)] * 3 + [(True, 4), (True, 4), (True, 2)]


def test_chunk_slices_cover_the_batch_once():
    assert chunk_slices(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert chunk_slices(5, None) == [slice(0, 5)] == chunk_slices(5, 9)


def test_optimiser_history_is_the_same_with_and_without_chunks(tiny_generator):
    classifier = _classifier()
    classifier.labels = ["a", "star", "c"]
    base = dict(lr=0.05, max_steps=3, patience=3, accuracy_threshold=1.0, guidance_scale=3.0, batch_size=5)
    whole = optimize_class_token(tiny_generator, classifier, TARGET, TokenConfig(**base), token="<whole>")
    chunked = optimize_class_token(tiny_generator, classifier, TARGET, TokenConfig(**base, max_batch=2), token="<chunk>")
    for a, b in zip(whole.history, chunked.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["accuracy"] == b["accuracy"]
        assert a["mean_target_prob"] == pytest.approx(b["mean_target_prob"], rel=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)
    torch.testing.assert_close(whole.vector, chunked.vector, rtol=1e-3, atol=1e-4)


def test_bf16_model_keeps_a_float32_token_and_steps(tiny_sd_path):
    from probe.generators import load_generator

    generator = load_generator(tiny_sd_path, device="cpu", dtype="bf16")
    assert generator.unet.dtype == torch.bfloat16
    classifier = _classifier()
    classifier.labels = ["a", "star", "c"]
    config = TokenConfig(lr=0.05, max_steps=2, patience=2, accuracy_threshold=1.0, guidance_scale=3.0, batch_size=2)
    generator.add_token("<probe-1>", "a")
    assert generator.trainable_token("<probe-1>").dtype == torch.float32
    token = optimize_class_token(generator, classifier, TARGET, config)
    assert token.vector.dtype == torch.float32 and len(token.history) == 2
    assert all(r["grad_norm"] > 0 and r["loss"] == r["loss"] for r in token.history)
    assert token.movement["distance"] > 0  # the bf16 model's gradient moved the fp32 vector


def test_checkpointing_covers_the_vae_decoder_and_keeps_the_gradient(tiny_generator):
    classifier = _classifier()
    tiny_generator.add_token("<t>", "a")
    vector = tiny_generator.trainable_token("<t>")
    kw = dict(guidance_scale=3.0, grad_steps=1)
    _, _, ref_grad = _unchunked(tiny_generator, classifier, vector, **kw)
    vector.grad = None
    token_gradient_step(tiny_generator, PROMPTS, SEEDS, _loss_fn(classifier), max_batch=2, gradient_checkpointing=True,
                        **kw)
    assert tiny_generator.unet.is_gradient_checkpointing and tiny_generator.vae.decoder.gradient_checkpointing
    torch.testing.assert_close(vector.grad, ref_grad, rtol=1e-3, atol=1e-3 * float(ref_grad.abs().max()))
    tiny_generator.generate(PROMPTS[:1], SEEDS[:1])  # an ordinary call turns it off again
    assert not tiny_generator.unet.is_gradient_checkpointing and not tiny_generator.vae.is_gradient_checkpointing


def test_a_padded_last_chunk_keeps_one_shape_and_the_same_gradient(tiny_generator):
    # Under --compile every chunk must have one shape (compiled once per run): the short last chunk is padded.
    classifier = _classifier()
    tiny_generator.add_token("<t>", "a")
    vector = tiny_generator.trainable_token("<t>")
    kw = dict(guidance_scale=3.0, grad_steps=2, scheduler="pndm")
    ref_loss, ref_logits, ref_grad = _unchunked(tiny_generator, classifier, vector, **kw)
    calls = []
    handle = tiny_generator.unet.register_forward_hook(lambda m, i, o: calls.append((torch.is_grad_enabled(), i[0].shape[0])))
    vector.grad = None
    step = token_gradient_step(tiny_generator, PROMPTS, SEEDS, _loss_fn(classifier), max_batch=2, pad_last_chunk=True,
                               **kw)
    handle.remove()
    assert sorted({rows for grad, rows in calls if grad}) == [4] and step.chunks == (2, 2, 1)
    assert step.loss == pytest.approx(ref_loss, rel=1e-5) and step.logits.shape == ref_logits.shape
    torch.testing.assert_close(vector.grad, ref_grad, rtol=1e-3, atol=1e-3 * float(ref_grad.abs().max()))
