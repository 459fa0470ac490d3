"""SDXL generators on a tiny random SDXL pipeline: loading, the same images as diffusers' pipeline, the class
token in both encoders (gradient, optimisation, chunking), token files that diffusers loads, the fp16 VAE rule."""

from __future__ import annotations

import html
import json

import pytest
import torch
import torch.nn.functional as F

from probe.errors import GeneratorError
from probe.generators import GENERATORS, PIPELINE_FAMILIES, load_generator
from probe.generators.gradient import token_gradient_step
from probe.tokens import TokenConfig, optimize_class_token

PROMPTS = ["a photo of a <t> star", "a picture of a <t> star", "a close-up photo of a <t> star"]
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def tiny_sdxl_path(tmp_path_factory):
    from tiny_sdxl import build_tiny_sdxl

    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny_sdxl") / "pipe")


@pytest.fixture()
def sdxl(tiny_sdxl_path):
    return load_generator(tiny_sdxl_path, device="cpu")


def _classifier():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(6, 3))
    return net.requires_grad_(False).eval()


def test_sdxl_folder_loads_as_the_sdxl_family_and_samples_what_diffusers_samples(sdxl, tiny_sdxl_path):
    from diffusers import StableDiffusionXLPipeline

    from probe.generators.sdxl import SDXLGenerator

    assert isinstance(sdxl, SDXLGenerator)
    assert sdxl.describe()["family"] == "sdxl" and sdxl.describe()["pipeline"] == "StableDiffusionXLPipeline"
    assert sdxl.image_size == 32 and sdxl.defaults.steps == 3  # probe_generator.json
    ours = sdxl.generate(["a photo of a star", "a red circle"], [4, 5], guidance_scale=3.0)
    assert ours.shape == (2, 3, 32, 32) and torch.isfinite(ours).all()
    # diffusers' own pipeline from the same folder and the same initial latents: both encoders' penultimate
    # states, the pooled embedding, the size/crop time ids, zeroed unconditional context, the same images.
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_path)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(["a photo of a star", "a red circle"], latents=sdxl.initial_latents([4, 5]), height=32, width=32,
                  num_inference_steps=3, guidance_scale=3.0, output_type="pt").images
    assert torch.allclose(ours, theirs.float(), atol=1e-4), float((ours - theirs).abs().max())


def test_gradient_reaches_both_encoders_rows_of_the_token_and_nothing_else(sdxl):
    sdxl.add_token("<t>", "a")
    vector = sdxl.trainable_token("<t>")
    d1, d2 = sdxl.widths
    assert vector.dtype == torch.float32 and vector.shape == (d1 + d2,) and (d1, d2) == (32, 48)
    images = sdxl.generate(PROMPTS[:2], SEEDS[:2], grad_steps=1, guidance_scale=3.0)
    images.mean().backward()
    assert vector.grad[:d1].abs().sum() > 0 and vector.grad[d1:].abs().sum() > 0  # clip_l and clip_g halves
    for module in (sdxl.text_encoder, sdxl.text_encoder_2, sdxl.unet, sdxl.vae):
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())


def test_chunked_gradient_equals_the_unchunked_one_on_sdxl(sdxl):
    classifier = _classifier()
    labels = torch.full((3,), 1, dtype=torch.long)
    sdxl.add_token("<t>", "a")
    vector = sdxl.trainable_token("<t>")
    images = sdxl.generate(PROMPTS, SEEDS, grad_steps=2, guidance_scale=3.0)
    F.cross_entropy(classifier(images), labels).backward()
    reference, vector.grad = vector.grad.clone(), None

    def loss_fn(imgs, rows):
        logits = classifier(imgs)
        return F.cross_entropy(logits, labels[rows]), logits

    step = token_gradient_step(sdxl, PROMPTS, SEEDS, loss_fn, grad_steps=2, guidance_scale=3.0, max_batch=2)
    assert step.chunks == (2, 1)
    assert torch.allclose(vector.grad, reference, rtol=1e-3, atol=1e-7)


def test_one_optimisation_step_changes_only_the_token_rows_of_both_encoders(sdxl):
    rows_before = [e.get_input_embeddings().weight.detach().clone() for e in (sdxl.text_encoder, sdxl.text_encoder_2)]
    unet_before = {k: v.clone() for k, v in sdxl.unet.state_dict().items()}
    config = TokenConfig(max_steps=2, patience=2, min_steps=1, batch_size=2, eval_images=1, grad_steps=1, lr=0.05)
    token = optimize_class_token(sdxl, _classifier(), 1, config, class_name="star")
    d1 = sdxl.widths[0]
    assert token.vector.shape == (sum(sdxl.widths),) and token.movement["moved"]
    for encoder, tokenizer, before, part in ((sdxl.text_encoder, sdxl.tokenizer, rows_before[0], token.vector[:d1]),
                                             (sdxl.text_encoder_2, sdxl.tokenizer_2, rows_before[1], token.vector[d1:])):
        after = encoder.get_input_embeddings().weight
        assert torch.equal(after[: before.shape[0]], before)  # every pre-existing row bit-identical
        assert torch.equal(after[tokenizer.convert_tokens_to_ids(token.token)], part)
    assert all(torch.equal(v, unet_before[k]) for k, v in sdxl.unet.state_dict().items())


def test_token_file_loads_into_a_plain_diffusers_sdxl_pipeline_per_encoder(sdxl, tiny_sdxl_path, tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import load_file

    sdxl.add_token("<t>", "star")
    vector = sdxl.trainable_token("<t>")
    with torch.no_grad():
        vector.add_(torch.linspace(-1, 1, vector.shape[0]))  # a "learned" vector unlike any initial row
    learned = vector.detach().clone()
    sdxl.commit_token("<t>")
    path = sdxl.save_token("<t>", tmp_path / "t.safetensors")
    state = load_file(str(path))
    assert set(state) == {"clip_l", "clip_g"}
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_path)
    pipe.load_textual_inversion(state["clip_l"], token="<t>", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer)
    pipe.load_textual_inversion(state["clip_g"], token="<t>", text_encoder=pipe.text_encoder_2,
                                tokenizer=pipe.tokenizer_2)
    d1 = sdxl.widths[0]
    row_l = pipe.text_encoder.get_input_embeddings().weight[pipe.tokenizer.convert_tokens_to_ids("<t>")]
    row_g = pipe.text_encoder_2.get_input_embeddings().weight[pipe.tokenizer_2.convert_tokens_to_ids("<t>")]
    assert torch.equal(row_l, learned[:d1]) and torch.equal(row_g, learned[d1:])
    # ... and back into a fresh generator, by the file's layout or probe's one-tensor layout
    fresh = load_generator(tiny_sdxl_path, device="cpu")
    assert fresh.load_token(path, "<t>") == "<t>" and torch.equal(fresh.token_vector("<t>"), learned)
    with pytest.raises(GeneratorError, match="clip_l, clip_g"):
        fresh.commit_token("<t>", learned[:d1])


def test_fp16_sdxl_decodes_with_a_float32_vae_unless_a_fixed_vae_is_given(tiny_sdxl_path, tmp_path, monkeypatch):
    from diffusers import AutoencoderKL

    upcast = load_generator(tiny_sdxl_path, device="cpu", dtype="fp16")
    assert upcast.unet.dtype == torch.float16 and upcast.vae.dtype == torch.float32
    latents = upcast.initial_latents([0])
    assert latents.dtype == torch.float16 and upcast.decode(latents).dtype == torch.float32
    fixed = AutoencoderKL.from_pretrained(tiny_sdxl_path / "vae")
    fixed.register_to_config(force_upcast=False)  # what a fixed fp16 VAE declares
    fixed.save_pretrained(tmp_path / "fixed_vae")
    kept = load_generator(tiny_sdxl_path, device="cpu", dtype="fp16", vae=tmp_path / "fixed_vae")
    assert kept.vae.dtype == torch.float16 and not kept.vae.config.force_upcast
    # the alias, pointed at local folders (PROBE_SDXL_BASE / PROBE_SDXL_VAE), as `--generator sdxl` would load it
    monkeypatch.setenv("PROBE_SDXL_BASE", str(tiny_sdxl_path))
    monkeypatch.setenv("PROBE_SDXL_VAE", str(tmp_path / "fixed_vae"))
    alias = load_generator("sdxl", device="cpu", dtype="fp16")
    assert alias.alias == "sdxl" and "OpenRAIL++-M" in alias.licence and alias.vae.dtype == torch.float16
    assert (alias.defaults.steps, alias.defaults.guidance_scale) == (15, 5.0)
    with pytest.raises(GeneratorError, match="could not load the VAE"):
        load_generator(tiny_sdxl_path, device="cpu", vae=tmp_path)


def test_sdxl_aliases_and_unknown_pipeline_classes(tmp_path):
    assert GENERATORS["sdxl"].base == "stabilityai/stable-diffusion-xl-base-1.0"
    assert "OpenRAIL++-M" in GENERATORS["sdxl"].licence
    turbo = GENERATORS["sdxl-turbo"]
    assert turbo.base == "stabilityai/sdxl-turbo" and "Non-Commercial" in turbo.licence
    assert turbo.settings() == {"default_steps": 2, "guidance_scale": 0.0}
    assert {GENERATORS[a].pipeline for a in ("sdxl", "sdxl-turbo")} <= set(PIPELINE_FAMILIES)
    folder = tmp_path / "sd3"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    with pytest.raises(GeneratorError, match="StableDiffusion3Pipeline.*docs/generators.md"):
        load_generator(folder, device="cpu")


def test_audit_resume_and_generate_run_unchanged_on_sdxl(sdxl, tiny_sdxl_path, tmp_path):
    from safetensors import safe_open

    from color_classifier import calibrated_redness_classifier
    from probe.classifiers import load_classifier
    from probe.generate import generate_dataset
    from probe.auditing.loop import AuditConfig, audit

    redness = load_classifier(calibrated_redness_classifier(sdxl, seeds=range(3)), labels=["other", "star"],
                              input_size=32, mean=(0, 0, 0), std=(1, 1, 1), crop_pct=1.0)
    token = TokenConfig(lr=0.1, max_steps=2, patience=2, eval_images=1, batch_size=2)
    config = AuditConfig(model="tests:redness", out=str(tmp_path / "run"), generator=str(tiny_sdxl_path), token=token,
                         classes="star", analyze=False, report=False)
    first = audit(config, classifier=redness, generator=sdxl, progress=False)
    assert not first.failed
    file = next(first.run_dir.glob("classes/1-*/token.safetensors"))
    with safe_open(str(file), framework="pt") as f:  # diffusers' SDXL layout, the token string in the metadata
        assert set(f.keys()) == {"clip_l", "clip_g"} and f.metadata()["token"] == "<probe-1>"
    learned = sdxl.token_vector("<probe-1>")
    again = audit(config, classifier=redness, generator=sdxl, progress=False)  # resume: the class is finished
    assert not again.failed and torch.equal(sdxl.token_vector("<probe-1>"), learned)
    fresh = load_generator(tiny_sdxl_path, device="cpu")
    result = generate_dataset(first.run_dir, tmp_path / "data", classifier=redness, generator=fresh, per_class=2,
                              batch_size=2, progress=False)
    assert torch.equal(fresh.token_vector("<probe-1>"), learned)
    assert len(list((tmp_path / "data").rglob("*.png"))) == 2, result
    # the analysis reads the SDXL token file too (nearest words from the clip_l row, in encoder 1's vocabulary)
    from probe.analysis.config import AnalysisConfig
    from probe.analysis.engine import analyze_run

    analyze_run(first.run_dir, redness, sdxl, AnalysisConfig(screen_seeds=1, confirm=False, ig_steps=2, iou_images=1))
    info = json.loads((first.run_dir / "analysis.json").read_text())["classes"]["1"]
    assert len(info["nearest_words"]) == 10 and info["nearest_words"][0]["cosine"] > 0
    from probe.report import render_report  # the report renders an SDXL run like any other

    index = render_report(first.run_dir)
    page = next((first.run_dir / "report" / "classes").glob("1-*.html")).read_text(encoding="utf-8")
    assert index.is_file() and "star" in page
    # what the SDXL analysis measured is on the page: its nearest vocabulary words, the first one by name
    assert "nearest vocabulary words" in page and html.escape(info["nearest_words"][0]["word"]) in page


def test_cross_attention_maps_come_from_sdxl_attention_layers(sdxl):
    from probe.analysis.attention import capture_cross_attention, denoising_attention_maps

    images, maps = capture_cross_attention(sdxl, ["a photo of a red star"], [0], [["star"]])
    assert images.shape == (1, 3, 32, 32) and maps.shape == (1, 32, 32) and torch.isfinite(maps).all()
    again = denoising_attention_maps(sdxl, images, ["a photo of a red star"], [["star"]])
    other = denoising_attention_maps(sdxl, images, ["a photo of a red star"], [["red"]])
    assert again.shape == (1, 32, 32) and torch.isfinite(again).all()
    assert not torch.allclose(again, other)  # the map follows the word's position in the context


def test_gpu_benchmark_has_an_sdxl_family_with_sdxl_base_architecture(tmp_path):
    import sys
    from pathlib import Path

    from diffusers import UNet2DConditionModel

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import gpu_step

    with torch.device("meta"):  # the full-size config, without allocating it: SDXL base's 2,567,463,684 UNet weights
        unet = UNet2DConditionModel(**gpu_step._configs("full", "sdxl")["unet"])
    assert sum(p.numel() for p in unet.parameters()) == 2_567_463_684
    out = tmp_path / "rows.json"
    gpu_step.main(["--tiny", "--family", "sdxl", "--rows", "max-batch-1", "--repeats", "1", "--warmup", "0",
                   "--no-isolate", "--quiet", "--json", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    assert row["name"] == "max-batch-1" and row["max_batch"] == 1 and row["s_per_step"] > 0


def test_sdxl_samples_under_the_autocast_it_reports(tiny_sdxl_path, tmp_path):
    """probe_generator.json's cpu_sampling_autocast: SDXL's UNet call dropped it while describe() reported it, so the
    plan's CPU precision picked bf16 rows for float32 sampling (found by review, 7 December 2026)."""
    import shutil

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no native bfloat16: the autocast is not turned on here")
    folder = tmp_path / "pipe"
    shutil.copytree(tiny_sdxl_path, folder)
    config = json.loads((folder / "probe_generator.json").read_text())
    (folder / "probe_generator.json").write_text(json.dumps({**config, "cpu_sampling_autocast": "bfloat16"}))
    plain, cast = load_generator(tiny_sdxl_path, device="cpu"), load_generator(folder, device="cpu")
    assert cast.describe()["sampling_autocast"] == "bfloat16"
    a = plain.generate(["a photo of a star"], [3])
    b = cast.generate(["a photo of a star"], [3])
    assert not torch.equal(a, b) and float((a - b).abs().max()) < 0.2  # sampled under bf16, close to float32
