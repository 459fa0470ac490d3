"""Unit tests of the analysis building blocks: stats, cue lists, sufficiency,
necessity, attributions, token shift and nearest words (all CPU-fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from analysis_fakes import BACKGROUNDS, CLASSES, ColourClassifier, FakeGenerator, FakeOracles, fake_cues
from probe.analysis import (
    AnalysisError,
    AttributionConfig,
    Carrier,
    Cue,
    Thresholds,
    attribute,
    bootstrap_columns,
    choose_layer,
    cue_necessity,
    cue_sufficiency,
    cues_from_vocabulary,
    default_cues,
    load_cues,
    nearest_words,
    paired_bootstrap,
    save_overlays,
    token_shift,
)
from probe.analysis.stats import Effect
from probe.errors import ProbeError


# ----------------------------------------------------------------- stats
def test_paired_bootstrap_interval_tracks_the_effect():
    rng = np.random.default_rng(0)
    shifted = paired_bootstrap(0.3 + 0.1 * rng.standard_normal(60), seed=1)
    assert abs(shifted.mean - 0.3) < 0.05 and shifted.ci_low > 0.2 and shifted.ci_high < 0.4
    assert shifted.ci_low <= shifted.mean <= shifted.ci_high and shifted.n == 60
    noise = paired_bootstrap(rng.standard_normal(60), seed=1)
    assert noise.ci_low < 0 < noise.ci_high
    assert paired_bootstrap([], seed=0).n == 0


def test_bootstrap_columns_respects_the_mask():
    d = np.array([[1.0, 5.0], [1.0, 5.0], [1.0, -100.0]])
    mask = np.array([[True, True], [True, True], [True, False]])
    a, b = bootstrap_columns(d, mask, n_boot=200, seed=0)
    assert a.mean == pytest.approx(1.0) and a.n == 3
    assert b.mean == pytest.approx(5.0) and b.n == 2 and b.ci_low == pytest.approx(5.0)


def test_thresholds_separate_strong_weak_and_unreported():
    t = Thresholds()
    assert t.judge("sufficiency", Effect(0.4, 0.2, 0.6, 20)) == (True, "strong")
    assert t.judge("sufficiency", Effect(0.4, -0.1, 0.8, 20)) == (False, "weak")  # interval touches zero
    assert t.judge("sufficiency", Effect(0.4, 0.2, 0.6, 2)) == (False, "weak")  # too few images
    assert t.judge("sufficiency", Effect(0.01, 0.0, 0.02, 20)) == (False, None)
    assert t.judge("off-object", Effect(0.8, 0.7, 0.9, 20)) == (True, "strong")
    assert t.judge("off-object", Effect(0.4, 0.3, 0.5, 20)) == (False, "weak")
    with pytest.raises(ProbeError, match="weak_effect"):
        Thresholds(min_effect=0.1, weak_effect=0.2)


# ----------------------------------------------------------------- cue lists
def test_default_cue_list_is_curated_and_valid():
    cues = default_cues()
    assert len(cues) >= 40
    cats = {c.category for c in cues}
    assert {"background", "scene", "object", "people", "text", "style", "lighting"} <= cats
    for c in cues:
        assert c.counters, c.name
        assert c.apply("dog") != "dog" and "dog" in c.apply("dog")


def test_user_cue_files_text_and_json(tmp_path):
    txt = tmp_path / "cues.txt"
    txt.write_text("# my cues\n{} on a plate | {} on a rock; {} in the sea\nwith a watermark\n")
    cues = load_cues(txt)
    assert [c.name for c in cues] == ["on a plate", "with a watermark"]
    assert cues[0].counter_prompts("lobster") == ["lobster on a rock", "lobster in the sea"]
    assert cues[1].apply("cat") == "cat with a watermark"
    js = tmp_path / "cues.json"
    js.write_text(json.dumps([{"name": "snow", "template": "{} in snow", "counters": ["{} on grass"]}]))
    assert load_cues(js)[0].template == "{} in snow"
    js.write_text(json.dumps([{"name": "a", "template": "x"}, {"name": "a", "template": "y"}]))
    with pytest.raises(AnalysisError, match="repeats cue names"):
        load_cues(js)
    js.write_text("{not json")
    with pytest.raises(AnalysisError, match="not valid JSON"):
        load_cues(js)
    with pytest.raises(AnalysisError, match="does not exist"):
        load_cues(tmp_path / "missing.txt")
    with pytest.raises(AnalysisError, match="exactly once"):
        Cue(name="bad", template="{} and {}")


def test_world_vocabulary_cues_follow_the_caption_grammar():
    cues = cues_from_vocabulary(["grass", "sand", "snow"], ["red", "blue"], ["none", "dot", "bar"],
                                {"none": "with no tag", "dot": "with a dot in the corner", "bar": "with a bar in the corner"})
    by = {c.name: c for c in cues}
    assert by["grass"].apply("star") == "star on grass" and by["grass"].attribute == "background"
    assert by["red"].apply("star") == "red star"
    assert by["dot"].apply("star") == "star with a dot in the corner"
    assert "star with no tag" in by["dot"].counter_prompts("star")
    assert "none" not in by


# ----------------------------------------------------------------- sufficiency / necessity
def _carriers():
    return [Carrier(n, i) for i, n in enumerate(CLASSES)]


def test_sufficiency_shares_one_pass_and_finds_the_planted_cue():
    gen, clf = FakeGenerator(), ColourClassifier(grass_bias=40.0)
    cues = fake_cues()
    seeds = list(range(6))
    res = cue_sufficiency(gen, clf, cues, _carriers(), seeds, batch_size=32)
    # cost: (cues + 1) x carriers x seeds images, whatever the number of classes
    assert gen.images_made == (len(cues) + 1) * len(CLASSES) * len(seeds)
    grass = [c.name for c in cues].index("grass")
    star = CLASSES.index("star")
    assert res.top_cues(star, 1) == [grass]
    eff = res.effect(grass, star, n_boot=300)
    assert eff.mean > 0.2 and eff.ci_low > 0
    assert eff.n == 2 * len(seeds)  # the "star" carrier is not evidence about star
    assert res.flip_rates[grass, star] > 0.5
    gen2 = FakeGenerator()
    clean, biased = cue_sufficiency(gen2, [ColourClassifier(0.0), ColourClassifier(40.0)], cues, _carriers(), seeds, batch_size=32)
    assert np.abs(clean.means[:, star]).max() < 0.05
    assert gen2.images_made == gen.images_made  # two classifiers, one generation pass
    assert np.allclose(biased.diffs, res.diffs)


def test_necessity_measures_the_drop_paired_by_seed():
    gen = FakeGenerator({"<probe-2>": "on grass"})
    grass = next(c for c in fake_cues() if c.name == "grass")
    prompts = [("a photo of a {}", "<probe-2> star")]
    biased = cue_necessity(gen, ColourClassifier(40.0), 2, grass, prompts, [0, 1, 2, 3], n_boot=200)
    clean = cue_necessity(gen, ColourClassifier(0.0), 2, grass, prompts, [0, 1, 2, 3], n_boot=200)
    assert biased.effect.n == 4 and biased.effect.mean > 0.1 and biased.effect.ci_low > 0
    assert abs(clean.effect.mean) < 1e-4
    with pytest.raises(AnalysisError, match="no counters"):
        cue_necessity(gen, ColourClassifier(), 2, Cue("x", "{} x"), prompts, [0])


# ----------------------------------------------------------------- attributions
def _star_on_grass(n=3):
    return FakeGenerator().generate(["a photo of a star on grass"] * n, list(range(n)))


def test_attributions_follow_the_planted_cue(tmp_path):
    images = _star_on_grass()
    gen = FakeGenerator()
    masks = np.stack([gen.scene("a photo of a star on grass", s)[1] for s in range(3)])
    cfg = AttributionConfig(ig_steps=8)
    biased = attribute(ColourClassifier(40.0), images, 2, cfg)
    clean = attribute(ColourClassifier(0.0), images, 2, cfg)
    assert set(biased.maps) == {"integrated_gradients", "grad_cam", "occlusion"} and biased.layer
    for m, heat in biased.maps.items():
        assert heat.shape == (3, 16, 16), m
    share_off = lambda h: float(np.abs(h)[~masks].sum() / np.abs(h).sum())
    assert share_off(biased.maps["integrated_gradients"]) > 0.5
    assert share_off(clean.maps["integrated_gradients"]) < 0.05
    written = save_overlays(images, biased, tmp_path, ["a", "b", "c"])
    assert sorted(p.name for p in written["grad_cam"]) == ["a.png", "b.png", "c.png"]
    from PIL import Image

    assert min(Image.open(written["occlusion"][0]).size) >= 128


def test_layer_methods_are_skipped_without_hooks():
    clf = ColourClassifier(40.0)
    clf.supports_hooks = False
    res = attribute(clf, _star_on_grass(2), 2, AttributionConfig(ig_steps=4))
    assert "grad_cam" in res.skipped and "hooks" in res.skipped["grad_cam"]
    assert set(res.maps) == {"integrated_gradients", "occlusion"}
    with pytest.raises(AnalysisError, match="unknown"):
        AttributionConfig(methods=("saliency",))


def test_choose_layer_cnn_vit_and_override():
    import timm

    torch.manual_seed(0)
    cnn = timm.create_model("resnet18", pretrained=False, num_classes=3).eval()
    assert choose_layer(cnn, (64, 64)).name == "layer4"
    assert choose_layer(cnn, (32, 32)).name == "layer3"  # layer4 is 1x1 there: no map to show
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32, patch_size=8, depth=3).eval()
    choice = choose_layer(vit, (32, 32))
    assert choice.name == "blocks.1" and choice.kind == "tokens" and choice.grid == (4, 4) and choice.prefix_tokens == 1
    res = attribute(vit, torch.rand(2, 3, 32, 32), 1, AttributionConfig(methods=("grad_cam",)))
    assert res.maps["grad_cam"].shape == (2, 32, 32) and res.maps["grad_cam"].max() > 0
    assert choose_layer(cnn, (32, 32), "layer3").name == "layer3"
    with pytest.raises(AnalysisError, match="not a module"):
        choose_layer(cnn, (32, 32), "layer9")


# ----------------------------------------------------------------- token shift and nearest words
def test_token_shift_counts_what_the_token_added():
    gen = FakeGenerator({"<t>": "on grass"})
    seeds = list(range(8))
    base = gen.generate(["a photo of a star"] * 8, seeds)
    tok = gen.generate(["a photo of a <t> star"] * 8, seeds)
    shifts = {s.cue.name: s for s in token_shift(FakeOracles(), base, tok, fake_cues(), n_boot=200)}
    expected = sum(gen.scene("a photo of a star", s)[2]["background"] != "grass" for s in seeds) / 8
    assert shifts["grass"].freq_token == 1.0
    assert shifts["grass"].effect.mean == pytest.approx(expected)
    assert all(shifts[b].effect.mean <= 0 for b in BACKGROUNDS if b != "grass")
    with pytest.raises(AnalysisError, match="paired"):
        token_shift(FakeOracles(), base, tok[:3], fake_cues())


def test_nearest_words_rank_by_cosine_and_skip_added_tokens():
    gen = FakeGenerator()
    emb = gen.text_encoder.get_input_embeddings().weight
    grass = gen.tokenizer.encoder["grass</w>"]
    words = nearest_words(gen.tokenizer, gen.text_encoder, emb[grass] * 3.0, k=3)
    assert words[0]["word"] == "grass" and words[0]["cosine"] == pytest.approx(1.0, abs=1e-4)
    assert len(words) == 3 and words[0]["cosine"] >= words[1]["cosine"] >= words[2]["cosine"]
    gen.tokenizer.added = {"grass": grass}
    assert nearest_words(gen.tokenizer, gen.text_encoder, emb[grass], k=3)[0]["word"] != "grass"
    with pytest.raises(AnalysisError, match="dimension"):
        nearest_words(gen.tokenizer, gen.text_encoder, torch.zeros(5))


# ----------------------------------------------------------------- CLIP concept scorer (optional)
def _tiny_clip(folder):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from tiny_sd import write_tokenizer

    write_tokenizer(folder / "tok")
    tok = CLIPTokenizer.from_pretrained(folder / "tok")
    torch.manual_seed(0)
    text = dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                max_position_embeddings=16, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(folder / "clip")
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(folder / "clip")
    return folder / "clip"


def test_clip_scorer_picks_the_caption_closest_to_the_image(tmp_path):
    from probe.analysis import ClipScorer

    cues = [Cue("grass", "{} on grass", ("{} on sand", "{} on snow"))]
    scorer = ClipScorer(_tiny_clip(tmp_path), cues)
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        px = scorer.processor.image_processor(images=[i.permute(1, 2, 0).numpy() for i in images], return_tensors="pt",
                                              do_rescale=False)["pixel_values"]
        f = scorer.model.get_image_features(pixel_values=px)
        f = torch.nn.functional.normalize((f if isinstance(f, torch.Tensor) else f.pooler_output).float(), dim=-1)
    # make caption 0 ("on grass") the image-0 direction and a counter the image-1 direction
    scorer._text = torch.stack([f[0], f[1], -f[0]])
    assert scorer.predict(images) == {"grass": ["grass", ""]}
    with pytest.raises(AnalysisError, match="not a local CLIP folder"):
        ClipScorer(tmp_path / "missing", cues)


def test_torchscript_and_exported_classifiers_fall_back_to_hook_free_methods(tmp_path):
    from probe.classifiers import load_classifier

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 3, 16, 16)), str(tmp_path / "m.pt"))
    ep = torch.export.export(net, (torch.rand(2, 3, 16, 16),), dynamic_shapes=({0: torch.export.Dim("b", min=1, max=64)},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    images = torch.rand(2, 3, 16, 16)
    for name in ("m.pt", "m.pt2"):
        clf = load_classifier(str(tmp_path / name), input_size=16, mean=(0.5,) * 3, std=(0.25,) * 3, crop_pct=1.0)
        res = attribute(clf, images, 1, AttributionConfig(ig_steps=4))
        assert set(res.maps) == {"integrated_gradients", "occlusion"} and "grad_cam" in res.skipped, name
        assert np.abs(res.maps["integrated_gradients"]).sum() > 0


def test_necessity_cache_shares_arms_between_cues_of_one_attribute():
    gen = FakeGenerator()
    cues = {c.name: c for c in fake_cues()}
    prompts = [("a photo of a {}", "star")]
    cache: dict = {}
    first = cue_necessity(gen, ColourClassifier(40.0), 2, cues["grass"], prompts, [0, 1], cache=cache, n_boot=200)
    made = gen.images_made
    assert made == 2 * 4  # grass + its 3 counters, 2 seeds
    second = cue_necessity(gen, ColourClassifier(40.0), 2, cues["sand"], prompts, [0, 1], cache=cache, n_boot=200)
    assert gen.images_made == made  # sand's reference and counters were all generated already
    assert first.effect.mean > 0.1 and second.effect.mean < 0
