"""``probe world`` sub-app: flags are validated and the API is called."""

from __future__ import annotations

import json

import pytest

from typer.testing import CliRunner

from probe.world.cli import world_app

runner = CliRunner()


def test_world_help_lists_the_commands():
    out = runner.invoke(world_app, ["--help"]).output
    assert "train" in out and "classifier" in out and "fidelity" in out


def test_classifier_command_writes_program_and_sidecars(tmp_path):
    out = tmp_path / "clf.pt2"
    res = runner.invoke(world_app, ["classifier", "--out", str(out), "--bias", "star=grass,heart=dot",
                                    "--steps", "3", "--strength", "0.9",
                                    "--train-size", "64", "--eval-size", "60"])
    assert res.exit_code == 0, res.output
    assert "decorrelated" in res.output and out.exists()
    meta = json.loads((tmp_path / "clf.bias.json").read_text())
    assert meta["bias"] == {"star": {"background": "grass"}, "heart": {"tag": "dot"}} and meta["strength"] == 0.9
    assert "decorrelated" in meta["metrics"]


def test_classifier_command_rejects_bad_flags(tmp_path):
    res = runner.invoke(world_app, ["classifier", "--out", str(tmp_path / "c.pt"), "--steps", "1"])
    assert res.exit_code != 0 and ".pt2" in str(res.exception)
    res = runner.invoke(world_app, ["classifier", "--out", str(tmp_path / "c.pt2"), "--bias", "star=plaid"])
    assert res.exit_code != 0 and "plaid" in str(res.exception)


def test_command_help_paragraphs_are_rewrapped_not_broken_at_the_docstrings_line_ends():
    """`probe check --help` printed each docstring line where the source broke it and wrapped again at the terminal,
    leaving ragged half-lines ("... a confirmed test that" / "could have failed it); ..."); its paragraphs are now
    filled to the width."""
    from typer.testing import CliRunner

    from probe.cli import app

    out = CliRunner().invoke(app, ["check", "--help"], terminal_width=100).output
    flat = " ".join(out.split())
    assert "some class had a confirmed test that could have failed it" in flat
    paragraph = out[out.index("Each offending finding"):out.index("No models are loaded")]
    lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
    assert all(len(line) >= 60 for line in lines[:-1]), lines  # every line but the last is filled


def test_bad_world_inputs_get_one_line_errors_before_any_work(tmp_path):
    """Found by review (7 December 2026): a negative --seed ended in numpy's bare ValueError; --eval-size 0 trained and
    saved the classifier, then failed in torch.cat; `fidelity --seeds 0` likewise; `--bias star=grass,star=water`
    trained star=water alone; a bias that is no mapping raised AttributeError; a class filter that drew no scene
    failed in torch.cat."""
    from probe.errors import ProbeError
    from probe.world import WorldError, render
    from probe.world.classifiers import parse_bias
    from probe.world.truth import ScenePool
    from probe.world.valset import ValidationImages

    cases = [
        (["classifier", "--out", str(tmp_path / "c.pt2"), "--seed", "-1", "--steps", "1", "--train-size", "128"],
         "seed=-1 must be an int >= 0"),
        (["classifier", "--out", str(tmp_path / "c.pt2"), "--steps", "1", "--train-size", "128", "--eval-size", "0"],
         "--eval-size 0 must be at least 6"),
        (["valset", "--out", str(tmp_path / "v"), "--n", "6", "--seed", "-1"], "seed=-1 must be an int >= 0"),
        (["fidelity", "--seeds", "0"], "--seeds 0 must be at least 1"),
        (["fidelity", "--partial", "0"], "--partial 0 must be at least 1"),
        (["classifier", "--out", str(tmp_path / "c.pt2"), "--bias", "star=grass,star=water", "--steps", "1"],
         "two backgrounds (grass, water)"),
    ]
    for args, message in cases:
        res = runner.invoke(world_app, args)
        assert res.exit_code != 0 and isinstance(res.exception, ProbeError), (args, res.output, res.exception)
        assert message in str(res.exception), (args, str(res.exception))
    assert not list(tmp_path.iterdir())  # nothing trained, rendered or saved
    assert parse_bias("star=grass,star=grass") == {"star": {"background": "grass"}}  # the same cue twice is one cue
    with pytest.raises(WorldError, match="not a mapping of attribute to value"):
        parse_bias({"star": "grass"})
    with pytest.raises(WorldError, match="must be an int >= 0"):
        render(seed=-1)
    with pytest.raises(WorldError, match="must be an int >= 0"):
        ScenePool(2, seed=-1)
    with pytest.raises(ProbeError, match="no heart among the 6 scenes drawn with seed 3"):
        ValidationImages("biased", 6, 3, classes=["heart"])
