"""Grad-CAM on every classifier format that carries its own code: the bundled .pt2 and TorchScript.

The maps are checked against the same weights run as an ordinary (eager) PyTorch module, where
Grad-CAM reads the layer with forward hooks: a format's map is only right if it matches that one.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import probe
from probe.analysis import AnalysisError, AttributionConfig, attribute, choose_layer
from probe.analysis.class_evidence import Attributions
from probe.analysis.config import METHODS, AnalysisConfig
from probe.classifiers import Classifier, DataConfig
from probe.world import SHAPES, VOCAB, bundled_classifier_path
from probe.world.classifiers import Thumbnail, build_classifier
from probe.world.scenes import render_batch, sample_attributes

STAR = SHAPES.index("star")
GRAD_CAM = AttributionConfig(methods=("grad_cam",))


@pytest.fixture(scope="module")
def bundled() -> Classifier:
    return probe.load_classifier(bundled_classifier_path("biased"))


@pytest.fixture(scope="module")
def eager_net() -> torch.nn.Module:
    """The bundled classifier's weights in the Python module they were trained as (same parameter names)."""
    path = bundled_classifier_path("biased")
    recipe = json.loads(path.with_suffix(".bias.json").read_text())["config"]
    net = Thumbnail(build_classifier(recipe["arch"], num_classes=len(SHAPES)), pool=recipe["pool"])
    net.load_state_dict(torch.export.load(str(path)).state_dict)
    return net.eval()


@pytest.fixture(scope="module")
def stars() -> torch.Tensor:
    """Stars on grass: the biased classifier's planted cue, so the map has something to show."""
    attrs = sample_attributes(4, np.random.default_rng(0))
    attrs["shape"][:] = STAR
    attrs["background"][:] = VOCAB["background"].index("grass")
    images, _ = render_batch(attrs, generator=torch.Generator().manual_seed(0))
    return images


def _like(clf: Classifier, net: torch.nn.Module, **kw) -> Classifier:
    """``net`` behind exactly ``clf``'s preprocessing (the bundled .data.json)."""
    return Classifier(net, num_classes=clf.num_classes, data_config=clf.data_config, **kw)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _check_map(heat: np.ndarray, n: int) -> None:
    assert heat.shape == (n, 32, 32)
    assert np.isfinite(heat).all()
    assert heat.max() > 0 and heat.std() > 0  # not constant, not all zero


def test_bundled_pt2_runs_grad_cam_like_its_eager_module(bundled, eager_net, stars):
    assert bundled.format == "export" and bundled.supports_hooks
    eager = _like(bundled, eager_net)
    with torch.no_grad():  # the unflattened program computes what the flat one (and the eager module) did
        torch.testing.assert_close(bundled(stars), eager(stars), atol=1e-5, rtol=1e-5)
    got = attribute(bundled, stars, STAR, GRAD_CAM)
    want = attribute(eager, stars, STAR, GRAD_CAM)
    assert not got.skipped and got.layer == want.layer == choose_layer(eager, (32, 32)).name
    _check_map(got.maps["grad_cam"], len(stars))
    assert _correlation(got.maps["grad_cam"], want.maps["grad_cam"]) > 0.99
    np.testing.assert_allclose(got.maps["grad_cam"], want.maps["grad_cam"], atol=1e-4)
    # the user's own hooks fire on the loaded program's submodules too
    seen = []
    handle = bundled.model.get_submodule(got.layer).register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    try:
        bundled(stars[:1])
    finally:
        handle.remove()
    assert seen and len(seen[0]) == 4


def test_grad_cam_follows_the_classifiers_preprocessing(bundled, stars):
    """Gradients flow through the Classifier's own resize/normalise: other statistics give another map."""
    base = attribute(bundled, stars, STAR, GRAD_CAM).maps["grad_cam"]
    shifted = probe.load_classifier(bundled_classifier_path("biased"), mean=(0.2, 0.7, 0.4), std=(0.5, 0.1, 0.3))
    other = attribute(shifted, stars, STAR, GRAD_CAM).maps["grad_cam"]
    assert not np.allclose(base, other, atol=1e-3)


@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_runs_grad_cam_like_its_eager_module(tmp_path, bundled, eager_net, stars, how):
    path = tmp_path / "world.ts"
    with warnings.catch_warnings():  # torch >= 2.14 warns that TorchScript is deprecated
        warnings.simplefilter("ignore")
        scripted = torch.jit.trace(eager_net, torch.rand(2, 3, 32, 32)) if how == "trace" else torch.jit.script(eager_net)
        torch.jit.save(scripted, str(path))
    stem = bundled_classifier_path("biased").with_suffix("")
    for kind in ("labels.txt", "data.json"):
        shutil.copy(f"{stem}.{kind}", tmp_path / f"world.{kind}")
    clf = probe.load_classifier(path)
    assert clf.format == "torchscript" and not clf.supports_hooks  # Python hooks never fire on a scripted graph
    got = attribute(clf, stars, STAR, AttributionConfig(methods=("grad_cam",), batch_size=3))  # one tapped graph, 2 batches
    want = attribute(_like(bundled, eager_net), stars, STAR, GRAD_CAM)
    assert not got.skipped and got.layer == want.layer
    _check_map(got.maps["grad_cam"], len(stars))
    assert _correlation(got.maps["grad_cam"], want.maps["grad_cam"]) > 0.99
    np.testing.assert_allclose(got.maps["grad_cam"], want.maps["grad_cam"], atol=1e-4)
    # a layer named by the user (here the stem, a Sequential) is tapped the same way; a wrong name is an error
    cfg = AttributionConfig(methods=("grad_cam",), layer="net.conv1")
    np.testing.assert_allclose(attribute(clf, stars[:2], STAR, cfg).maps["grad_cam"],
                               attribute(_like(bundled, eager_net), stars[:2], STAR, cfg).maps["grad_cam"], atol=1e-4)
    with pytest.raises(AnalysisError, match="not a module"):
        choose_layer(clf, (32, 32), "net.layer9")


def test_a_frozen_torchscript_graph_is_tapped_until_saved_without_its_module_names(tmp_path, bundled, eager_net, stars):
    """torch.jit.freeze folds the submodules into the graph, whose ops still say which module they came from;
    a frozen graph saved and loaded again no longer does: Grad-CAM is then skipped with the reason, nothing fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = torch.jit.freeze(torch.jit.script(eager_net))
        torch.jit.save(frozen, str(tmp_path / "frozen.ts"))
    got = attribute(_like(bundled, frozen, supports_hooks=False), stars[:2], STAR, GRAD_CAM)
    want = attribute(_like(bundled, eager_net), stars[:2], STAR, GRAD_CAM)
    assert got.layer == want.layer and not got.skipped
    np.testing.assert_allclose(got.maps["grad_cam"], want.maps["grad_cam"], atol=1e-4)
    saved = probe.load_classifier(tmp_path / "frozen.ts", input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, crop_pct=1.0,
                                  interpolation="bilinear")
    res = attribute(saved, stars[:2], STAR, AttributionConfig(ig_steps=4))
    assert set(res.maps) == {"integrated_gradients", "occlusion"}
    assert "names no modules" in res.skipped["grad_cam"] and "\n" not in res.skipped["grad_cam"]


def test_torchscript_vit_grad_cam_reads_the_token_grid():
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32, patch_size=8,
                            depth=3).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(vit, torch.rand(1, 3, 32, 32))
    x = torch.rand(2, 3, 32, 32)
    data = DataConfig(input_size=(3, 32, 32), crop_pct=1.0)
    want = attribute(Classifier(vit, num_classes=3, data_config=data), x, 1, GRAD_CAM)
    got = attribute(Classifier(traced, num_classes=3, data_config=data, supports_hooks=False), x, 1, GRAD_CAM)
    assert got.layer == want.layer == "blocks.1" and not got.skipped  # the input of the last block
    _check_map(got.maps["grad_cam"], len(x))
    assert _correlation(got.maps["grad_cam"], want.maps["grad_cam"]) > 0.99


def test_the_default_methods_run_on_the_bundled_classifier_without_a_skip(bundled, stars):
    """What the demo's analysis does per class: no method may be reported as skipped."""
    stars = stars[:2]
    res = attribute(bundled, stars, STAR, AttributionConfig(ig_steps=4))
    assert set(res.maps) == set(METHODS) and res.skipped == {}
    evidence = Attributions(AnalysisConfig(ig_steps=4), bundled)
    evidence.run(stars, SimpleNamespace(index=STAR, dir=Path("unused")), [f"s{i}" for i in range(len(stars))], save=False)
    summary = evidence.summary()
    assert summary["skipped"] == {} and summary["methods_run"] == list(METHODS)
    assert summary["layer"] == res.layer


def test_a_program_that_cannot_be_unflattened_still_loads_flat(monkeypatch, stars):
    def refuse(_program):
        raise RuntimeError("unflatten refused")

    monkeypatch.setattr(torch.export, "unflatten", refuse)
    clf = probe.load_classifier(bundled_classifier_path("biased"))
    assert not clf.supports_hooks and clf(stars).shape == (len(stars), len(SHAPES))
    res = attribute(clf, stars[:2], STAR, AttributionConfig(ig_steps=4))
    assert set(res.maps) == {"integrated_gradients", "occlusion"} and "hooks" in res.skipped["grad_cam"]
