"""The optimiser: only the token changes, it raises the target's accuracy, it stops early, NaN is caught."""

from __future__ import annotations

import pytest
import torch

from color_classifier import calibrated_redness_classifier
from probe.errors import TokenError
from probe.tokens import TokenConfig, class_prompts, evaluate_class_token, optimize_class_token

FAST = dict(lr=0.1, max_steps=12, patience=12, guidance_scale=7.5, batch_size=5, eval_images=12)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_only_the_token_row_changes(tiny_generator):
    classifier = calibrated_redness_classifier(tiny_generator)
    embeddings = tiny_generator.text_encoder.get_input_embeddings().weight.detach().clone()
    before = {name: _snapshot(m) for name, m in (("text_encoder", tiny_generator.text_encoder),
                                                  ("unet", tiny_generator.unet), ("vae", tiny_generator.vae),
                                                  ("classifier", classifier))}
    token = optimize_class_token(tiny_generator, classifier, 1, TokenConfig(**{**FAST, "max_steps": 4, "patience": 4,
                                                                              "accuracy_threshold": 1.0}))
    after = tiny_generator.text_encoder.get_input_embeddings().weight
    token_id = tiny_generator.token_id(token.token)
    assert torch.equal(after[: embeddings.shape[0]], embeddings)  # every pre-existing row bit-identical
    assert not torch.equal(after[token_id], embeddings[tiny_generator.tokenizer("a", add_special_tokens=False).input_ids[0]])
    assert torch.equal(after[token_id], token.vector)
    for name, module in (("unet", tiny_generator.unet), ("vae", tiny_generator.vae), ("classifier", classifier)):
        for key, value in module.state_dict().items():
            assert torch.equal(value, before[name][key]), f"{name}.{key} changed"
    for key, value in tiny_generator.text_encoder.state_dict().items():
        if "token_embedding" not in key:
            assert torch.equal(value, before["text_encoder"][key]), key


def test_token_raises_the_target_probability_over_baseline(tiny_generator):
    classifier = calibrated_redness_classifier(tiny_generator)  # ~half the baseline images are 'star'
    config = TokenConfig.paper(**{**FAST, "max_steps": 8, "patience": 8, "accuracy_threshold": 1.0})
    token = optimize_class_token(tiny_generator, classifier, 1, config)
    first, best = token.history[0], token.history[token.best_step]
    assert token.stopped == "max_steps" and len(token.history) == 8
    assert best["mean_target_prob"] > first["mean_target_prob"] + 0.05
    assert best["accuracy"] >= first["accuracy"]
    evaluation = evaluate_class_token(tiny_generator, classifier, token, config)
    assert evaluation.token["mean_target_prob"] > evaluation.baseline["mean_target_prob"] + 0.05
    assert len(evaluation.images["token"]) == config.eval_images == len(evaluation.images["baseline"])


def test_threshold_stops_as_soon_as_the_batch_accuracy_exceeds_it(tiny_generator):
    class AlwaysStar(torch.nn.Module):
        labels = ["other", "star"]

        def forward(self, images):
            return torch.tensor([[0.0, 3.0]]).expand(images.shape[0], 2) + 0.0 * images.sum()

    token = optimize_class_token(tiny_generator, AlwaysStar(), 1, TokenConfig.paper(max_steps=10))
    assert token.stopped == "threshold" and len(token.history) == 1 and token.best_accuracy == 1.0
    # A threshold of 1.0 can never be exceeded: the loop runs on.
    token = optimize_class_token(tiny_generator, AlwaysStar(), 1, TokenConfig(max_steps=3, accuracy_threshold=1.0),
                                 token="<other>")
    assert token.stopped == "max_steps" and len(token.history) == 3


def test_patience_stops_a_token_that_cannot_improve(tiny_generator):
    class Constant(torch.nn.Module):
        labels = ["a", "b"]

        def forward(self, images):
            return torch.tensor([[5.0, 0.0]]).expand(images.shape[0], 2) + 0.0 * images.sum()

    token = optimize_class_token(tiny_generator, Constant(), 1, TokenConfig.paper(max_steps=20, patience=3))
    assert token.stopped == "patience" and len(token.history) == 4 and token.best_step == 0


def test_nan_loss_is_a_token_error_and_the_row_keeps_the_best_vector(tiny_generator):
    class Nan(torch.nn.Module):
        labels = ["a", "b"]

        def forward(self, images):
            return images.mean((2, 3))[:, :2] * float("nan")

    with pytest.raises(TokenError, match="loss became nan at step 0.*lower --lr"):
        optimize_class_token(tiny_generator, Nan(), 0, TokenConfig(max_steps=3))
    # the loss is NaN from the first step, so the best vector is the initial word's ("a"), kept exactly
    row = tiny_generator.token_vector("<probe-0>")
    init = tiny_generator.text_encoder.get_input_embeddings().weight[
        tiny_generator.tokenizer("a", add_special_tokens=False).input_ids].mean(0)
    assert torch.isfinite(row).all() and torch.equal(row.detach().cpu(), init.detach().cpu())


def test_prompts_and_token_only_prompts():
    assert class_prompts(("a photo of a {}",), "star", "<t>") == ["a photo of a <t> star"]
    assert class_prompts(("a photo of a {}",), None, "<t>") == ["a photo of a <t>"]
    with pytest.raises(TokenError):
        class_prompts(("a photo of a {}",), None, None)


@pytest.mark.parametrize("bad", [dict(lr=0), dict(batch_size=0), dict(templates=("no slot",)),
                                 dict(accuracy_threshold=1.5), dict(grad_steps=0), dict(max_batch=0)])
def test_config_validation(bad):
    with pytest.raises(TokenError):
        TokenConfig(**bad)


def test_a_second_audit_with_the_same_generator_starts_from_the_init_word(tiny_generator):
    classifier = calibrated_redness_classifier(tiny_generator)
    init_row = tiny_generator.text_encoder.get_input_embeddings().weight[
        tiny_generator.tokenizer("a", add_special_tokens=False).input_ids].mean(0).clone()
    first = optimize_class_token(tiny_generator, classifier, 1, TokenConfig(**{**FAST, "max_steps": 2,
                                                                             "accuracy_threshold": 1.0}))
    assert not torch.equal(first.vector, init_row)
    rows = tiny_generator.text_encoder.get_input_embeddings().weight.shape[0]
    # One step: the best (and only scored) vector is the one the step started from.
    second = optimize_class_token(tiny_generator, classifier, 1, TokenConfig(max_steps=1))
    assert torch.equal(second.vector, init_row)
    assert tiny_generator.text_encoder.get_input_embeddings().weight.shape[0] == rows  # no duplicate row


def test_reused_token_restarts_from_its_init_row(tiny_generator):
    tiny_generator.add_token("<t>", "star")
    tiny_generator.commit_token("<t>", torch.full((32,), 3.0))
    tiny_generator.add_token("<t>", "star", reinitialise=True)
    star = tiny_generator.tokenizer("star", add_special_tokens=False).input_ids
    weight = tiny_generator.text_encoder.get_input_embeddings().weight
    assert torch.equal(weight[tiny_generator.token_id("<t>")], weight[star].mean(0))


def test_a_baseline_the_classifier_already_accepts_still_moves_the_token_with_min_steps(tiny_generator):
    """The paper's stop rule ends at step 0 when the baseline already passes; min_steps and the margin objective
    keep pushing, and the kept token is an updated one."""
    classifier = calibrated_redness_classifier(tiny_generator, quantile=0.0)  # nearly every baseline image is 'star'
    paper = optimize_class_token(tiny_generator, classifier, 1, TokenConfig.paper(**{**FAST, "accuracy_threshold": 0.5}))
    assert paper.stopped == "threshold" and paper.best_step == 0 and not paper.movement["moved"]
    # the defaults (stop on mean probability > 0.95, at least 3 updates) move it without any setting
    default = optimize_class_token(tiny_generator, classifier, 1, TokenConfig(**FAST))
    assert TokenConfig().min_updates == 3 and TokenConfig(max_steps=2).min_updates == 1
    assert default.best_step >= 1 and len(default.history) >= 3 and default.movement["moved"]
    pushed = optimize_class_token(tiny_generator, classifier, 1, TokenConfig(
        **{**FAST, "accuracy_threshold": 0.5, "min_steps": 3, "objective": "margin"}))
    assert pushed.best_step >= 1 and len(pushed.history) >= 3
    assert pushed.movement["moved"] and pushed.movement["relative"] > paper.movement["relative"]


def test_a_default_min_steps_follows_max_steps_through_replace_and_an_explicit_one_is_checked():
    """A notebook lowers the steps with ``dataclasses.replace(config.token, max_steps=2)``: the default minimum of
    updates follows (it raised "--min-steps 3 must be 0, or below --max-steps 2" once resolved at construction),
    config.json records the number used, and an explicit minimum that does not fit is still an error."""
    from dataclasses import replace

    from probe.errors import TokenError
    from probe.world.demo import demo_config

    for token in (TokenConfig(), demo_config().token):
        lowered = replace(token, max_steps=2)
        assert lowered.min_steps is None and lowered.min_updates == 1 and lowered.to_dict()["min_steps"] == 1
        assert replace(token, max_steps=1).min_updates == 0 and replace(lowered, max_steps=40).min_updates == 3
    recorded = TokenConfig.from_dict(TokenConfig(max_steps=2).to_dict())
    assert recorded.min_steps == 1 and recorded.to_dict() == TokenConfig(max_steps=2).to_dict()
    assert replace(TokenConfig(min_steps=0), max_steps=2).min_updates == 0  # the paper's rule stays the paper's
    with pytest.raises(TokenError, match="--min-steps 3 must be 0, or below --max-steps 2"):
        TokenConfig(min_steps=3, max_steps=2)


def test_margin_objective_is_capped_and_pushes_where_cross_entropy_is_flat():
    from probe.tokens import objective_loss

    labels = torch.tensor([1, 1])
    sure = torch.tensor([[0.0, 12.0], [0.0, 12.0]], requires_grad=True)
    config = TokenConfig(objective="margin", margin_cap=5.0)
    assert float(objective_loss(sure, labels, config).detach()) < 0.01  # beyond the cap: no push left
    accepted = torch.tensor([[0.0, 3.0], [0.0, 3.0]], requires_grad=True)  # p(target) 0.95
    ce = torch.autograd.grad(objective_loss(accepted, labels, TokenConfig()), accepted)[0].abs().sum()
    margin = torch.autograd.grad(objective_loss(accepted, labels, config), accepted)[0].abs().sum()
    assert margin > 5 * ce


def test_a_blow_up_restores_the_best_token_and_lowers_the_learning_rate(tiny_generator):
    """A loss far above the best one is not taken as a step: the best vector comes back and lr is scaled down."""
    class Flaky(torch.nn.Module):  # fine, then a sudden blow-up at the third call, then fine again
        labels = ["other", "star"]
        calls = 0

        def forward(self, images):
            Flaky.calls += 1
            scale = 40.0 if Flaky.calls == 3 else 1.0
            return torch.stack([images.mean((1, 2, 3)) * scale, -images.mean((1, 2, 3)) * scale], 1)

    token = optimize_class_token(tiny_generator, Flaky(), 1, TokenConfig(**{**FAST, "max_steps": 5,
                                                                             "accuracy_threshold": 1.0}))
    events = [r for r in token.history if r.get("event") == "backoff"]
    assert len(events) == 1 and events[0]["step"] == 2
    after = [r for r in token.history if r["step"] > 2 and not r.get("event")]
    assert after and after[0]["lr"] == pytest.approx(FAST["lr"] * 0.5)
    assert token.best_step != 2 and token.stopped == "max_steps"


def test_min_steps_n_keeps_a_token_with_n_updates(tiny_generator):
    """The stop rule may stop from step N on: the vector scored at step k has had k updates. It stopped at step N-1
    (min_steps 1 and 2 behaved alike; the default 3 kept a token with 2 updates)."""
    classifier = calibrated_redness_classifier(tiny_generator, quantile=0.0)  # every batch passes at once
    for n in (1, 2, 3):
        token = optimize_class_token(tiny_generator, classifier, 1, TokenConfig(
            **{**FAST, "max_steps": 6, "accuracy_threshold": 0.0, "stop_metric": "accuracy", "min_steps": n}))
        assert token.stopped == "threshold" and token.best_step == n and len(token.history) == n + 1, \
            (n, token.best_step, len(token.history))


def test_optimisation_seeds_that_overlap_the_evaluations_are_refused_in_one_line():
    """The token is scored on fresh seeds: `--seed 1000` (or --batch-size past 1000) trained on the very images the
    evaluation then scored, with no word said."""
    for changes in (dict(seed=1000), dict(batch_size=1001), dict(seed=998)):
        with pytest.raises(TokenError, match="overlap the evaluation's 1000..1005, which must be fresh") as info:
            TokenConfig(**changes)
        assert "\n" not in str(info.value)
    assert TokenConfig(seed=1006).train_seeds[0] == 1006 and TokenConfig(seed=995).eval_seeds[0] == 1000
