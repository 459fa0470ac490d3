"""Generator aliases: sd15-lcm fuses a LoRA adapter and uses the LCM scheduler (offline, tiny adapter); licences
are recorded; --compile is recorded and lazy, and (gated: PROBE_COMPILE_TEST=1, inductor compiles C++ for minutes)
gives the eager loss."""

from __future__ import annotations

import json
import os

import pytest
import torch

from probe.generators import GENERATORS, load_generator

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]


@pytest.fixture(scope="module")
def tiny_lora(tiny_sd_path, tmp_path_factory):
    """A random LoRA adapter for the tiny test UNet, saved in the diffusers LoRA format (as lcm-lora-sdv1-5 is)."""
    pytest.importorskip("peft")
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    torch.manual_seed(7)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_path / "unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=ATTENTION, init_lora_weights=False))
    state = get_peft_model_state_dict(unet)
    folder = tmp_path_factory.mktemp("lora") / "adapter"
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=convert_state_dict_to_diffusers(state),
                                              safe_serialization=True)
    return folder, state


def test_every_alias_records_a_licence():
    for name, spec in GENERATORS.items():
        assert spec.licence, name
    assert "non-commercial" in GENERATORS["sd-turbo"].licence
    assert "OpenRAIL++" in GENERATORS["sd15-lcm"].licence
    assert GENERATORS["sd15-lcm"].lora == "latent-consistency/lcm-lora-sdv1-5"


def test_sd15_lcm_fuses_the_adapter_and_samples_with_lcm(tiny_sd_path, tiny_lora, monkeypatch):
    folder, state = tiny_lora
    monkeypatch.setenv("PROBE_SD15_LCM_BASE", str(tiny_sd_path))
    monkeypatch.setenv("PROBE_SD15_LCM_LORA", str(folder))
    plain = load_generator(tiny_sd_path, device="cpu")
    lcm = load_generator("sd15-lcm", device="cpu")
    # the LCM sampling the alias stands for, over the base folder's own probe_generator.json
    assert type(lcm.scheduler).__name__ == "LCMScheduler"
    assert (lcm.defaults.steps, lcm.defaults.guidance_scale) == (4, 1.0)
    described = lcm.describe()
    assert described["alias"] == "sd15-lcm" and "OpenRAIL++" in described["licence"]
    assert described["lora"] == str(folder) and described["source"] == str(tiny_sd_path)
    json.dumps(described)  # goes into config.json as is
    # fused: every attention projection moved by exactly scale * B @ A, every other weight untouched, no LoRA layers left
    before, after = plain.unet.state_dict(), lcm.unet.state_dict()
    assert set(before) == set(after)
    assert not any("lora" in name for name, _ in lcm.unet.named_modules())
    changed = 0
    for key, value in before.items():
        if key.endswith(".weight") and any(f".{m}.weight" in f".{key}" for m in ATTENTION):
            prefix = key[: -len(".weight")]
            a = state[f"{prefix}.lora_A.weight"]
            b = state[f"{prefix}.lora_B.weight"]
            torch.testing.assert_close(after[key] - value, b @ a, rtol=1e-4, atol=1e-5)
            changed += 1
        else:
            assert torch.equal(after[key], value), key
    assert changed >= 4
    images = lcm.generate(["a photo of a star"], [0])
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()


def test_an_adapter_that_is_not_there_is_one_line_naming_the_fix(tiny_sd_path, tmp_path, monkeypatch):
    from probe.errors import GeneratorError

    pytest.importorskip("peft")
    monkeypatch.setenv("PROBE_SD15_LCM_BASE", str(tiny_sd_path))
    monkeypatch.setenv("PROBE_SD15_LCM_LORA", str(tmp_path))  # an empty folder
    with pytest.raises(GeneratorError, match="PROBE_SD15_LCM_LORA") as info:
        load_generator("sd15-lcm", device="cpu")
    assert "\n" not in str(info.value)


def test_compile_is_recorded_and_lazy(tiny_sd_path):
    generator = load_generator(tiny_sd_path, device="cpu", compile=True)
    assert generator.is_compiled and generator.describe()["compiled"] is True
    assert load_generator(tiny_sd_path, device="cpu").describe()["compiled"] is False


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("PROBE_COMPILE_TEST"),
                    reason="inductor compiles C++ for the tiny UNet and VAE, ~6 min on 2 busy CPU cores (needs gcc); "
                           "set PROBE_COMPILE_TEST=1 to run it")
def test_compiled_step_gives_the_eager_loss(tiny_sd_path):
    from probe.tokens import TokenConfig, optimize_class_token

    class Classifier(torch.nn.Module):
        labels = ["a", "star", "c"]

        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.conv = torch.nn.Conv2d(3, 3, 3)

        def forward(self, x):
            return self.conv(x).mean((2, 3))

    classifier = Classifier().requires_grad_(False)
    config = TokenConfig(max_steps=2, patience=2, accuracy_threshold=1.0, batch_size=4, max_batch=2, guidance_scale=3.0)
    eager = optimize_class_token(load_generator(tiny_sd_path, device="cpu"), classifier, 1, config)
    compiled = optimize_class_token(load_generator(tiny_sd_path, device="cpu", compile=True), classifier, 1, config)
    assert [r["loss"] for r in compiled.history] == pytest.approx([r["loss"] for r in eager.history], rel=1e-4)
    torch.testing.assert_close(compiled.vector, eager.vector, rtol=1e-3, atol=1e-5)
