"""probe.analysis.off_object: how much attribution lies outside the object the generator attended to?"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probe.analysis import AnalysisError
from probe.analysis.off_object import attention_maps, excess_effect
from probe.analysis.policy import Thresholds
from probe.analysis.stats import apply_fdr

N, H = 6, 16


def _maps_and_masks(n=N, size=H):
    """Attention maps that peak on a square per image (the object), with their masks."""
    rng = np.random.default_rng(0)
    maps, masks = {}, []
    for i in range(n):
        side = size * 3 // 8
        y, x = rng.integers(1, size - side, size=2)
        m = np.zeros((size, size), bool)
        m[y:y + side, x:x + side] = True
        maps[i] = np.where(m, 1.0, 0.05).astype(np.float32) + 0.01 * rng.random((size, size)).astype(np.float32)
        masks.append(m)
    return maps, np.stack(masks)


def test_heat_inside_the_object_gives_a_negative_excess_and_outside_a_positive_one():
    maps, masks = _maps_and_masks()
    rng = np.random.default_rng(1)
    inside = np.where(masks, rng.random(masks.shape) + 0.1, 0.0)
    outside = np.where(masks, 0.0, rng.random(masks.shape) + 0.1)
    on, off = excess_effect(inside, maps, list(range(N))), excess_effect(outside, maps, list(range(N)))
    area = float((~masks).mean())
    assert on.share_outside == pytest.approx(0.0, abs=1e-9) and off.share_outside == pytest.approx(1.0)
    assert on.area_outside == off.area_outside == pytest.approx(area)
    # the effect is the excess of the share outside over the area outside
    assert on.effect.mean == pytest.approx(-area) and off.effect.mean == pytest.approx(1.0 - area)
    assert off.effect.ci_low > 0 > on.effect.ci_high and on.effect.n == N
    # p tests "no excess" one-sided: small when the attribution lies off the object, large when on it
    assert off.effect.p < 0.05 < on.effect.p
    assert off.effect.method == "sign-flip, excess over area"
    # negative attributions count by their size
    assert excess_effect(-outside, maps, list(range(N))).effect.mean == pytest.approx(1.0 - area)


def test_uniform_attribution_on_a_small_object_has_no_excess_and_cannot_pass():
    """Before: a share outside >= 0.5 passed whatever the mask's area, so attribution spread evenly over an
    image whose object covers a seventh of it 'lay off the object'. The excess over the area is 0."""
    maps, masks = _maps_and_masks()
    assert float((~masks).mean()) > 0.8  # the object is small: most of the area is outside it
    uniform = np.ones(masks.shape)
    measured = excess_effect(uniform, maps, list(range(N)))
    assert measured.share_outside > 0.8
    assert measured.effect.mean == pytest.approx(0.0, abs=1e-9) and measured.effect.p == 1.0
    effect = apply_fdr([measured.effect])[0]
    assert Thresholds().judge_q("off-object", effect) == (False, None)


def test_half_and_half_and_a_subset_of_images():
    maps, masks = _maps_and_masks()
    heat = np.zeros(masks.shape)
    for i, m in enumerate(masks):
        heat[i][m] = 1.0 / m.sum()
        heat[i][~m] = 1.0 / (~m).sum()
    measured = excess_effect(torch.from_numpy(heat), maps, [1, 3, 5])
    assert measured.effect.n == 3 and measured.share_outside == pytest.approx(0.5)


def test_maps_of_another_resolution_are_resized_to_the_heat():
    maps, masks = _maps_and_masks(size=8)
    big_masks = np.repeat(np.repeat(masks, 4, axis=1), 4, axis=2)  # 32 px heat, 8 px attention maps
    outside = np.where(big_masks, 0.0, 1.0)
    measured = excess_effect(outside, maps, list(range(N)))
    assert measured.share_outside > 0.95
    assert measured.area_outside == pytest.approx(float((~big_masks).mean()), abs=0.05)


def test_images_without_attribution_are_skipped_and_none_left_means_no_effect():
    maps, masks = _maps_and_masks()
    heat = np.where(masks, 0.0, 1.0)
    heat[0] = 0.0  # no attribution at all: no share to measure
    assert excess_effect(heat, maps, list(range(N))).effect.n == N - 1
    assert excess_effect(np.zeros(masks.shape), maps, list(range(N))) is None


def test_attention_maps_are_read_from_the_cache_and_missing_prompts_are_named(tmp_path):
    maps, _ = _maps_and_masks(n=2)
    stems = ["token_p0_s0", "token_p0_s1"]
    for i, s in enumerate(stems):
        np.save(tmp_path / f"{s}.npy", maps[i])
    records = [{"seed": 0}, {"seed": 1}]  # no prompts: regenerating would be impossible

    class NoGenerator:
        def __getattr__(self, name):
            raise AssertionError("cached maps must not call the generator")

    got = attention_maps(NoGenerator(), records, [0, 1], stems, ["<t>", "star"], tmp_path, batch_size=2, gen_kwargs={},
                         res=16)
    assert set(got) == {0, 1} and np.array_equal(got[1], maps[1])
    (tmp_path / f"{stems[1]}.npy").unlink()
    with pytest.raises(AnalysisError, match="lack 'prompt'"):
        attention_maps(NoGenerator(), records, [0, 1], stems, ["<t>"], tmp_path, batch_size=2, gen_kwargs={}, res=16)
