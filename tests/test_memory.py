"""The automatic --max-batch: a pure function of free memory, image size, dtype, batch and grad steps."""

from __future__ import annotations

import json

import pytest
import torch

from probe.generators.memory import GIB, MaxBatchChoice, choose_max_batch, per_image_bytes, resolve_max_batch
from probe.tokens import TokenConfig

SD = dict(image_size=512, dtype=torch.float16, batch_size=5)


def test_per_image_estimate_is_the_issue_calibration_and_scales_with_pixels_dtype_and_grad_steps():
    one = per_image_bytes(512, torch.float16)
    assert one / GIB == pytest.approx(2.95 + 2 * 0.9, rel=1e-6)  # VAE decode + one UNet call (2 rows under CFG)
    assert per_image_bytes(512, torch.float16, guidance=False) / GIB == pytest.approx(2.95 + 0.9, rel=1e-6)
    assert per_image_bytes(512, torch.float32) == pytest.approx(2 * one, rel=1e-6)
    assert per_image_bytes(512, torch.bfloat16) == one
    assert per_image_bytes(256, torch.float16) == pytest.approx(one / 4, rel=1e-6)
    assert per_image_bytes(512, torch.float16, grad_steps=2) / GIB == pytest.approx(2.95 + 4 * 0.9, rel=1e-6)
    # SDXL's own VAE decodes in float32 beside an fp16 UNet (force_upcast): its decode counts at 4 bytes an element,
    # which the estimate counted at the UNet's 2 (found in review, 7 December 2026)
    sdxl = per_image_bytes(1024, torch.float16, vae_dtype=torch.float32)
    assert sdxl / GIB == pytest.approx(4 * (2 * 2.95 + 2 * 0.9), rel=1e-6) and sdxl > per_image_bytes(1024, torch.float16)
    from probe.generators.memory import choose_max_batch

    assert choose_max_batch(40 * GIB, image_size=1024, dtype=torch.float16, batch_size=5, vae_dtype=torch.float32
                            ).per_image_bytes == sdxl


def test_a_large_gpu_stops_at_two_512px_images_per_chunk():
    choice = choose_max_batch(130 * GIB, **SD)
    assert (choice.max_batch, choice.chunks, choice.limited_by) == (2, [2, 2, 1], "speed")
    assert "--max-batch 2 (auto" in choice.line() and "130.0 GiB free" in choice.line()


def test_a_small_card_gets_one_image_per_chunk_and_a_tiny_one_is_warned():
    choice = choose_max_batch(8 * GIB, **SD)
    assert (choice.max_batch, choice.limited_by, choice.fits) == (1, "memory", True)
    starved = choose_max_batch(4 * GIB, **SD)
    assert starved.max_batch == 1 and not starved.fits and "may not fit" in starved.line()


def test_fp32_and_more_grad_steps_need_smaller_chunks():
    free = 14 * GIB  # usable 10.7 GiB: two fp16 images (4.75 GiB each), one fp32 image or one with 2 grad steps
    assert choose_max_batch(free, **SD).max_batch == 2
    assert choose_max_batch(free, **{**SD, "dtype": torch.float32}).max_batch == 1
    assert choose_max_batch(free, grad_steps=3, **SD).max_batch == 1


def test_small_images_take_the_whole_batch_and_chunks_are_evened_out():
    tiny = choose_max_batch(2 * GIB, image_size=32, dtype=torch.float32, batch_size=5)
    assert (tiny.max_batch, tiny.chunks, tiny.limited_by) == (5, [5], "batch")
    # memory for 4 images of 256 px: 5 images go as 3 + 2 (two chunks, lower peak), not 4 + 1
    free = int((4.2 * per_image_bytes(256, torch.float16) + 0.5 * GIB) / 0.8)
    even = choose_max_batch(free, image_size=256, dtype=torch.float16, batch_size=5, saturating_pixels=10**9)
    assert even.chunks == [3, 2]


def test_more_free_memory_never_gives_smaller_chunks():
    sizes = [choose_max_batch(gib * GIB, **{**SD, "batch_size": 8}, saturating_pixels=10**9).max_batch
             for gib in range(1, 60)]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] == 8


def test_resolve_off_cuda_is_one_chunk_and_a_given_value_is_kept(tiny_generator):
    off = resolve_max_batch(tiny_generator, TokenConfig())
    assert (off.max_batch, off.source, off.chunks) == (None, "off", [5])
    given = resolve_max_batch(tiny_generator, TokenConfig(max_batch=2))
    assert (given.max_batch, given.source, given.chunks) == (2, "given", [2, 2, 1])
    assert isinstance(given, MaxBatchChoice) and given.to_dict()["chunks"] == [2, 2, 1]


def test_a_run_records_its_gradient_chunks_and_generator(readme_demo):
    config = json.loads((readme_demo / "runs" / "demo" / "config.json").read_text())
    chunks = config["gradient_chunks"]
    assert chunks["source"] == "off" and chunks["max_batch"] is None  # the demo runs on the CPU: one chunk
    assert chunks["chunks"] == [config["audit"]["token"]["batch_size"]]
    assert config["audit"]["compile"] is False and config["generator"]["compiled"] is False
    assert {"alias", "licence", "lora"} <= set(config["generator"])
