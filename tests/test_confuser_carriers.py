"""Confuser carriers (AnalysisConfig.carrier_source): above 20 classes, a class's sufficiency carriers are its nearest
confusers by the classifier's own confusion on its baseline images, and the counter rule looks at those only.

A 50-class classifier built from a few numbers: class j's logit falls with the distance between the image's hue
and j/50 on the colour circle, so class c is confused with c±1 and c±2. Class 23 sits at a hue no background or
object of the fake generator comes near, while "on grass" raises the green classes (hue near 1/3; class 40 also
answers to green), none of them a confuser of class 23. The run's baseline images for class c are plain patches of
hue c/50, scored and saved as the audit saves them (probe.tokens.score_images' top-k); the analysis generates its
carrier images with the tests' fake generator.
"""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from analysis_fakes import FakeGenerator, fake_cues
from probe.analysis import AnalysisConfig, analyze_run
from probe.files import save_png
from probe.run import RunDir
from probe.tokens import score_images

N = 50
AUDITED = 23  # hue 0.46: no background or object of the fake generator comes near it
GREEN_LOVER = 40
LABELS = [f"k{j:02d}" for j in range(N)]
CONFIG = AnalysisConfig(attributions=False, off_object=False, token_shift=False, concepts="none", n_evidence=0,
                        necessity_screen_seeds=2, screen_extend=(), confirm=False)


class HueClassifier(nn.Module):
    """logit_j = -sharpness * (circular hue distance to j/N)^2, plus ``green`` x greenness for class GREEN_LOVER."""

    def __init__(self, sharpness: float = 400.0, green: float = 30.0):
        super().__init__()
        self.labels = list(LABELS)
        self.sharpness, self.green = sharpness, green
        self.centres = torch.arange(N, dtype=torch.float32) / N

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x.mean(dim=(2, 3))
        r, g, b = rgb.unbind(-1)
        mx, mn = rgb.max(-1).values, rgb.min(-1).values
        delta = (mx - mn).clamp_min(1e-6)
        hue = torch.where(mx == r, ((g - b) / delta) % 6, torch.where(mx == g, (b - r) / delta + 2, (r - g) / delta + 4)) / 6
        d = (hue[:, None] - self.centres[None]).abs()
        d = torch.minimum(d, 1 - d)
        logits = -self.sharpness * d ** 2
        greenness = (g - torch.maximum(r, b)).clamp_min(0)
        logits[:, GREEN_LOVER] += self.green * greenness
        return logits


def _run(root: Path, classifier: HueClassifier) -> Path:
    owner = RunDir(root)
    owner.write_config({"audit": {"token": {"steps": 2, "guidance_scale": 2.0}}, "generator": {"source": "fake"}})
    owner.write_labels(LABELS)
    d = root / "classes" / f"{AUDITED}-{LABELS[AUDITED]}"
    (d / "images").mkdir(parents=True)
    seeds = [1000, 1001, 1002]
    rgb = colorsys.hsv_to_rgb(AUDITED / N, 0.9, 0.9)
    images = torch.stack([torch.tensor(rgb).view(3, 1, 1).repeat(1, 16, 16) + 0.02 * torch.randn(3, 16, 16,
                          generator=torch.Generator().manual_seed(s)) for s in seeds]).clamp(0, 1)
    scores = score_images(classifier, images, AUDITED, topk=5)  # what the audit saves per baseline image
    records = []
    for i, (image, s) in enumerate(zip(images, seeds)):
        path = f"images/baseline_p0_s{s}.png"
        save_png(d / path, image)
        records.append({"path": path, "kind": "baseline", "prompt": f"a photo of a {LABELS[AUDITED]}",
                        "prompt_index": 0, "seed": s, "target_prob": scores["target_probs"][i],
                        "correct": scores["per_image"][i]["correct"], "topk": scores["per_image"][i]["topk"]})
    tok = f"<probe-{AUDITED}>"
    owner.write_metrics(d, {
        "status": "done", "error": None, "class_index": AUDITED, "class_name": LABELS[AUDITED], "slug": LABELS[AUDITED],
        "token_string": tok, "init_word": "a",
        "prompts": {"templates": ["a photo of a {}"], "token": [f"a photo of a {tok} {LABELS[AUDITED]}"],
                    "baseline": [f"a photo of a {LABELS[AUDITED]}"]},
        "steps": 2, "best_step": 1, "stopped": "threshold", "seconds": 0.1, "train_seeds": [0], "eval_seeds": seeds,
        "baseline": {"accuracy": 1.0, "mean_target_prob": 0.5, "n": 3}, "token": {"accuracy": 1.0,
                                                                                "mean_target_prob": 0.5, "n": 3},
        "eval_model": None, "images": records})
    owner.write_summary()
    return root, images


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    classifier = HueClassifier()
    out = {}
    for source in ("auto", "spread"):
        run, images = _run(tmp_path_factory.mktemp(source), classifier)
        analyze_run(run, classifier, FakeGenerator(), CONFIG.replace(carrier_source=source), cues=fake_cues())
        out[source] = json.loads((run / "analysis.json").read_text())
    with torch.no_grad():
        mean = torch.softmax(classifier(images), -1).mean(0)  # the full softmax, not the saved top-k
    mean[AUDITED] = -1
    out["confusers"] = [LABELS[j] for j in mean.argsort(descending=True)[:CONFIG.n_carriers].tolist()]
    return out


def test_above_20_classes_the_carriers_are_the_class_s_nearest_confusers(analysed):
    auto = analysed["auto"]
    assert set(analysed["confusers"]) == {"k21", "k22", "k24", "k25"}  # the premise: c±1, c±2
    assert auto["carriers"]["source"] == "confusers"
    assert auto["carriers"]["per_class"][str(AUDITED)] == analysed["confusers"]
    # the sufficiency pairs were made on those carriers and no other
    used = {key.split(":", 1)[1] for entry in auto["pairs"] if entry["kind"] == "sufficiency"
            for key in entry["screen"]["keys"]}
    assert used == set(analysed["confusers"])
    # spread (what 20 classes or fewer get): class names spread over the list, the same for every class
    spread = analysed["spread"]["carriers"]
    assert spread["source"] == "spread" and spread["per_class"][str(AUDITED)] == ["k00", "k16", "k33", "k49"]


def test_the_counter_rule_looks_at_the_confusers_only(analysed):
    """Green raises class 40, far from class 23: over every class (spread) "on grass" is no neutral counter for class
    23; among class 23's confusers it is."""
    assert "on grass" in analysed["spread"]["dropped_counters"].get(str(AUDITED), [])  # keyed by class index
    auto = analysed["auto"]
    assert auto["dropped_counters_keyed_by"] == "class index"  # else the .get below would read nothing, and pass
    assert "on grass" not in auto["dropped_counters"].get(str(AUDITED), [])


def test_the_choice_is_a_validated_setting_and_resolves_by_class_count():
    from probe.analysis import AnalysisError

    assert AnalysisConfig().carrier_source_for(6) == "spread"
    assert AnalysisConfig().carrier_source_for(21) == "confusers"
    assert AnalysisConfig(carrier_source="spread").carrier_source_for(1000) == "spread"
    assert AnalysisConfig(carriers=("circle",)).carrier_source_for(1000) == "given"
    with pytest.raises(AnalysisError, match="carrier_source"):
        AnalysisConfig(carrier_source="nearest")
