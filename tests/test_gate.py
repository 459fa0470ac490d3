"""probe check: the gate over a run's findings (exit codes, one line per offender, JUnit XML), and audit --max-effect."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import probe_script, run_main, world_cue_file
from probe.analysis import Finding, write_findings
from probe.gate import GATE_FAILED, check_run
from probe.run import RunDir

HOSTILE = 'evil "<b>&amp;</b>\x00\x1b[31m'


def _finding(index, name, cue, kind, effect, passes=True):
    return Finding(class_index=index, class_name=name, cue=cue, kind=kind, effect=effect, ci_low=effect - 0.1,
                   ci_high=effect + 0.1, n_images=16, evidence=(), passes=passes, strength="strong" if passes else "weak",
                   sentence=f"'{name}' and {cue} (sentence)", p=0.001, q=0.004, status="passes" if passes else "weak",
                   unit="images" if kind == "off-object" else "pairs")


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    """A finished run in the real format (written by RunDir and write_findings): star offends, circle does not,
    square has no findings at all, the hostile class offends through a negative effect."""
    labels = ["star", "circle", "square", HOSTILE]
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.write_config({"audit": {"model": "m.pt2", "out": "run"}, "classes": [0, 1, 2, 3]})
    run.write_labels(labels)
    for index, name in enumerate(labels):
        folder = run.class_dir(index, name)
        folder.mkdir(parents=True)
        run.write_metrics(folder, {"status": "done", "class_index": index, "class_name": name, "images": []})
    write_findings(run.root, [
        _finding(0, "star", "grass", "necessity", 0.45),
        _finding(0, "star", "snow", "sufficiency", 0.20),
        _finding(0, "star", "off-object", "off-object", 0.80),
        _finding(1, "circle", "water", "necessity", 0.25),
        _finding(1, "circle", "sand", "necessity", 0.90, passes=False),  # weak: never fails a build
        _finding(3, HOSTILE, "dot", "token-shift", -0.40),
    ])
    return run.root


def _cli(monkeypatch, capsys, *args) -> tuple[int, list[str], list[str]]:
    return run_main(monkeypatch, capsys, *args, lines=True)


def test_a_passing_finding_above_the_limit_fails_with_one_line_per_offender(run_dir, monkeypatch, capsys):
    code, out, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3")
    assert code == GATE_FAILED == 3
    assert len(out) == 2, out  # grass (+0.45) and the hostile class's -0.40: |effect| counts, weak and small do not
    assert "grass" in out[0] and "+0.45" in out[0] and "class 0 'star'" in out[0]
    assert "dot" in out[1] and "-0.40" in out[1] and "\x1b" not in out[1] and "\x00" not in out[1]
    assert not any("water" in line or "sand" in line or "off-object" in line for line in out)
    assert len(err) == 1 and err[0].startswith("gate failed: 2 passing finding(s)") and "2 of 4 class(es)" in err[0]


def test_an_offender_is_never_printed_as_the_limit_it_exceeds(run_dir, monkeypatch, capsys):
    """An offender's effect is printed with the digits that put it above the limit: one of 0.3004 read "+0.30"
    beside "above |effect| 0.30" (review, 8 December 2026); one clearly above keeps two decimals."""
    code, out, _ = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.4499")
    assert code == 3 and len(out) == 1 and "effect +0.45 " in out[0], out
    code, out, _ = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.45")
    assert code == 0
    write_findings(run_dir, [_finding(0, "star", "grass", "necessity", 0.3004)])
    code, out, _ = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3")
    assert code == 3 and "effect +0.3004 " in out[0], out
    write_findings(run_dir, [_finding(0, "star", "grass", "necessity", 0.3331)])  # a limit of 3 decimals keeps them
    code, out, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.333")
    assert code == 3 and "effect +0.3331 " in out[0] and "|effect| 0.333 " in err[0], (out, err)


def test_under_the_limit_passes_with_exit_0(run_dir, monkeypatch, capsys):
    code, out, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.45")
    assert code == 0, err
    assert out == ["gate passed: no passing finding above |effect| 0.45 (sufficiency, necessity, token-shift) "
                   "(4 class(es), 4 passing finding(s) checked; 1 class(es) undecided or skipped: 2 square)"]


def test_kinds_narrow_the_gate_and_off_object_fails_on_any_passing_share(run_dir, monkeypatch, capsys):
    code, out, _ = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3", "--kinds", "necessity")
    assert code == 3 and len(out) == 1 and "grass" in out[0]
    code, out, _ = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3", "--kinds", "sufficiency")
    assert code == 0 and out[0].startswith("gate passed")
    code, out, _ = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.95", "--kinds", "off-object")
    assert code == 3 and len(out) == 1 and "off-object" in out[0]  # a share of attribution: max-effect does not apply
    code, _, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3", "--kinds", "necesity")
    assert code == 2 and len(err) == 1 and "'necesity' is not a finding kind" in err[0]
    code, out, _ = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3", "--classes", "circle,square")
    assert code == 0 and "(2 class(es)" in out[0]


def test_junit_has_a_case_per_class_a_failure_per_offending_class_and_escapes_names(run_dir, tmp_path, monkeypatch,
                                                                                      capsys):
    target = tmp_path / "ci" / "results.xml"
    target.parent.mkdir()
    code, _, _ = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3", "--junit", str(target))
    assert code == 3
    root = ET.fromstring(target.read_bytes())  # parses: no raw NUL or escape codes from the hostile name
    suites = root.findall("testsuite")
    assert len(suites) == 1 and suites[0].get("tests") == "4" and suites[0].get("failures") == "2"
    cases = {c.get("name"): c for c in suites[0].findall("testcase")}
    hostile = HOSTILE.replace("\x00", "\\x00").replace("\x1b", "\\x1b")
    assert set(cases) == {"0 star", "1 circle", "2 square", f"3 {hostile}"}
    assert cases["1 circle"].find("failure") is None and cases["1 circle"].find("skipped") is None
    assert cases["2 square"].find("failure") is None  # no findings, nothing confirmed: undecided, shown as skipped
    assert "no confirmed test" in cases["2 square"].find("skipped").get("message")
    failure = cases["0 star"].find("failure")
    assert failure is not None and "grass" in failure.text and "+0.45" in failure.text and "q 0.004" in failure.text
    assert "95% CI 0.35 – 0.55" in failure.text  # probe.run.format, as in the report
    assert "dot" in cases[f"3 {hostile}"].find("failure").text
    assert b"<b>" not in target.read_bytes()  # the name is escaped, not markup
    assert not list(target.parent.glob("*.tmp"))


def test_junit_in_a_missing_folder_is_one_line_before_anything_is_read(run_dir, tmp_path, monkeypatch, capsys):
    code, out, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3", "--junit",
                          str(tmp_path / "nowhere" / "r.xml"))
    assert code == 2 and not out and len(err) == 1 and "does not exist" in err[0]


def test_a_run_without_findings_is_an_error_not_a_pass(run_dir, monkeypatch, capsys):
    (run_dir / "findings.json").unlink()
    (run_dir / "findings.parquet").unlink()
    code, out, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3")
    assert code == 2 and not out
    assert len(err) == 1 and err[0].startswith("error:") and "no findings.json" in err[0]


def test_check_result_displays_itself_escaped(run_dir):
    result = check_run(run_dir, max_effect=0.3)
    assert not result.passed and result.exit_code == 3 and len(result.offenders) == 2
    assert [c.status for c in result.cases] == ["failed", "passed", "undecided", "failed"]  # square: nothing confirmed
    assert "gate failed" in repr(result) and "grass" in repr(result)
    html = result._repr_html_()
    assert "&lt;b&gt;" in html and "<b>" not in html


def test_audit_without_the_analysis_refuses_a_gate_before_loading_models(tmp_path, monkeypatch, capsys):
    code, _, err = _cli(monkeypatch, capsys, "audit", "--model", "missing.pt2", "--out", str(tmp_path / "r"),
                        "--max-effect", "0.3", "--no-analyze", "--quiet")
    assert code == 2 and len(err) == 1 and "--no-analyze" in err[0]
    code, _, err = _cli(monkeypatch, capsys, "audit", "--model", "missing.pt2", "--out", str(tmp_path / "r"),
                        "--junit", str(tmp_path / "r.xml"), "--quiet")
    assert code == 2 and len(err) == 1 and "add --max-effect" in err[0]
    assert not (tmp_path / "r").exists()


def test_audit_with_max_effect_exits_with_the_gate_code_and_keeps_the_run(readme_demo, tmp_path):
    """`probe audit --max-effect --val-data` on the README demo's run (copied): the tokens resume, the analysis (kept
    cheap with one cue, the world's own planted grass background, no discovery, no attributions) runs again, the
    finding is checked on rendered images of the classifier's training distribution and the report shows it, then
    the gate fails on the passing necessity finding (exit 3) and writes its JUnit file."""
    from probe.world.demo import demo_config
    from probe.world.valset import render_validation_set

    run = tmp_path / "demo"
    shutil.copytree(readme_demo / "runs" / "demo", run)
    shutil.rmtree(run / "report", ignore_errors=True)
    for folder in (run / "classes").iterdir():  # the star only: the analysis measures every finished class of a run
        if folder.name != "3-star":
            shutil.rmtree(folder)
    config = demo_config(run, classes="star")
    cues = world_cue_file(tmp_path / "cues.json", "grass")
    token = config.token
    args = ["audit", "--model", config.model, "--generator", config.generator, "--classes", "star", "--out", str(run),
            "--device", "cpu", "--max-steps", str(token.max_steps), "--eval-images", str(token.eval_images),
            "--lr", str(token.lr), "--steps", str(token.steps), "--stop-metric", token.stop_metric,
            "--threshold", str(token.accuracy_threshold), "--patience", str(token.patience),
            "--min-steps", str(token.min_updates), "--max-pairs", str(config.analysis.max_pairs), "--cues", str(cues),
            "--quiet", "--max-effect", "0.1", "--kinds", "necessity", "--junit", str(tmp_path / "gate.xml"),
            "--discover", "0", "--attributions", "none",  # the gate's plumbing: 31 s instead of 86 s on one core
            "--val-data", str(tmp_path / "val")]
    render_validation_set("biased", tmp_path / "val", n=300, seed=7)  # the plumbing of --val-data, not its verdicts
    done = subprocess.run([probe_script(), *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 3, done.stderr[-3000:]
    assert (run / "report" / "index.html").is_file() and (run / "findings.json").is_file()  # kept whatever the verdict
    confirmed = RunDir(run).read_confirmation()  # --val-data: confirmed after the analysis, the report drawn again
    grass = [f for f in confirmed.findings if (f.class_name, f.kind, f.value) == ("star", "necessity", "grass")]
    assert len(grass) == 1 and grass[0].verdict and confirmed.data["used"] == 300, confirmed.findings
    assert "on your data: 300 images (0 skipped), cues read by world oracles" in done.stdout, done.stdout
    assert "confirm: reading" not in done.stderr  # --quiet
    assert "on your data" in (run / "report" / "index.html").read_text()
    offenders = [line for line in done.stdout.splitlines() if line.startswith("class 3 'star': necessity")]
    assert len(offenders) == 1 and "'grass'" in offenders[0], done.stdout
    assert done.stderr.strip().splitlines()[-1].startswith("gate failed")
    suite = ET.parse(tmp_path / "gate.xml").getroot().find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == ["0 circle", "1 square", "2 triangle", "3 star", "4 cross", "5 heart"]
    assert cases.pop("3 star").find("failure") is not None
    # the run selected every class; those whose folders this test removed are not finished: skipped, never passed
    assert all(c.find("skipped") is not None and c.find("failure") is None for c in cases.values())


# ------------------------------------------------------------------------- fail closed (issue 23 item 6, issue 17 item 4)
def _damage_first_passing(run_dir: Path, **change) -> None:
    rows = json.loads((run_dir / "findings.json").read_text())
    next(r for r in rows if r["passes"]).update(change)
    (run_dir / "findings.json").write_text(json.dumps(rows))  # NaN and Infinity as the JSON tokens


@pytest.mark.parametrize("change", [{"effect": float("nan")}, {"effect": float("inf")}, {"effect": None},
                                    {"class_index": "0"}, {"passes": "false"}, {"kind": "vibes"}],
                         ids=["nan", "infinity", "null", "class-index-text", "passes-text", "unknown-kind"])
def test_a_passing_finding_the_gate_cannot_read_is_an_error_never_a_pass(change, run_dir, monkeypatch, capsys):
    _damage_first_passing(run_dir, **change)
    code, out, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.99")
    assert code == 2 and not out, (out, err)
    assert len(err) == 1 and err[0].startswith("error:") and "findings.json" in err[0] and list(change)[0] in err[0]


def test_every_class_failed_is_undecided_exit_4(run_dir, monkeypatch, capsys):
    run = RunDir(run_dir)
    for folder, metrics in run.finished_classes():
        run.write_metrics(folder, {**metrics, "status": "failed", "error": "TokenError: loss became NaN"})
    # findings of classes that failed are not this run's: their offenders were skipped with the class and the gate
    # passed (found by review, 7 December 2026); now an error, exit 2
    code, out, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3")
    assert code == 2 and len(err) == 1 and "whose metrics.json says it failed" in err[0], (out, err)
    write_findings(run_dir, [])  # what such a run holds: no finding
    code, out, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3")
    assert code == 4, (out, err)
    assert not out and len(err) == 1 and err[0].startswith("gate undecided") and "no class finished" in err[0]


def test_junit_inside_a_run_is_refused(run_dir, monkeypatch, capsys):
    """`probe check RUN --junit RUN/findings.json` wrote the JUnit XML over the findings (found by review)."""
    before = (run_dir / "findings.json").read_bytes()
    for target in (run_dir / "findings.json", run_dir / "classes" / "gate.xml"):
        code, out, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3", "--junit", str(target))
        assert code == 2 and len(err) == 1 and "lies inside the probe run" in err[0], (out, err)
    assert (run_dir / "findings.json").read_bytes() == before and not (run_dir / "classes" / "gate.xml").exists()


def test_findings_that_disagree_with_the_analysis_counts_are_an_error_not_a_pass(run_dir, monkeypatch, capsys):
    """An emptied or truncated findings.json passed the gate while analysis.json counted its findings (found by
    review, 7 December 2026)."""
    import json

    (run_dir / "analysis.json").write_text(json.dumps({"n_findings": 6, "n_passing": 5, "classes": {}}))
    code, _, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.99")
    assert code == 0, err  # the counts agree
    write_findings(run_dir, [_finding(1, "circle", "water", "necessity", 0.25)])  # the offenders cut out
    code, out, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3")
    assert code == 2 and not out and "analysis.json counts 6 (n_findings)" in err[0], (out, err)


def test_a_run_with_only_screened_or_inconclusive_findings_is_undecided(run_dir, tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    screened = [replace(_finding(0, "star", "grass", "necessity", 0.6, passes=False), status="screened"),
                replace(_finding(1, "circle", "water", "sufficiency", 0.5, passes=False), status="inconclusive")]
    write_findings(run_dir, screened)
    junit = tmp_path / "gate.xml"
    code, out, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3", "--junit", str(junit))
    assert code == 4 and "no confirmed test" in err[-1], (out, err)
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.get("skipped") == "4"
    # one confirmed (weak) test anywhere decides: the gate passes
    write_findings(run_dir, [*screened, _finding(2, "square", "sand", "necessity", 0.1, passes=False)])
    code, out, _ = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3")
    assert code == 0 and out[0].startswith("gate passed") and "3 class(es) undecided or skipped" in out[0]


def test_by_upper_compares_the_intervals_far_end(run_dir, monkeypatch, capsys):
    # circle's water: effect +0.25, 95% CI 0.15..0.35; star's snow: +0.20 (0.10..0.30)
    code, out, _ = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3", "--kinds", "sufficiency")
    assert code == 0
    code, out, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3", "--classes", "circle",
                          "--by", "upper")
    assert code == 3 and len(out) == 1 and "water" in out[0] and "interval's far end" in err[0], (out, err)
    code, out, _ = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.36", "--classes", "circle",
                        "--by", "upper")
    assert code == 0, out
    code, _, err = _cli(monkeypatch, capsys, "check", str(run_dir), "--max-effect", "0.3", "--by", "lower")
    assert code == 2 and len(err) == 1 and "--by 'lower' is unknown" in err[0]


def test_the_audits_gate_config_carries_by_and_the_undecided_code(run_dir):
    from probe.gate import GATE_UNDECIDED, GateConfig, GateError, run_gate

    gate = GateConfig.from_dict({"max_effect": 0.3, "kinds": "necessity", "by": "upper"})
    assert gate.by == "upper"
    result = run_gate(run_dir, GateConfig(max_effect=0.36, kinds="necessity", by="upper"))
    assert result.exit_code == 3 and [f.cue for f in result.offenders] == ["grass"]  # circle's water ends at 0.35
    with pytest.raises(GateError, match="--by"):
        GateConfig(max_effect=0.3, by="mean")
    run = RunDir(run_dir)
    for folder, metrics in run.finished_classes():
        run.write_metrics(folder, {**metrics, "status": "failed"})
    write_findings(run_dir, [])  # failed classes have no findings
    result = run_gate(run_dir, GateConfig(max_effect=0.3))
    assert not result.passed and result.exit_code == GATE_UNDECIDED == 4
