"""Every run file is checked where it is read (probe.run + probe.run.records): damage is one line naming the
file and the field (`probe check`, `probe compare`: exit 2), or a warning on the page (`probe report`), never a
traceback or a wrong answer. The cases of issue 23 item 7, and findings.parquet read as faithfully as
findings.json."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import run_main
from run_files import make_valid_run
from probe.errors import RunError
from probe.run import RunDir
from probe.run.records import check_finding


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory) -> Path:
    return make_valid_run(tmp_path_factory.mktemp("valid") / "run")


@pytest.fixture()
def run(valid_run, tmp_path) -> Path:
    return Path(shutil.copytree(valid_run, tmp_path / "run"))


def cli(capsys, monkeypatch, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    return run_main(monkeypatch, capsys, *args)


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # json.dumps writes NaN and Infinity as the tokens a hostile file would hold


def _first_passing(rows: list) -> dict:
    return next(r for r in rows if r["passes"])


def _one_error(text: str) -> str:
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in text, text
    return " ".join(errors[0].split())


# issue 23 item 7 (and item 6's NaN / Infinity / string class index): (name, file, change, field named)
FINDING_DAMAGE = [
    ("effect is text", lambda r: _first_passing(r).update(effect="abc"), "effect"),
    ("effect is a list", lambda r: _first_passing(r).update(effect=[0.5]), "effect"),
    ("effect is NaN", lambda r: _first_passing(r).update(effect=float("nan")), "effect"),
    ("effect is Infinity", lambda r: _first_passing(r).update(effect=float("inf")), "effect"),
    ("no strength", lambda r: _first_passing(r).pop("strength"), "strength"),
    ("passes is the text false", lambda r: _first_passing(r).update(passes="false"), "passes"),
    ("class index is text", lambda r: _first_passing(r).update(class_index="0"), "class_index"),
    ("passes disagrees with status", lambda r: r[-1].update(passes=True), "passes"),
    ("an unknown field", lambda r: r[0].update(verdict="fine"), "verdict"),
    ("a record that is no object", lambda r: r.append([1, 2]), "record"),
]
ANALYSIS_DAMAGE = [
    ("pair values as text", lambda a: a["pairs"][0]["screen"].update(values=["0.1", "0.2", "0", "0.3"]),
     "pairs[0].screen.values[0]"),
    ("a pair entry without cue", lambda a: a["pairs"][0].pop("cue"), "pairs[0].cue"),
    ("integer pair keys", lambda a: a["pairs"][0]["screen"].update(keys=[1, 2, 3, 4]), "pairs[0].screen.keys[0]"),
    ("fewer values than keys", lambda a: a["pairs"][0]["screen"].update(values=[0.1]), "pairs[0].screen.values"),
    ("a threshold as text", lambda a: a["config"]["thresholds"].update(min_effect="big"), "config.thresholds.min_effect"),
    ("sampling steps past any sampler", lambda a: a["classes"].setdefault("0", {}).update(sampling_steps=10 ** 6),
     "classes.0.sampling_steps"),
    # fields the report reads (they aborted the whole report with a TypeError before they were checked here)
    ("nearest words as a number", lambda a: a["classes"].setdefault("0", {}).update(nearest_words=5),
     "classes.0.nearest_words"),
    ("dropped counters as a number", lambda a: a.update(dropped_counters={"star": 5}), "dropped_counters.star"),
    ("discovered cues as a number", lambda a: a.setdefault("cues", {}).update(discovered={"0": 5}),
     "cues.discovered.0"),
]


@pytest.mark.parametrize("name,change,field", FINDING_DAMAGE, ids=[c[0] for c in FINDING_DAMAGE])
def test_a_damaged_finding_is_one_line_naming_the_file_and_field(name, change, field, run, capsys, monkeypatch):
    _edit(run / "findings.json", change)
    code, out, err = cli(capsys, monkeypatch, "check", str(run), "--max-effect", "0.3")
    assert code == 2, (out, err)
    line = _one_error(err + out)
    assert "findings.json" in line and field in line, line
    code, out, err = cli(capsys, monkeypatch, "compare", str(run), str(run), "--out", str(run.parent / "cmp"))
    assert code == 2, (out, err)
    line = _one_error(err + out)
    assert "findings.json" in line and field in line, line
    # the report is lenient: it renders, and the page names the file and the field
    code, out, err = cli(capsys, monkeypatch, "report", str(run))
    assert code == 0 and "Traceback" not in out + err, (out, err)
    page = (run / "report" / "index.html").read_text()
    # in the warning itself (the page holds words such as "passes" and "effect" anyway)
    warned = [w for w in re.findall(r"<li>(.*?)</li>", page, re.S) if "left out of this report" in w]
    assert any("findings" in w and field in w for w in warned), warned


@pytest.mark.parametrize("name,change,field", ANALYSIS_DAMAGE, ids=[c[0] for c in ANALYSIS_DAMAGE])
def test_damaged_pair_data_is_one_line_naming_the_field(name, change, field, run, capsys, monkeypatch):
    _edit(run / "analysis.json", change)
    for args in (["check", str(run), "--max-effect", "0.3"],
                 ["compare", str(run), str(run), "--out", str(run.parent / "cmp")]):
        code, out, err = cli(capsys, monkeypatch, *args)
        assert code == 2, (args, out, err)
        line = _one_error(err + out)
        assert "analysis.json" in line and field in line, line
    code, out, err = cli(capsys, monkeypatch, "report", str(run))
    assert code == 0 and "Traceback" not in out + err, (out, err)
    assert field in (run / "report" / "index.html").read_text()


def test_findings_parquet_alone_reads_as_findings_json(run, capsys, monkeypatch):
    """findings.json gone, findings.parquet kept: the same plain records (lists, None, parsed details, Python
    numbers), and check and compare give the answers they give from findings.json (issue 23: a numpy array of
    evidence made them end in "truth value of an array is ambiguous")."""
    reader = RunDir(run)
    from_json = reader.read_findings()
    args = [("check", str(run), "--max-effect", "0.3"), ("compare", str(run), str(run), "--out", str(run.parent / "c"))]
    before = [cli(capsys, monkeypatch, *a)[:2] for a in args]
    (run / "findings.json").unlink()
    from_table = reader.read_findings()
    assert from_table == from_json
    for row in from_table:
        assert type(row["evidence"]) is list and all(type(e) is str for e in row["evidence"])
        assert type(row["class_index"]) is int and type(row["passes"]) is bool and type(row["details"]) is dict
        assert all(row[k] is None or type(row[k]) is float for k in ("effect", "ci_low", "ci_high", "p", "q"))
    assert any(row["ci_high"] is None for row in from_table) and any(row["q"] is None for row in from_table)
    after = [cli(capsys, monkeypatch, *a)[:2] for a in args]
    assert [c for c, _ in after] == [c for c, _ in before] == [3, 0]
    assert after[0][1] == before[0][1]  # the same offending line


def test_a_damaged_findings_parquet_names_the_table_and_the_field(run, capsys, monkeypatch):
    import pandas as pd

    (run / "findings.json").unlink()
    table = pd.read_parquet(run / "findings.parquet")
    table.loc[0, "effect"] = float("inf")
    table.to_parquet(run / "findings.parquet", index=False)
    code, out, err = cli(capsys, monkeypatch, "check", str(run), "--max-effect", "0.3")
    line = _one_error(err + out)
    assert code == 2 and "findings.parquet" in line and "finding 0" in line and "effect" in line, line


def test_damaged_metrics_are_unfinished_for_resume_and_one_line_for_the_gate(run, capsys, monkeypatch):
    metrics = next((run / "classes").glob("0-*")) / "metrics.json"
    _edit(metrics, lambda m: m.update(class_index="0"))
    assert RunDir(run).read_metrics(metrics.parent) is None  # resume: redone
    with pytest.raises(RunError, match="class_index"):
        RunDir(run).read_metrics(metrics.parent, strict=True)
    for args in (["check", str(run), "--max-effect", "0.3"], ["compare", str(run), str(run), "--out", str(run / "c")]):
        code, out, err = cli(capsys, monkeypatch, *args)
        line = _one_error(err + out)
        assert code == 2 and "metrics.json" in line and "class_index" in line, line


def test_labels_and_config_classes_of_the_wrong_type_are_one_line(run, capsys, monkeypatch):
    (run / "labels.json").write_text(json.dumps(["class 0", 1, "class 2"]))
    code, out, err = cli(capsys, monkeypatch, "check", str(run), "--max-effect", "0.3")
    assert code == 2 and "labels.json" in _one_error(err + out) and "[1]" in err
    (run / "labels.json").write_text(json.dumps(["class 0", "class 1", "class 2"]))
    _edit(run / "config.json", lambda c: c.update(classes=[0, "1", 2]))
    code, out, err = cli(capsys, monkeypatch, "check", str(run), "--max-effect", "0.3")
    assert code == 2 and "config.json" in _one_error(err + out) and "classes[1]" in err


def test_a_finding_of_a_class_the_run_never_audited_is_refused(run, capsys, monkeypatch):
    _edit(run / "findings.json", lambda rows: _first_passing(rows).update(class_index=7))
    code, out, err = cli(capsys, monkeypatch, "check", str(run), "--max-effect", "0.3")
    line = _one_error(err + out)
    assert code == 2 and "class_index is 7" in line and "findings.json" in line, line


def test_deeply_nested_json_is_one_line(run, capsys, monkeypatch):
    (run / "findings.json").write_text("[" * 100_000 + "]" * 100_000)
    code, out, err = cli(capsys, monkeypatch, "check", str(run), "--max-effect", "0.3")
    assert code == 2 and "findings.json" in _one_error(err + out)


def test_check_finding_fills_the_defaults_of_older_analyses_and_keeps_real_records():
    old = {"class_index": 1, "class_name": "c", "cue": "grass", "kind": "necessity", "effect": 0.4, "ci_low": 0.2,
           "ci_high": 0.6, "n_images": 16, "evidence": ["classes/1-c/images/a.png"], "passes": True,
           "strength": "strong", "sentence": "s"}
    got = check_finding(old, "findings.json", 0)
    assert got["status"] == "passes" and got["unit"] == "images" and got["details"] == {} and got["q"] is None
    assert check_finding({**old, "passes": False, "strength": "weak"}, "f", 0)["status"] == "weak"
    with pytest.raises(RunError, match=r"'findings.json': finding 3: field effect is 'x', not a number"):
        check_finding({**old, "effect": "x"}, "findings.json", 3)
    with pytest.raises(RunError, match="effect is null on a passing finding"):
        check_finding({**old, "effect": None}, "f", 0)
    with pytest.raises(RunError, match="ci_low"):
        check_finding({**old, "ci_low": 0.9}, "f", 0)


def test_later_commands_read_the_chunk_size_the_audit_chose():
    """config.json's gradient_chunks (the automatic --max-batch) is part of the effective token settings that the
    analysis, probe generate and test_cue read back; a chunk size the user gave, or none, stays as it was."""
    auto = {"audit": {"token": {"max_batch": None, "steps": 6}}, "gradient_chunks": {"max_batch": 2, "source": "auto"}}
    assert RunDir.token_settings(auto) == {"max_batch": 2, "steps": 6}
    given = {"audit": {"token": {"max_batch": 3}}, "gradient_chunks": {"max_batch": 3, "source": "given"}}
    assert RunDir.token_settings(given)["max_batch"] == 3
    off = {"audit": {"token": {"max_batch": None}}, "gradient_chunks": {"max_batch": None, "source": "off"}}
    assert RunDir.token_settings(off)["max_batch"] is None
    from probe.analysis.config import AnalysisConfig
    from probe.analysis.plan import generation_settings

    assert generation_settings(AnalysisConfig(), auto)["max_batch"] == 2
