"""``probe world`` sub-app: flags are validated and the API is called."""

from __future__ import annotations

import json

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
