"""`--multi-label`: a classifier that scores each class with its own sigmoid (a tagger: an image may be several classes).

Read through a softmax, a tagger that sees two of its tags in an image gives each about a half and calls it the first
one only; its P(class) is the sigmoid of the class's logit, and an image is the class above 0.5. The same reading is
used for the token's objective and accuracy, the analysis's probabilities, `probe generate --min-prob` and `probe
confirm`; the run records it, so every later command reloads the classifier the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import run_main

SIZE = 24


class Tagger(nn.Module):
    """Logits (3, 3, -3) for every image: tags 0 and 1 on, tag 2 off (a trace of the image keeps gradients flowing)."""

    def forward(self, x):
        return torch.tensor([3.0, 3.0, -3.0]) + 1e-3 * x.mean(dim=(1, 2, 3))[:, None]


def _images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def test_a_tagger_calls_an_image_every_class_it_scores_above_a_half():
    """Multi-label: both tags read 0.95 and both are called; the softmax reading gives them 0.5 each and calls only
    the first (argmax), so a token for tag 1 could never reach any accuracy."""
    from probe.classifiers import load_classifier
    from probe.classifiers.classifier import called, probabilities
    from probe.tokens import score_images

    tagger = load_classifier(Tagger(), labels=["dog", "sofa", "cat"], input_size=SIZE, multi_label=True)
    soft = load_classifier(Tagger(), labels=["dog", "sofa", "cat"], input_size=SIZE)
    x = _images()
    probs = probabilities(tagger, tagger(x))
    torch.testing.assert_close(probs[:, 1], torch.sigmoid(tagger(x)[:, 1]))
    assert called(tagger, probs, 1).all() and not called(tagger, probs, 2).any()
    assert [score_images(tagger, x, c)["accuracy"] for c in range(3)] == [1.0, 1.0, 0.0]
    assert [score_images(soft, x, c)["accuracy"] for c in range(3)] == [1.0, 0.0, 0.0]
    assert tagger.describe()["multi_label"] and "multi-label" in tagger._repr_html_() and "multi_label=True" in repr(tagger)
    assert tagger.topk(x, k=2)[0][1]["prob"] == pytest.approx(float(torch.sigmoid(torch.tensor(3.0))), abs=1e-3)


def test_the_multi_label_objective_is_minus_log_sigmoid_of_the_target_and_leaves_the_other_logits_alone():
    from probe.token_config import TokenConfig
    from probe.tokens import objective_loss

    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 4.0, 1.0]], requires_grad=True)
    labels = torch.tensor([1, 1])
    loss = objective_loss(logits, labels, TokenConfig(), multi_label=True)
    assert float(loss.detach()) == pytest.approx(float(-torch.log(torch.sigmoid(torch.tensor([-1.0, 4.0]))).mean()), abs=1e-6)
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.count_nonzero(grad[:, [0, 2]]) == 0 and (grad[:, 1] < 0).all()
    margin = objective_loss(logits, labels, TokenConfig(objective="margin"), multi_label=True)
    (grad,) = torch.autograd.grad(margin, logits)
    assert torch.count_nonzero(grad[:, [0, 2]]) == 0 and (grad[:, 1] < 0).all()


def test_a_softmax_classifier_recast_as_its_own_sigmoids_learns_the_same_token_and_reads_the_same_probabilities():
    """The world's biased classifier wrapped to return logit(softmax) per class is the same classifier read
    multi-label: P(class) and the token's loss, its gradients and the token learned in 3 steps equal the softmax
    reading's (stopped by P(class): accuracy may differ where the top class is below a half)."""
    from probe.analysis._util import classify_probs
    from probe.classifiers import load_classifier
    from probe.generators import load_generator
    from probe.token_config import TokenConfig
    from probe.tokens import optimize_class_token
    from probe.world.assets import bundled_classifier_path, bundled_generator_path

    soft = load_classifier(str(bundled_classifier_path("biased")))

    class AsSigmoids(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            logp = self.model(x).float().log_softmax(-1)
            return logp - torch.log1p(-logp.exp().clamp(max=1 - 1e-7))  # logit(p)

    c = soft.data_config
    multi = load_classifier(AsSigmoids(soft.model), labels=soft.labels, input_size=c.input_size, mean=c.mean,
                            std=c.std, crop_pct=c.crop_pct, interpolation=c.interpolation, multi_label=True)
    x = _images(6)
    import numpy as np

    np.testing.assert_allclose(classify_probs(multi, x), classify_probs(soft, x), atol=1e-5)
    generator = load_generator(str(bundled_generator_path()), device="cpu")
    config = TokenConfig(max_steps=3, min_steps=2, batch_size=2, eval_images=2, patience=10, stop_metric="target_prob")
    star = soft.labels.index("star")
    a = optimize_class_token(generator, soft, star, config)
    b = optimize_class_token(generator, multi, star, config)
    assert [round(h["loss"], 4) for h in a.history] == [round(h["loss"], 4) for h in b.history]
    torch.testing.assert_close(a.vector, b.vector, atol=1e-4, rtol=0)


def test_a_multi_label_audit_records_it_and_every_later_command_reads_the_classifier_so(tmp_path, tiny_sd_path,
                                                                                      monkeypatch, capsys):
    """`probe audit --multi-label` writes multi_label into config.json; `probe generate --min-prob` keeps the images
    the tagger calls the class by its sigmoid (the softmax reading calls none of tag 1's images tag 1), `probe
    confirm` reloads it multi-label, and `test_cue` refuses a classifier read the other way."""
    from probe.analysis.errors import AnalysisError
    from probe.analysis.retest import RunContext
    from probe.classifiers import load_classifier
    from probe.confirm.confirm import ClassifierSource, _load_classifier
    from probe.generators import load_generator
    from probe.run import RunDir

    program = torch.export.export(Tagger().eval(), (torch.rand(2, 3, SIZE, SIZE),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    model = tmp_path / "tagger.pt2"
    torch.export.save(program, str(model))
    (tmp_path / "tagger.labels.txt").write_text("dog\nsofa\ncat\n")
    run = tmp_path / "run"
    code, out, err = run_main(monkeypatch, capsys, "audit", "--model", str(model), "--generator", str(tiny_sd_path),
                              "--classes", "sofa", "--out", str(run), "--device", "cpu", "--multi-label",
                              "--no-analyze", "--max-steps", "2", "--eval-images", "2", "--quiet")
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["audit"]["multi_label"] is True and config["classifier"]["multi_label"] is True
    metrics = json.loads(next((run / "classes").glob("*/metrics.json")).read_text())
    assert metrics["baseline"]["accuracy"] == 1.0  # every image is a sofa too, by its own sigmoid
    code, out, err = run_main(monkeypatch, capsys, "generate", str(run), "--per-class", "2", "--min-prob", "0.9",
                              "--out", str(tmp_path / "data"), "--quiet")
    assert code == 0, err
    manifest = (tmp_path / "data" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 3 and all(row.endswith(",True") for row in manifest[1:]), manifest
    labels = RunDir(run).read_labels()
    assert _load_classifier(RunDir(run), ClassifierSource(model=None), labels).multi_label
    with pytest.raises(AnalysisError, match="audited with a multi-label classifier"):
        RunContext.open(run, load_classifier(str(model)), load_generator(str(tiny_sd_path), device="cpu"))


def test_a_hugging_face_model_whose_config_says_multi_label_is_read_so_without_the_flag(tmp_path):
    """transformers records how a classifier was trained (`problem_type`); a multi-label one is read by its sigmoids
    as `--multi-label` would, and a single-label one is not."""
    from transformers import ViTConfig, ViTForImageClassification

    from probe.classifiers import load_classifier

    for problem, expected in (("multi_label_classification", True), ("single_label_classification", False)):
        config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                           image_size=SIZE, patch_size=8, num_labels=3, problem_type=problem,
                           id2label={0: "dog", 1: "sofa", 2: "cat"}, label2id={"dog": 0, "sofa": 1, "cat": 2})
        torch.manual_seed(0)
        ViTForImageClassification(config).eval().save_pretrained(str(tmp_path / problem))
        clf = load_classifier(tmp_path / problem)
        assert clf.multi_label is expected and clf.describe()["multi_label"] is expected
