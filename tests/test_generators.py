"""The generator seam: loading, token insertion, differentiable batched sampling."""

from __future__ import annotations


import pytest
import torch

from probe.errors import DeviceError, GeneratorError
from probe.devices import resolve_device
from probe.generators import load_generator


def test_loads_tiny_pipeline_with_folder_defaults(tiny_generator):
    assert tiny_generator.image_size == 32
    assert tiny_generator.defaults.steps == 4  # from probe_generator.json
    images = tiny_generator.generate(["a photo of a star", "a photo of a cat"], [1, 2])
    assert images.shape == (2, 3, 32, 32)
    assert images.min() >= 0 and images.max() <= 1
    assert not images.requires_grad


def test_on_the_cpu_the_unet_and_vae_keep_the_default_memory_layout(tiny_generator):
    """Channels-last is for GPUs: under the CPU's bf16 sampling autocast it made group norms 5-30x slower and the
    shapes-world UNet 1.4x slower per image (benchmarks/generation_batch.py --layout, 5 December 2026)."""
    import torch

    convs = [m.weight for module in (tiny_generator.unet, tiny_generator.vae) for m in module.modules()
             if isinstance(m, torch.nn.Conv2d) and m.weight.shape[2:] != (1, 1)]
    assert convs and all(w.is_contiguous() for w in convs)
    assert not any(w.is_contiguous(memory_format=torch.channels_last) for w in convs)


@pytest.mark.parametrize("scheduler", [None, "euler-ancestral", "lcm", "ddpm"])
def test_same_prompt_and_seed_give_the_same_image(tiny_generator, scheduler):
    """Also with the samplers that add noise at each step (sd15-lcm's LCM, SDXL-Turbo's Euler ancestral): they drew it
    from the global RNG, so a seed gave another image at every call and batch size."""
    a = tiny_generator.generate(["a photo of a star"] * 2, [5, 6], scheduler=scheduler)
    b = tiny_generator.generate(["a photo of a star"], [6], scheduler=scheduler)
    torch.manual_seed(123)  # the global RNG plays no part
    c = tiny_generator.generate(["a photo of a star"] * 2, [5, 6], scheduler=scheduler)
    assert torch.allclose(a[1], b[0], atol=1e-5) and torch.allclose(a, c, atol=1e-6)
    assert not torch.allclose(a[0], a[1])


def test_all_images_of_a_step_share_one_unet_batch_and_max_batch_chunks_it(tiny_generator):
    sizes = []
    handle = tiny_generator.unet.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    tiny_generator.generate(["a photo of a star"] * 5, list(range(5)), guidance_scale=3.0)
    assert sizes == [10] * 4  # 5 images x (uncond, cond), one call per step
    sizes.clear()
    tiny_generator.generate(["a photo of a star"] * 5, list(range(5)), guidance_scale=3.0, max_batch=4)
    assert sizes == [8, 2] * 4  # max_batch counts images: 4 images = 8 UNet rows under guidance, then 1 image
    handle.remove()


@pytest.mark.parametrize("scheduler", ["ddim", "pndm", "euler"])
def test_exactly_grad_steps_unet_calls_carry_gradient(tiny_generator, scheduler):
    # PNDM repeats a timestep; the reference code's "last step" then put two UNet calls under grad.
    calls = []
    handle = tiny_generator.unet.register_forward_hook(lambda m, i, o: calls.append(torch.is_grad_enabled()))
    tiny_generator.add_token("<t>", "a")
    vector = tiny_generator.trainable_token("<t>")
    images = tiny_generator.generate(["a photo of a <t> star"] * 2, [0, 1], grad_steps=1, scheduler=scheduler)
    handle.remove()
    assert sum(calls) == 1 and calls[-1] is True
    images.sum().backward()
    assert vector.grad is not None and vector.grad.abs().sum() > 0


def test_gradient_reaches_only_the_token_vector(tiny_generator):
    tiny_generator.add_token("<t>", "a")
    vector = tiny_generator.trainable_token("<t>")
    images = tiny_generator.generate(["a photo of a <t> star"] * 2, [0, 1], grad_steps=2)
    images.mean().backward()
    assert vector.grad is not None and vector.grad.abs().sum() > 0
    for module in (tiny_generator.text_encoder, tiny_generator.unet, tiny_generator.vae):
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())


def test_token_without_its_word_in_the_prompt_gets_no_gradient(tiny_generator):
    tiny_generator.add_token("<t>", "a")
    vector = tiny_generator.trainable_token("<t>")
    images = tiny_generator.generate(["a photo of a star"], [0], grad_steps=1)
    if images.requires_grad:  # the graph may exist (the other rows' path); what reaches the token must be nothing
        images.sum().backward()
    assert vector.grad is None or not vector.grad.abs().sum() > 0


def test_add_token_initialises_from_the_init_word_and_keeps_other_rows(tiny_generator):
    before = tiny_generator.text_encoder.get_input_embeddings().weight.detach().clone()
    token_id = tiny_generator.add_token("<t>", "star")
    after = tiny_generator.text_encoder.get_input_embeddings().weight
    assert token_id == before.shape[0]
    assert torch.equal(after[: before.shape[0]], before)
    star = tiny_generator.tokenizer("star", add_special_tokens=False).input_ids
    assert torch.equal(after[token_id], before[star].mean(0))
    with pytest.raises(GeneratorError, match="already in the tokenizer"):
        tiny_generator.add_token("<t>", "a")


def test_missing_path_not_a_diffusers_folder_and_offline_hub(tmp_path, monkeypatch):
    with pytest.raises(GeneratorError, match="does not exist as a folder"):
        load_generator(str(tmp_path / "nope" / "deeper" / "x"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeneratorError, match="not a diffusers pipeline folder"):
        load_generator(tmp_path / "empty")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(GeneratorError, match=r"hf download someone/missing-model .*--generator DIR"):
        load_generator("someone/missing-model")


def test_incomplete_folder_names_what_is_missing(tiny_sd_path, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd_path, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(GeneratorError, match="could not load the diffusers pipeline"):
        load_generator(broken)


def test_bad_settings_file_is_reported(tiny_sd_path, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_sd_path, copy)
    (copy / "probe_generator.json").write_text("{not json")
    with pytest.raises(GeneratorError, match="probe_generator.json is not valid JSON"):
        load_generator(copy)


def test_cuda_without_cuda_is_a_device_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="CUDA is not available here"):
        resolve_device("cuda")
    assert resolve_device("auto").type in {"cpu", "mps"}


def test_saved_token_loads_with_diffusers_load_textual_inversion(tiny_generator, tiny_sd_path, tmp_path):
    from diffusers import StableDiffusionPipeline

    from probe.tokens import ClassToken

    tiny_generator.add_token("<probe-7>", "a")
    vector = torch.randn(32, generator=torch.Generator().manual_seed(3))
    token = ClassToken(class_index=7, class_name="star", token="<probe-7>", vector=vector, init_word="a", prompts=[])
    path = token.save(tmp_path / "token.safetensors")
    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_path, safety_checker=None, requires_safety_checker=False)
    pipe.load_textual_inversion(str(path))
    token_id = pipe.tokenizer.convert_tokens_to_ids("<probe-7>")
    assert torch.equal(pipe.text_encoder.get_input_embeddings().weight[token_id], vector)
    # ... and probe's own loader puts the same vector in the row.
    from probe.generators import load_generator

    gen = load_generator(tiny_sd_path, device="cpu")
    assert gen.load_token(path) == "<probe-7>"
    assert torch.equal(gen.token_vector("<probe-7>"), vector)
    # a token learned with another generator (another width): one line, and the tokenizer is left as it was (the
    # row copy raised a bare RuntimeError after the token had been added; found by review, 7 December 2026)
    wide = ClassToken(class_index=8, class_name="x", token="<probe-8>", vector=torch.randn(48), init_word="a",
                      prompts=[]).save(tmp_path / "wide.safetensors")
    with pytest.raises(GeneratorError, match="48-wide token and this generator's text encoder is 32 wide"):
        gen.load_token(wide)
    assert "<probe-8>" not in gen.tokenizer.get_vocab()


def test_sampling_autocast_is_opt_in_cpu_float32_only_and_never_touches_gradient_calls(monkeypatch):
    """probe_generator.json's cpu_sampling_autocast turns on bf16 autocast for no-gradient UNet calls, only on a
    CPU with native bf16 and a float32 model; a call that carries gradient runs in float32 whatever the setting."""
    import torch

    from probe.generators import generator as gen_module

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    on = {"cpu_sampling_autocast": "bfloat16"}
    assert gen_module._sampling_autocast(on, torch.device("cpu"), torch.float32) is torch.bfloat16
    assert gen_module._sampling_autocast({}, torch.device("cpu"), torch.float32) is None
    assert gen_module._sampling_autocast(on, torch.device("cpu"), torch.float16) is None
    assert gen_module._sampling_autocast(on, torch.device("cuda"), torch.float32) is None
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert gen_module._sampling_autocast(on, torch.device("cpu"), torch.float32) is None

    seen = []

    class Unet(torch.nn.Module):
        def forward(self, x, t, encoder_hidden_states):
            seen.append((torch.is_autocast_enabled("cpu"), torch.is_grad_enabled()))
            return type("Out", (), {"sample": x * 2})()

    fake = gen_module.Generator.__new__(gen_module.Generator)
    fake.sampling_autocast, fake.device = torch.bfloat16, torch.device("cpu")
    x = torch.ones(1, 4, 2, 2)
    with torch.no_grad():
        out = fake.unet_call(Unet(), x, 1, None)
    assert out.dtype == torch.float32 and seen[-1] == (True, False)
    fake.unet_call(Unet(), x.requires_grad_(), 1, None)
    assert seen[-1] == (False, True)


def test_lcm_beyond_its_steps_is_one_line(tiny_generator):
    """LCM samples at most its original 50 steps: --steps 60 raised diffusers' ValueError from inside the sampler (a
    traceback under `probe audit --dry-run --measure`, every class failed in an audit); found by review."""
    with pytest.raises(GeneratorError, match="--steps 60 does not suit the LCMScheduler sampler"):
        tiny_generator.generate(["a photo of a star"], [1], steps=60, scheduler="lcm")
