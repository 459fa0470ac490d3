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
