"""probe demo end to end as the README types it: the bundled world, the real CLI path, every planted class."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path


from conftest import probe_script
from probe.world import bundled_bias


def referenced_files(page: Path) -> list[Path]:
    """Every local file a report page points at (images, styles, scripts, links)."""
    text = page.read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"#:]+)"', text)
    return [page.parent / ref for ref in refs if ref and not ref.startswith(("http", "data"))]


def test_the_readme_demo_leaves_a_report_with_every_image(readme_demo):
    run = readme_demo / "runs" / "demo"
    index = run / "report" / "index.html"
    assert index.is_file()
    pages = [index, *sorted((run / "report" / "classes").glob("*.html"))]
    star_page = next(p for p in pages if p.name == "3-star.html")
    assert "attribution" in star_page.read_text(encoding="utf-8").lower()
    for page in pages:
        referenced = referenced_files(page)
        missing = [str(p) for p in referenced if not p.is_file()]
        assert referenced and not missing, (page, missing[:5])  # every page shows images, and every one is there
    stored = json.loads((run / "analysis.json").read_text())
    assert not any(str(readme_demo) in json.dumps(v) for v in stored.get("classes", {}).values())
    findings = json.loads((run / "findings.json").read_text())
    for finding in findings:
        for path in finding["evidence"]:
            assert not Path(path).is_absolute() and (run / path).is_file(), path


def _marks(text: str) -> dict[str, str]:
    """{planted class: its mark} from the demo's headline ("  planted star: background=grass [found, top]; ...")."""
    return dict(re.findall(r"planted (\w+): \w+=\w+ \[([^\]]+)\]", text))


def test_the_demo_headline_is_the_readme_s_for_every_planted_class(readme_demo):
    """The README's demo output is what `probe demo` prints: every planted class's line, the star's grass and the
    triangle's water found, the heart's dot marked as the README marks it (missed: README, "Are the findings true?"),
    every token moved, and the truth table's count. Whether the grass is the star's *top* finding is not asserted: it
    ties the true snow preference to the third decimal, and which one prints first changes with the CPU's floating
    point (an AMD EPYC puts snow first, 4 December 2026). A heart found on some CPU must be a true finding."""
    stderr = (readme_demo / "demo.stderr").read_text()
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    shown = _marks(readme.split("## Using it")[0])
    assert set(shown) == set(bundled_bias("biased")), shown  # the README prints every planted class
    printed = _marks(stderr)
    assert set(printed) == set(shown), stderr[-2000:]
    found = {"found, top", "found, not top"}
    for name in ("star", "triangle"):
        assert printed[name] in found and shown[name] in found, (name, stderr[-2000:])
    assert shown["heart"] == "MISSED"
    assert printed["heart"] == "MISSED" or re.search(r"\[true: [^\]]+\] 'heart' depends on", stderr), stderr[-2000:]
    n = len(json.loads((readme_demo / "runs" / "demo" / "labels.json").read_text()))
    for line in (f"{n}/{n} classes in", f"tokens that moved from their initial word: {n}/{n}"):
        assert line in stderr and line in readme, (line, stderr[-2000:])
    counted = re.search(r"passing findings confirmed by the truth table \(probe.world.true_effects\): (\d+)/(\d+)", stderr)
    # the star's grass and the triangle's water at least; a moderate finding may be false (tests/test_finding_validity.py)
    assert counted and int(counted.group(1)) >= 2, stderr[-2000:]
    assert "'star' depends on grass" in stderr and "'triangle' depends on water" in stderr, stderr[-2000:]
    run = readme_demo / "runs" / "demo"
    folders = sorted((run / "classes").iterdir())
    assert len(folders) == n and all(json.loads((f / "metrics.json").read_text())["status"] == "done" for f in folders)
    star = json.loads((run / "classes" / "3-star" / "metrics.json").read_text())
    # not asserted for every class: the cross's six evaluation images read lower with its token (0.75 against 0.82 at
    # 1 thread on an Intel Xeon, 5 December 2026)
    assert star["token"]["mean_target_prob"] > star["baseline"]["mean_target_prob"]
    # the accuracy line gives the paired change with its evidence (six images per class decide little), and the
    # report's card says the same
    from probe.analysis.evaluation import gain_text, token_gain

    gain = token_gain(json.loads((f / "metrics.json").read_text()) for f in folders)
    assert gain.n == 6 * n and f"; paired on the same seeds {gain_text(gain)}" in stderr, stderr[-2000:]
    assert f"{gain_text(gain)} against the baseline" in (run / "report" / "index.html").read_text(encoding="utf-8")


def test_a_moved_run_rerenders_from_another_directory(readme_demo, tmp_path):
    """Runs travel: move the run anywhere, re-render with a relative path from another working directory."""
    moved = tmp_path / "elsewhere" / "moved-run"
    shutil.copytree(readme_demo / "runs" / "demo", moved)
    shutil.rmtree(moved / "report")
    done = subprocess.run([probe_script(), "report", "elsewhere/moved-run"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    index = moved / "report" / "index.html"
    assert index.is_file()
    for page in [index, *(moved / "report" / "classes").glob("*.html")]:
        referenced = referenced_files(page)
        assert referenced and all(p.is_file() for p in referenced), page
    assert "attribution" in (moved / "report" / "classes" / "3-star.html").read_text(encoding="utf-8").lower()


def test_planted_cue_recovery_needs_a_passing_top_finding_with_the_planted_value():
    from probe.analysis import Finding
    from probe.world.demo import planted_cue_recovery

    def finding(index, value, passes, kind="necessity"):
        return Finding(class_index=index, class_name=["circle", "star"][index], cue=value, kind=kind, effect=0.5,
                       ci_low=0.2, ci_high=0.8, n_images=8, evidence=(), passes=passes, strength="strong",
                       sentence=value, details={"value": value})

    labels = ["circle", "star"]
    planted = {"star": {"background": "grass"}}
    off_object_first = [finding(1, "off-object", True, kind="off-object"), finding(1, "grass", True)]
    assert planted_cue_recovery(off_object_first, labels, planted)[0].recovered
    assert not planted_cue_recovery([finding(1, "snow", True), finding(1, "grass", True)], labels, planted)[0].recovered
    assert not planted_cue_recovery([finding(1, "grass", False)], labels, planted)[0].recovered
    assert not planted_cue_recovery([finding(0, "grass", True)], labels, planted)[0].recovered


def test_the_headline_holds_the_findings_against_the_audited_classifier_s_own_planted_cues(readme_demo, tmp_path):
    """``run_demo(model=X)`` audits another world classifier: its headline must score the findings against X's
    .bias.json and X's truth table, not the bundled classifier's (it scored them against the bundled one's)."""
    from probe.auditing.loop import AuditResult
    from probe.run import RunDir
    from probe.world import bundled_classifier_path
    from probe.world.demo import headline

    source = bundled_classifier_path("biased")
    mine = tmp_path / "mine.pt2"
    shutil.copy(source, mine)
    shutil.copy(source.with_suffix(".labels.txt"), tmp_path / "mine.labels.txt")
    (tmp_path / "mine.bias.json").write_text(json.dumps({"bias": {"circle": {"color": "red"}}, "strength": 0.9}))
    run = tmp_path / "run"
    shutil.copytree(readme_demo / "runs" / "demo", run)
    result = AuditResult(run_dir=run, rows=RunDir(run).write_summary())
    text = headline(result, mine, 1.0)
    assert "(mine.pt2 classifier)" in text and set(_marks(text)) == {"circle"}, text  # its planted cue, not the star's
    assert "passing findings confirmed by the truth table" in text
    (tmp_path / "mine.bias.json").unlink()
    text = headline(result, mine, 1.0)
    assert "planted cues: unknown" in text and "bias.json" in text and not _marks(text), text
    assert "passing findings confirmed by the truth table" in text  # the truth table needs the classifier only
