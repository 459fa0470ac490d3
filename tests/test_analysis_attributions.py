"""probe.analysis.attributions: captum attributions of generated images, the Grad-CAM layer choice, overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from analysis_fakes import ColourClassifier, FakeGenerator
from probe.analysis import AnalysisError, AttributionConfig, attribute, choose_layer, save_overlays


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


def test_torchscript_and_exported_classifiers_run_every_method(tmp_path):
    from probe.classifiers import load_classifier

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    torch.jit.save(torch.jit.trace(net, torch.rand(1, 3, 16, 16)), str(tmp_path / "m.pt"))
    ep = torch.export.export(net, (torch.rand(2, 3, 16, 16),), dynamic_shapes=({0: torch.export.Dim("b", min=1, max=64)},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    images = torch.rand(2, 3, 16, 16)
    kwargs = dict(input_size=16, mean=(0.5,) * 3, std=(0.25,) * 3, crop_pct=1.0)
    eager = attribute(load_classifier(net, **kwargs), images, 1, AttributionConfig(ig_steps=4))
    for name in ("m.pt", "m.pt2"):
        clf = load_classifier(str(tmp_path / name), **kwargs)
        res = attribute(clf, images, 1, AttributionConfig(ig_steps=4))
        assert set(res.maps) == {"integrated_gradients", "grad_cam", "occlusion"} and not res.skipped, name
        assert res.layer == eager.layer == "1", name  # the ReLU: the last (B,C,h,w) output
        assert np.allclose(res.maps["grad_cam"], eager.maps["grad_cam"], atol=1e-5), name
        assert np.abs(res.maps["integrated_gradients"]).sum() > 0


def test_with_attributions_off_the_off_object_heat_is_the_cheapest_method():
    """--attributions none ran integrated gradients (dozens of passes per image) for the off-object measure, more
    than --attributions grad_cam (found by review, 7 December 2026): it runs Grad-CAM, and integrated gradients only
    where no layer can be hooked."""
    from types import SimpleNamespace

    from probe.analysis.class_evidence import Attributions
    from probe.analysis.config import AnalysisConfig

    images, cls = _star_on_grass(2), SimpleNamespace(index=2, dir=None)
    attr = Attributions(AnalysisConfig(attributions=False), ColourClassifier(40.0))
    heat = attr.run(images, cls, ["a", "b"], False)
    assert sorted(attr.seconds) == ["grad_cam"] and attr.heat_method() == "grad_cam" and heat.shape == (2, 16, 16)
    hookless = ColourClassifier(40.0)
    hookless.supports_hooks = False
    attr = Attributions(AnalysisConfig(attributions=False, ig_steps=4), hookless)
    heat = attr.run(images, cls, ["a", "b"], False)
    assert attr.heat_method() == "integrated_gradients" and heat is not None and heat.shape == (2, 16, 16)
    assert "integrated_gradients" in attr.seconds
    attr = Attributions(AnalysisConfig(attributions=True, ig_steps=4), ColourClassifier(40.0))  # on: as configured
    attr.run(images, cls, ["a", "b"], False)
    assert sorted(attr.seconds) == ["grad_cam", "integrated_gradients", "occlusion"]
    assert attr.heat_method() == "integrated_gradients"
