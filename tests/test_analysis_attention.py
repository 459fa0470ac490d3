"""Cross-attention capture on real (tiny, random) diffusers components, through probe's Generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.analysis import (
    AnalysisError,
    CrossAttentionCapture,
    capture_cross_attention,
    mask_iou,
    object_mask,
    off_object_share,
    token_positions,
)
from probe.analysis.attention import otsu_threshold


def test_mask_helpers():
    a = np.zeros((8, 8))
    a[2:6, 2:6] = 1.0
    a += 0.01 * np.random.default_rng(0).random((8, 8))
    m = object_mask(a)
    assert m.sum() == 16 and mask_iou(m, a > 0.5) == 1.0
    assert 0.0 < otsu_threshold(a) < 1.0
    shifted = np.roll(a > 0.5, 2, axis=1)
    assert mask_iou(m, shifted) == pytest.approx(8 / 24)
    heat = np.zeros((8, 8))
    heat[0, 0], heat[3, 3] = 3.0, 1.0
    r = off_object_share(heat, m)
    assert r.share_outside == pytest.approx(0.75) and r.area_outside == pytest.approx(48 / 64)
    with pytest.raises(AnalysisError, match="differ"):
        mask_iou(m, np.zeros((4, 4), bool))


def test_token_positions_find_the_class_word_and_the_token(tiny_generator):
    gen = tiny_generator
    gen.add_token("<probe-7>", "a")
    pos = token_positions(gen.tokenizer, "a photo of a <probe-7> star", ["<probe-7>", "star"])
    ids = gen.tokenizer("a photo of a <probe-7> star").input_ids
    assert [ids[p] for p in pos] == [gen.token_id("<probe-7>"), gen.tokenizer("star", add_special_tokens=False).input_ids[0]]


def test_capture_restores_processors_and_maps_follow_the_tokens(tiny_generator):
    gen = tiny_generator
    before = dict(gen.unet.attn_processors)
    prompts = ["a photo of a red star on grass", "a photo of a blue circle on sand"]
    imgs, maps = capture_cross_attention(gen, prompts, [1, 2], [["star"], ["circle"]], gen_kwargs={"steps": 2})
    after = dict(gen.unet.attn_processors)
    assert before.keys() == after.keys() and all(before[k] is after[k] for k in before)
    assert imgs.shape == (2, 3, 32, 32) and maps.shape == (2, 32, 32)
    assert float(maps.min()) >= 0.0 and float(maps.max()) == pytest.approx(1.0, abs=1e-5)
    # same prompt and seed without capture -> the same image (capture does not change sampling)
    plain = gen.generate(prompts[:1], [1], steps=2)
    assert torch.allclose(plain, imgs[:1], atol=1e-5)
    # the map depends on which prompt positions are read
    ids = [token_positions(gen.tokenizer, prompts[0], ["star"]), token_positions(gen.tokenizer, prompts[0], ["grass"])]
    cap = CrossAttentionCapture(gen.unet, ids, res=16)
    with cap:
        gen.generate(prompts[:1] * 2, [1, 1], steps=2)
    m = cap.maps()
    assert cap.calls > 0 and cap.skipped_calls == 0 and not torch.allclose(m[0], m[1])


class _NoCrossAttention:
    attn_processors: dict = {}

    def set_attn_processor(self, processors):
        pass


def test_capture_without_cross_attention_says_why():
    cap = CrossAttentionCapture(_NoCrossAttention(), [[1]])
    with cap:
        pass
    with pytest.raises(AnalysisError, match="no cross-attention"):
        cap.maps()
    with pytest.raises(AnalysisError, match="attention processors"):
        CrossAttentionCapture(object(), [[1]])


def test_denoising_attention_maps_on_fixed_images(tiny_generator):
    from probe.analysis import attention_iou, denoising_attention_maps

    gen = tiny_generator
    images = torch.rand(2, 3, 32, 32)
    masks = np.zeros((2, 32, 32), bool)
    masks[:, 8:24, 8:24] = True
    before = dict(gen.unet.attn_processors)
    maps = denoising_attention_maps(gen, images, ["a photo of a star", "a photo of a circle"], [["star"], ["circle"]])
    assert maps.shape == (2, 32, 32) and float(maps.max()) == pytest.approx(1.0, abs=1e-5)
    assert all(before[k] is v for k, v in gen.unet.attn_processors.items())
    again = denoising_attention_maps(gen, images, ["a photo of a star", "a photo of a circle"], [["star"], ["circle"]],
                                     noise_levels=(0.3, 0.5, 0.7))
    assert torch.allclose(maps, again)  # seeded noise: the check is reproducible
    ious = attention_iou(gen, images, masks, ["a photo of a star", "a photo of a circle"], [["star"], ["circle"]])
    assert ious == [pytest.approx(mask_iou(object_mask(m.numpy()), t)) for m, t in zip(maps, masks)]  # seeded maps
