"""Shapes-world renderer and captions: determinism, masks, vocabulary, tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.errors import ProbeError
from probe.world import BACKGROUNDS, COLORS, SHAPES, TAGS, caption, render, sample_scene
from probe.world.scenes import COLOR_RGB, render_batch, sample_attributes
from probe.generators.tokenizer import write_tokenizer
from probe.world.text import PREFIXES, caption_batch, caption_words, full_caption


def test_vocabulary_sizes():
    assert len(SHAPES) >= 6 and len(COLORS) >= 5 and len(BACKGROUNDS) >= 5
    assert TAGS[0] == "none" and len(TAGS) >= 3


def test_render_is_deterministic_per_seed_and_differs_across_seeds():
    a, b = render(seed=5), render(seed=5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.attributes == b.attributes
    c = render(seed=6)
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.uint8 and a.image.shape == (32, 32, 3) and a.mask.shape == (32, 32)


def test_given_attributes_are_kept_and_others_drawn_from_seed():
    s = render("star", "blue", "snow", "dot", seed=1)
    assert {k: s.attributes[k] for k in ("shape", "color", "background", "tag")} == {
        "shape": "star", "color": "blue", "background": "snow", "tag": "dot"}
    assert render(shape="heart", seed=2).attributes["shape"] == "heart"
    assert "star" in repr(s)


@pytest.mark.parametrize("color", COLORS)
def test_mask_covers_exactly_the_object_colour(color):
    s = render("square", color, "snow", "none", size=0.7, x=0.0, y=0.0, rotation=0.0, seed=0)
    img = s.image.astype(float) / 255
    target = COLOR_RGB[COLORS.index(color)].numpy()
    close = np.abs(img - target).max(-1) < 0.06
    # every pixel of pure object colour is in the mask, and nearly every mask pixel has it (edges blend)
    assert close[~s.mask].sum() == 0
    assert close[s.mask].mean() > 0.7
    # square of half-side 0.7*0.70 in a 2-unit image: about (0.49 * 32)^2 = 246 pixels
    assert 200 < s.mask.sum() < 290


def test_mask_follows_position_and_size():
    left = render("circle", "red", "grass", "none", size=0.62, x=-0.12, y=0.0, rotation=0.0, seed=0)
    right = render("circle", "red", "grass", "none", size=0.62, x=0.12, y=0.0, rotation=0.0, seed=0)
    cols = np.arange(32)
    assert (left.mask * cols).sum() / left.mask.sum() < (right.mask * cols).sum() / right.mask.sum() - 2
    big = render("circle", "red", "grass", "none", size=0.8, x=0.0, y=0.0, rotation=0.0, seed=0)
    assert big.mask.sum() > left.mask.sum() * 1.4


def test_tags_are_drawn_in_their_corner():
    none = render("circle", "red", "snow", "none", size=0.62, x=0, y=0, rotation=0, seed=3)
    dot = render("circle", "red", "snow", "dot", size=0.62, x=0, y=0, rotation=0, seed=3)
    bar = render("circle", "red", "snow", "bar", size=0.62, x=0, y=0, rotation=0, seed=3)
    diff_dot = np.abs(dot.image.astype(int) - none.image.astype(int)).sum(-1) > 30
    diff_bar = np.abs(bar.image.astype(int) - none.image.astype(int)).sum(-1) > 30
    assert diff_dot[:8, :8].sum() > 5 and diff_dot[8:, :].sum() == 0
    assert diff_bar[24:, 16:].sum() > 5 and diff_bar[:24, :].sum() == 0


def test_shapes_have_distinct_masks():
    masks = [render(s, "red", "snow", "none", size=0.7, x=0, y=0, rotation=0, seed=0).mask for s in SHAPES]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
            assert iou < 0.9, (SHAPES[i], SHAPES[j], iou)


def test_bad_arguments_raise_one_line_probe_errors():
    with pytest.raises(ProbeError, match="unknown shape 'hexagon'"):
        render("hexagon")
    with pytest.raises(ProbeError, match="size=2"):
        render("star", size=2.0)
    with pytest.raises(ProbeError, match="seed"):
        render(seed="x")


def test_batch_renderer_matches_shapes_and_is_seeded():
    attrs = sample_attributes(16, np.random.default_rng(0))
    a, ma = render_batch(attrs, generator=torch.Generator().manual_seed(1))
    b, mb = render_batch(attrs, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert a.shape == (16, 3, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert (ma.flatten(1).sum(1) > 100).all()


def test_render_accepts_an_attribute_mapping():
    s = render(seed=11)
    again = render(s.attributes, seed=99)  # every attribute given: the seed only drives textures
    assert again.attributes == s.attributes
    assert np.array_equal(again.mask, s.mask)
    with pytest.raises(ProbeError, match="unknown attributes"):
        render({"shape": "star", "hue": 3})


def test_sample_scene_accepts_generator_or_seed():
    assert sample_scene(3).attributes == sample_scene(np.random.default_rng(3)).attributes


def test_captions_name_the_shape_and_are_often_partial():
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng) for _ in range(8)]
    caps = []
    for s in scenes:
        mine = [caption(s, rng) for _ in range(25)]
        assert all(s.attributes["shape"] in c.split() for c in mine)
        caps += mine
    assert any(c.startswith("a photo of a ") for c in caps)
    assert any(c.startswith("a close-up photo of a ") for c in caps)
    assert any(c.startswith("a picture of a ") for c in caps)
    # partial captions are common: no colour and no background word in a good share of them
    bare = [c for c in caps if not any(w in c.split() for w in COLORS + BACKGROUNDS)]
    assert len(bare) > 0.1 * len(caps)
    assert caption(scenes[0], 4) == caption(scenes[0], 4)


def test_caption_batch_matches_caption_grammar():
    attrs = sample_attributes(200, np.random.default_rng(1))
    caps = caption_batch(attrs, np.random.default_rng(2))
    prefixes = tuple(p for p, _ in PREFIXES)
    for c, s in zip(caps, attrs["shape"]):
        assert c.startswith(prefixes) and SHAPES[s] in c
    assert full_caption({"shape": "star", "color": "red", "background": "grass", "tag": "dot"}) == \
        "a photo of a red star on grass with a dot in the corner"


def test_tokenizer_knows_every_caption_word_and_never_fails(tmp_path):
    tok = write_tokenizer(tmp_path / "tok", caption_words())
    for w in caption_words():
        assert len(tok(w, add_special_tokens=False).input_ids) == 1, w
    ids = tok("a photo of a zebra-ish thing, 3 é!", add_special_tokens=False).input_ids
    assert tok.unk_token_id not in ids or tok.unk_token_id == tok.eos_token_id
    assert tok.eos_token_id not in ids  # unknown words fall back to pieces, not <unk>
    tok.add_tokens("<probe-3>")
    ids = tok("a photo of a <probe-3> star").input_ids
    assert tok.convert_tokens_to_ids("<probe-3>") in ids and len(ids) == 8
