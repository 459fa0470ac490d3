"""The HTML report: structure, safety against untrusted labels, partial runs, single-file export."""

from __future__ import annotations

import html
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from probe.errors import ProbeError, RunError
from probe.report import ReportError, load_run, rank_findings, render_report, slugify
from probe.report.synthetic import make_synthetic_run

XSS = "<script>alert(1)</script>"
EVIL = [XSS, "../../x", '"><img src=x onerror=alert(2)>', "star"]


class _Collect(HTMLParser):
    """Every tag with its attributes, plus the text of <h1>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.h1 = ""
        self._in_h1 = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_h1 = self._in_h1 or tag == "h1"

    def handle_endtag(self, tag):
        if tag == "h1":
            self._in_h1 = False

    def handle_data(self, data):
        if self._in_h1:
            self.h1 += data


def parse(path: Path) -> _Collect:
    p = _Collect()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def refs(p: _Collect) -> list[str]:
    return [a[k] for t, a in p.tags for k in ("src", "href") if a.get(k)]


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def evil_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evil")
    run = make_synthetic_run(root / "run", 5, labels=EVIL + ["circle"], failed=[4], images_per_kind=3)
    before = all_files(root)
    index = render_report(run)
    return root, run, index, before


def test_index_structure_links_and_ranked_findings(evil_run):
    root, run, index, _ = evil_run
    assert index == run / "report" / "index.html"
    page = parse(index)
    # every relative reference on the index, the findings page and every class page exists on disk
    pages = [index, run / "report" / "findings.html", *sorted((run / "report" / "classes").glob("*.html"))]
    assert len(pages) == 2 + 5
    for page_path in pages:
        for ref in refs(parse(page_path)):
            assert not ref.startswith(("http:", "https:", "//")), f"{page_path.name} references the network: {ref}"
            if ref.startswith(("#", "data:")):
                continue
            target = (page_path.parent / ref.split("#")[0]).resolve()
            assert target.is_file(), f"{page_path.name}: broken reference {ref}"
            assert target.is_relative_to((run / "report").resolve())
    # class table: one JSON row per class, hrefs to the class pages in class-index order
    data = re.search(r'<script type="application/json" id="class-data">(.*?)</script>', index.read_text(), re.S)
    rows = json.loads(data.group(1))
    assert [r[0][1] for r in rows] == [0, 1, 2, 3, 4]
    assert [r[1][0] for r in rows] == EVIL + ["circle"]
    assert all(re.fullmatch(r"classes/\d+-[a-z0-9_-]+\.html", r[1][2]) for r in rows)
    # ranked findings: the index shows passing findings only, in rank order
    findings = json.loads((run / "findings.json").read_text())
    passing = [f for f in rank_findings(findings) if f["passes"]]
    assert passing, "the synthetic run should have passing findings"
    text = index.read_text()
    sentences = [m.strip() for m in re.findall(r'<p class="sentence">(.*?)</p>', text, re.S)]
    assert len(sentences) == len(passing[:20])
    assert [html.unescape(x) for x in sentences] == [f["sentence"] for f in passing[:20]]
    assert text.count('class="finding ') == len(passing[:20])
    # metadata from config.json
    assert "synthetic://tiny-sd" in text and "2.14.1" in text and "float32" in text
    meta = text.split('id="metadata"')[1]
    assert "<h3>token</h3>" in meta and "accuracy_threshold" in meta  # TokenConfig gets its own card
    assert "token.accuracy_threshold" not in meta
    assert "images" in page.h1 or "classifier" in page.h1


def test_untrusted_labels_are_inert_and_stay_in_report_folder(evil_run):
    root, run, index, before = evil_run
    written = all_files(root) - before
    assert written, "the report wrote nothing"
    report = (run / "report").resolve()
    assert all(p.resolve().is_relative_to(report) for p in written), "a file was written outside report/"
    names = [p.name for p in (run / "report" / "classes").iterdir()]
    assert all(re.fullmatch(r"\d+-[a-z0-9_-]+\.html", n) for n in names), names
    for page_path in [index, run / "report" / "findings.html", *(run / "report" / "classes").glob("*.html")]:
        text = page_path.read_text(encoding="utf-8")
        assert XSS not in text, f"unescaped label in {page_path.name}"
        assert "<img src=x" not in text
        for tag, attrs in parse(page_path).tags:
            assert not any(k.startswith("on") for k in attrs), f"event handler in {page_path.name}: {attrs}"
            if tag == "script":  # only our own script file and inert JSON data blocks
                assert attrs.get("type") == "application/json" or attrs.get("src", "").endswith("assets/report.js")
    page0 = next((run / "report" / "classes").glob("0-*.html"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page0.read_text()
    assert XSS in parse(page0).h1  # escaped in the source, shown verbatim as text


def test_failed_class_shows_its_error(evil_run):
    _, run, index, _ = evil_run
    page = next((run / "report" / "classes").glob("4-*.html")).read_text()
    assert "This class failed" in page
    assert "loss became NaN at step 3" in page
    assert "<summary>traceback</summary>" in page and "Traceback (most recent call last)" in page
    assert "st-failed" in page
    rows = json.loads(re.search(r'id="class-data">(.*?)</script>', index.read_text(), re.S).group(1))
    assert rows[4][2][0] == "failed"


def test_class_page_galleries_predictions_overlays_and_curve(evil_run):
    _, run, _, _ = evil_run
    page = next((run / "report" / "classes").glob("3-*.html"))
    p = parse(page)
    text = page.read_text()
    metrics = json.loads(next((run / "classes").glob("3-*")).joinpath("metrics.json").read_text())
    n_img = len(metrics["images"])
    gallery_imgs = [a for t, a in p.tags if t == "img" and "gallery" not in a.get("class", "") and "ov" not in (a.get("class") or "").split()]
    overlays = [a for t, a in p.tags if t == "img" and "ov" in (a.get("class") or "").split()]
    assert len(overlays) == 3 * n_img  # three attribution methods, one overlay per image
    assert all("hidden" in a for a in overlays)
    assert {a["data-m"] for a in overlays} == {"m0", "m1", "m2"}
    buttons = [a for t, a in p.tags if t == "button" and "data-m" in a]
    assert [b["data-m"] for b in buttons] == ["", "m0", "m1", "m2"]
    assert "grad cam" in text and "integrated gradients" in text and "occlusion" in text
    # one top-k list per image with the classifier's probabilities
    assert text.count('<ol class="topk">') == n_img
    assert "&lt;probe-3&gt;" in text  # the token string (metrics token_string), escaped
    top = metrics["images"][0]["topk"][0]
    assert f'{top["prob"]:.2f}' in text
    # the curve is a PNG made by matplotlib from history.csv
    curve = [a for t, a in p.tags if t == "img" and a.get("alt", "").startswith("optimisation curves")]
    assert len(curve) == 1
    with Image.open(page.parent / curve[0]["src"]) as im:
        assert im.size[0] >= 400 and im.format == "PNG"
    assert len(gallery_imgs) >= n_img


def test_missing_analysis_says_so_and_parquet_alone_is_read(tmp_path):
    run = make_synthetic_run(tmp_path / "run", 2, findings=False, attributions=False, images_per_kind=1)
    text = render_report(run).read_text()
    assert "Analysis was not run" in text
    assert load_run(run).findings is None
    run2 = make_synthetic_run(tmp_path / "run2", 6, images_per_kind=1, attributions=False, seed=3)
    expected = rank_findings(json.loads((run2 / "findings.json").read_text()))
    (run2 / "findings.json").unlink()
    got = load_run(run2).findings
    assert [(f["class_index"], f["cue"], f["effect"]) for f in got] == [
        (f["class_index"], f["cue"], f["effect"]) for f in expected
    ]
    assert all(isinstance(f["evidence"], list) for f in got)


def test_single_file_export_has_no_relative_references(tmp_path):
    run = make_synthetic_run(tmp_path / "run", 3, labels=[XSS, "../../x", "star"], failed=[2], images_per_kind=2)
    out = render_report(run, single_file=True)
    assert out == run / "report" / "report.html"
    assert not (run / "report" / "assets").exists()
    p = parse(out)
    rs = refs(p)
    assert rs and all(r.startswith(("data:", "#")) for r in rs), [r for r in rs if not r.startswith(("data:", "#"))]
    assert not [a for t, a in p.tags if t == "link"]
    assert not [a for t, a in p.tags if t == "script" and "src" in a]
    ids = {a.get("id") for _, a in p.tags}
    assert {"top", "findings", "c0", "c1", "c2"} <= ids
    anchors = [r for r in rs if r.startswith("#")]
    assert all(a[1:] in ids for a in anchors), "an in-page link points to a missing section"
    text = out.read_text()
    assert XSS not in text and "loss became NaN" in text
    custom = render_report(run, out=tmp_path / "x" / "audit.html", single_file=True)
    assert custom == tmp_path / "x" / "audit.html" and custom.is_file()


def test_large_images_are_downscaled_and_rerender_reuses_thumbnails(tmp_path):
    run = make_synthetic_run(tmp_path / "run", 1, image_size=512, images_per_kind=2, attributions=False)
    render_report(run)
    thumbs = sorted((run / "report" / "assets" / "img").rglob("*.*"))
    assert thumbs
    sizes = []
    for t in thumbs:
        with Image.open(t) as im:
            sizes.append(max(im.size))
    assert max(sizes) <= 640 and sorted(sizes)[0] <= 256  # curves are 640 wide, thumbnails at most 256
    mtimes = {t: t.stat().st_mtime_ns for t in thumbs}
    os.utime(run / "classes" / "0-class-0" / "history.csv")  # history changed: only the curve is redrawn
    render_report(run)
    changed = [t for t in thumbs if t.stat().st_mtime_ns != mtimes[t]]
    assert len(changed) == 1
    cfg = json.loads((run / "config.json").read_text())
    cfg["audit"]["token"]["accuracy_threshold"] = 0.9  # another threshold line: a new curve, not the cached one
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "report" / "classes" / "7-gone.html").write_text("a class page from an earlier render")
    (run / "report" / "classes" / "notes.txt").write_text("not ours")
    render_report(run)
    after = sorted((run / "report" / "assets" / "img").rglob("*.*"))
    assert len(after) == len(thumbs) and len(set(after) - set(thumbs)) == 1  # the old curve was replaced
    assert not (run / "report" / "classes" / "7-gone.html").exists()
    assert (run / "report" / "classes" / "notes.txt").exists()


def test_evidence_outside_the_run_is_never_read(tmp_path):
    run = make_synthetic_run(tmp_path / "run", 1, findings=False, attributions=False, images_per_kind=1)
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(secret)
    finding = {"class_index": 0, "class_name": "class 0", "cue": "grass", "kind": "sufficiency", "effect": 0.5,
               "ci_low": 0.4, "ci_high": 0.6, "n_images": 4, "evidence": ["../secret.png", str(secret)],
               "passes": True, "strength": "strong", "sentence": "grass"}
    (run / "findings.json").write_text(json.dumps([finding]))
    mpath = next((run / "classes").glob("0-*")) / "metrics.json"
    m = json.loads(mpath.read_text())
    m["images"][0]["path"] = "../../../secret.png"
    m["images"][1]["path"] = str(secret)
    mpath.write_text(json.dumps(m))
    index = render_report(run)
    page = next((run / "report" / "classes").glob("0-*.html")).read_text()
    assert page.count('class="noimg"') == 2  # both gallery images refused, shown as missing
    text = index.read_text()
    assert "points outside the run directory" in text
    before = {p.read_bytes() for p in (run / "report" / "assets" / "img").rglob("*.png")}
    assert secret.read_bytes() not in before


def test_class_table_is_paged_and_incomplete_classes_listed(tmp_path):
    run = make_synthetic_run(tmp_path / "run", 60, images_per_kind=1, attributions=False, findings=False,
                             incomplete=[59], history_steps=3)
    text = render_report(run).read_text()
    table = text.split('id="classes"')[1].split("</tbody>")[0]
    assert table.count("<tr>") == 1 + 50  # header + first page only; the rest are paged by JS from JSON
    rows = json.loads(re.search(r'id="class-data">(.*?)</script>', text, re.S).group(1))
    assert len(rows) == 60 and rows[59][2][0] == "incomplete"
    assert "enable JavaScript" in text


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        render_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="neither config.json nor classes"):
        render_report(tmp_path / "empty")
    run = make_synthetic_run(tmp_path / "run", 1, images_per_kind=1, attributions=False)
    with pytest.raises(ReportError, match="names a file"):
        render_report(run, out=tmp_path / "r.html")
    with pytest.raises(ReportError, match="mix report pages"):
        render_report(run, out=run)
    with pytest.raises(ReportError, match="mix report pages"):
        render_report(run, out=run / "classes" / "r")
    with pytest.raises(ProbeError, match="--max-images"):
        render_report(run, max_images=0)


def test_damaged_files_become_warnings_not_crashes(tmp_path):
    run = make_synthetic_run(tmp_path / "run", 2, images_per_kind=1, attributions=False)
    (run / "config.json").write_text("{not json")
    next((run / "classes").glob("1-*")).joinpath("metrics.json").write_text("[")
    img = next((run / "classes").glob("0-*")).joinpath("images")
    next(img.glob("token_*.png")).write_bytes(b"not a png")
    text = render_report(run).read_text()
    assert "problems while reading the run" in text
    assert "config.json&#39; is not valid JSON" in text or "config.json' is not valid JSON" in text
    assert "cannot be read" in text
    assert "unreadable" in text


def test_rank_findings_is_the_analysis_ranking_and_stable_on_a_ranked_list():
    """One ranking (probe.run.records.rank_findings) for the report and the analysis: passing first, then by
    status, cue findings before off-object, agreement across kinds, |effect|; findings.json is written in that
    order, so ranking it again changes nothing."""
    from probe.analysis.finding import Finding
    from probe.analysis.finding import rank_findings as rank_objects

    fs = [
        {"cue": "a", "kind": "necessity", "status": "weak", "passes": False, "effect": 0.9, "class_index": 0},
        {"cue": "b", "kind": "off-object", "status": "passes", "passes": True, "effect": 0.8, "class_index": 0},
        {"cue": "c", "kind": "necessity", "status": "passes", "passes": True, "effect": -0.3, "class_index": 0},
        {"cue": "d", "kind": "sufficiency", "status": "passes", "passes": True, "effect": 0.6, "class_index": 0},
        {"cue": "c", "kind": "sufficiency", "status": "passes", "passes": True, "effect": 0.2, "class_index": 0},
    ]
    ranked = rank_findings(fs)
    assert [(f["cue"], f["kind"]) for f in ranked] == [("c", "necessity"), ("c", "sufficiency"), ("d", "sufficiency"),
                                                       ("b", "off-object"), ("a", "necessity")]
    assert rank_findings(ranked) == ranked
    objects = [Finding(class_index=0, class_name="x", kind=f["kind"], cue=f["cue"], effect=f["effect"], ci_low=0.0,
                       ci_high=1.0, n_images=16, evidence=(), strength="strong", passes=f["passes"], sentence="",
                       status=f["status"])
               for f in fs]
    assert [(f.cue, f.kind) for f in rank_objects(objects)] == [(f["cue"], f["kind"]) for f in ranked]


@pytest.mark.parametrize("name", [XSS, "../../x", "..", "/etc/passwd", "a\\b", "\x00", "é" * 100, ""])
def test_slugify_is_file_name_safe(name):
    s = slugify(name)
    assert re.fullmatch(r"[a-z0-9_-]{1,40}", s) and s not in (".", "..")


def test_analysis_summary_skipped_methods_and_token_extras(tmp_path):
    run = make_synthetic_run(tmp_path / "run", 2, images_per_kind=1)
    a = json.loads((run / "analysis.json").read_text())
    a["attributions"]["skipped"] = {"grad_cam": "TorchScript model: layer hooks are unavailable"}
    (run / "analysis.json").write_text(json.dumps(a))
    index = render_report(run).read_text()
    assert "grad cam was not run:" in index and "layer hooks are unavailable" in index
    assert "shapes-world oracles" in index and "necessity skipped (synthetic note)" in index
    page = next((run / "report" / "classes").glob("0-*.html")).read_text()
    assert "nearest vocabulary words" in page and '<span class="chip">grass' in page
    assert "token shift" in page and "+0.50" in page  # grass background 20% -> 70%
    assert "41%" in page  # off-object share
    assert "grad cam: not run" in page


def test_threshold_is_read_from_the_one_place_the_run_format_keeps_it():
    from probe.report.render import _threshold

    assert _threshold({"audit": {"token": {"accuracy_threshold": 0.8}}}) == 0.8
    assert _threshold({"token": {"threshold": 0.6}}) is None  # not the run format: no guessing
    assert _threshold({"audit": {"model": "x"}}) is None and _threshold(None) is None


@pytest.mark.parametrize("version, words", [(None, "older probe"), (0, "an older format"), (99, "newer or unknown")])
def test_a_run_of_another_format_version_is_refused_clearly(tmp_path, version, words):
    from probe.errors import RunError

    run = make_synthetic_run(tmp_path / "run", 1, images_per_kind=1, attributions=False, findings=False)
    config = json.loads((run / "config.json").read_text())
    config.pop("format_version")
    if version is not None:
        config["format_version"] = version
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match=words):
        render_report(run)


def test_curve_blitting_reuses_backgrounds_without_stale_limits():
    from probe.report.curves import CurvePlotter, nice_ceiling

    assert [nice_ceiling(x) for x in (0.7, 3, 11, 140)] == [0.8, 3, 15, 150]
    short = [{"step": s, "loss": 2 - s / 5, "accuracy": s / 5, "mean_target_prob": s / 6} for s in range(4)]
    long = [{"step": s, "loss": 30 / (s + 1), "accuracy": min(1, s / 80), "mean_target_prob": 0.5} for s in range(130)]
    p = CurvePlotter()
    first = p.plot(short, 2, 0.7)
    p.plot(long, None, None)  # another bucket: different axis limits
    assert p.plot(short, 2, 0.7) == first  # the cached background comes back with its own limits
    assert len(p._backgrounds) == 2
    fresh = CurvePlotter().plot(short, 2, 0.7)
    assert fresh == first


def test_templates_load_from_the_installed_package_first(tmp_path, monkeypatch):
    """In a wheel, reports/templates is force-included as probe/_report_templates."""
    import shutil

    import probe.report.render as render_mod

    repo_templates = render_mod.template_dir()
    assert repo_templates.name == "templates"  # running from the checkout
    pkg = tmp_path / "site" / "probe"
    shutil.copytree(repo_templates, pkg / "_report_templates")
    base = pkg / "_report_templates" / "base.html"
    base.write_text(base.read_text().replace("<main>", "<main data-from='wheel'>"))

    class FakeResources:
        @staticmethod
        def files(name):
            assert name == "probe"
            return pkg

    monkeypatch.setattr(render_mod, "resources", FakeResources)
    assert render_mod.template_dir() == pkg / "_report_templates"
    run = make_synthetic_run(tmp_path / "run", 1, images_per_kind=1, attributions=False)
    assert "data-from='wheel'" in render_report(run).read_text()


def test_a_run_that_has_only_started_renders(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"format_version": 1, "audit": {"model": "m.pt", "token": {"max_steps": 5}}}))
    text = render_report(run).read_text()
    assert "Analysis was not run" in text and 'id="class-data">[]</script>' in text
    assert "max_steps" in text


def test_held_out_classifier_accuracy_gets_a_column_and_a_card(tmp_path):
    run = make_synthetic_run(tmp_path / "run", 2, images_per_kind=1, attributions=False, findings=False)
    plain = render_report(run).read_text()
    assert "held-out" not in plain
    for cdir in (run / "classes").iterdir():
        m = json.loads((cdir / "metrics.json").read_text())
        m["eval_model"] = {"name": "resnet-b", "baseline": {"accuracy": 0.25, "mean_target_prob": 0.2, "n": 4},
                           "token": {"accuracy": 0.5 if m["class_index"] == 0 else 0.75, "mean_target_prob": 0.5, "n": 4}}
        (cdir / "metrics.json").write_text(json.dumps(m))
    text = render_report(run).read_text()
    rows = json.loads(re.search(r'id="class-data">(.*?)</script>', text, re.S).group(1))
    assert [r[7][1] for r in rows] == [0.5, 0.75] and len(rows[0]) == 12
    assert [r[8][0] for r in rows] == ["yes", "no"]  # token moved: class 1 of the synthetic run did not move
    assert "held-out token acc." in text and "held-out classifier, with token" in text
    assert "62%" in text  # mean held-out accuracy with the token
    page = next((run / "report" / "classes").glob("0-*.html")).read_text()
    assert "held-out classifier: resnet-b" in page


# -- what "passes" means, statuses, units, p/q, filters, stop metric, token movement ---------------------------
def _section(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def _expected_p(v) -> str:
    """The report's p/q format, written out independently: 3 significant digits rounded up, "<0.001", "–"."""
    from decimal import ROUND_CEILING, Decimal

    if v is None:
        return "–"
    if v < 0.001:
        return "<0.001"
    d = Decimal(repr(v))
    return f"{float(d.quantize(Decimal(1).scaleb(d.adjusted() - 2), rounding=ROUND_CEILING)):.3g}"


def test_the_rule_and_who_checked_the_interventions_are_said_in_words(evil_run, tmp_path):
    _, run, index, _ = evil_run
    rule = json.loads((run / "analysis.json").read_text())["rule"]
    assert rule.startswith("A finding passes when") and "q-value" in rule
    text = index.read_text()
    top = _section(text, 'id="top-findings"', 'id="classes"')
    top_u = html.unescape(top)
    assert rule in top_u and top_u.index(rule) < top_u.index('<ol class="findings">')  # near the findings, above them
    assert "Interventions checked by: shapes world oracles" in top
    assert "Counter rule: a counter-value whose screened sufficiency effect" in html.unescape(top)
    assert '<span class="chip">sand background</span>' in top  # the dropped counter
    findings_page = (run / "report" / "findings.html").read_text()
    head = html.unescape(findings_page.split('<div class="dtable"', 1)[0])
    assert rule in head and "Interventions checked by: shapes world oracles" in head
    assert "bootstrap 95% interval" not in findings_page  # the stale wording is gone

    other = make_synthetic_run(tmp_path / "run", 2, images_per_kind=1, attributions=False, checked_by=None)
    page = render_report(other).read_text()
    assert "Interventions were not checked (no world oracles, no concept model; pass --concepts" in page
    assert "Interventions checked by" not in page
    # an unchecked run says so in its first lines, with how to verify, instead of claiming what the images rely on
    lede = html.unescape(_section(page, 'class="lede"', "</p>"))
    assert "the cue findings below are unverified" in lede and "--concepts openai/clip-vit-large-patch14" in lede
    assert "name the cues those images rely on" not in lede
    # the default concept model was tried and could not be loaded: the lede gives that reason and its fix, where
    # "run again with --concepts openai/..." would repeat what had just failed
    a = json.loads((other / "analysis.json").read_text())
    why = ("could not load concept model 'openai/clip-vit-large-patch14': it is not in the local cache and the hub "
           "(https://huggingface.co) is unreachable (Name or service not known); download it where the hub is "
           "reachable (hf download openai/clip-vit-large-patch14 --local-dir DIR) and pass --concepts DIR")
    a["notes"] = [*a.get("notes", []), "interventions unchecked, the cue findings are unverified: " + why]
    (other / "analysis.json").write_text(json.dumps(a))
    failed = html.unescape(_section(render_report(other).read_text(), 'class="lede"', "</p>"))
    assert "the cue findings below are unverified" in failed and f"could not: {why}. Then run" in failed
    assert "--concepts openai/clip-vit-large-patch14" not in failed
    checked_lede = html.unescape(_section(text, 'class="lede"', "</p>"))
    assert "name the cues those images rely on" in checked_lede and "unverified" not in checked_lede
    a = json.loads((other / "analysis.json").read_text())
    for k in ("rule", "interventions_checked_by", "counter_rule"):
        a.pop(k)
    (other / "analysis.json").write_text(json.dumps(a))
    page = render_report(other).read_text()  # an older analysis: no invented claims
    assert "did not record its rule" in page and "Interventions" not in page and "Counter rule" not in page


def _header_counts(text: str) -> dict[str, int]:
    card = _section(text, '<div class="card findings-card">', "</div></div>")
    got = {"passes": int(re.search(r'<div class="v" data-status="passes">(\d+)</div>', card).group(1))}
    for status, n in re.findall(r'<span class="count" data-status="(\w+)">(\d+) ', card):
        got[status] = int(n)
    return got


def test_the_header_counts_each_status_separately(evil_run, tmp_path):
    _, run, index, _ = evil_run
    findings = json.loads((run / "findings.json").read_text())
    expected = {s: sum(f["status"] == s for f in findings) for s in ("passes", "weak", "inconclusive", "screened",
                                                                   "unverified")}
    assert all(expected.values()), f"the synthetic run should have every status: {expected}"
    text = index.read_text()
    assert _header_counts(text) == expected
    card = _section(text, '<div class="card findings-card">', "</div></div>")
    assert f"{expected['screened']} screening only" in card and f"{expected['inconclusive']} inconclusive" in card
    # the badges say the status, not "below threshold"
    page = (run / "report" / "findings.html").read_text()
    rows = json.loads(re.search(r'id="finding-data">(.*?)</script>', page, re.S).group(1))
    labels = {"passes": "passes", "weak": "weak", "inconclusive": "inconclusive", "screened": "screening only",
              "unverified": "unverified"}
    by_key = {(f["class_index"], f["cue"], f["kind"]): f for f in findings}
    assert len(rows) == len(findings)
    for r in rows:
        f = by_key[(int(r[1][4]), r[2][4], r[3][4])]
        assert r[9][0] == labels[f["status"]] and r[9][3] == f"verdict v-{f['status']}"
    assert "below threshold" not in page
    pages = "".join(p.read_text() for p in (run / "report" / "classes").glob("*.html"))
    for status, label in labels.items():
        assert f'<span class="verdict v-{status}"' in pages and f">{label}</span>" in pages

    # findings of an older analysis (no status): passes -> passes, everything else -> weak
    old = make_synthetic_run(tmp_path / "old", 5, images_per_kind=1, attributions=False)
    fs = json.loads((old / "findings.json").read_text())
    for f in fs:
        for k in ("status", "p", "q", "unit", "excluded", "attempted", "details", "checked_by"):
            f.pop(k)
    (old / "findings.json").write_text(json.dumps(fs))
    n_pass = sum(f["passes"] for f in fs)
    assert 0 < n_pass < len(fs)
    got = _header_counts(render_report(old).read_text())
    assert got == {"passes": n_pass, "weak": len(fs) - n_pass, "inconclusive": 0, "screened": 0, "unverified": 0}
    page = (old / "report" / "findings.html").read_text()
    rows = json.loads(re.search(r'id="finding-data">(.*?)</script>', page, re.S).group(1))
    assert all(r[6][0].endswith(" images") for r in rows)  # no unit recorded: "images"
    assert all(r[7][0] == "–" and r[8][0] == "–" for r in rows)  # no p, no q


def test_cards_say_pairs_or_images_and_show_p_q_and_the_excluded_note(evil_run):
    _, run, index, _ = evil_run
    findings = json.loads((run / "findings.json").read_text())
    units = {f["unit"] for f in findings}
    assert units == {"pairs", "images"}
    pages = {int(p.name.split("-")[0]): p.read_text() for p in (run / "report" / "classes").glob("*.html")}
    notes = 0
    for f in findings:
        page = pages[f["class_index"]]
        items = re.findall(r'<li class="finding .*?</li>', page, re.S)
        item = next(i for i in items if html.unescape(re.search(r'<p class="sentence">(.*?)</p>', i, re.S).group(1))
                    == f["sentence"])
        n_text = f"{f['n_images']} {f['unit']}" + (f" ({f['excluded']} excluded)" if f["excluded"] else "")
        assert f'<span class="n">{n_text}</span>' in item
        pq = f"p {_expected_p(f['p'])} · q {_expected_p(f['q'])}"
        assert f'<span class="pq">{html.escape(pq)}</span>' in item
        note = f["details"].get("excluded_note")
        if note:
            notes += 1
            assert f'<p class="excluded-note">{html.escape(note)}</p>' in item
        else:
            assert "excluded-note" not in item
    assert notes >= 2  # a passing finding with 2 pairs excluded, an inconclusive one with 10
    assert any(f["q"] is None for f in findings) and any(f["p"] < 0.001 for f in findings)
    # the findings table: n with its unit, p and q as text and as numbers to sort on (null: none)
    page = (run / "report" / "findings.html").read_text()
    rows = json.loads(re.search(r'id="finding-data">(.*?)</script>', page, re.S).group(1))
    by_key = {(f["class_index"], f["cue"], f["kind"]): f for f in findings}
    for r in rows:
        f = by_key[(int(r[1][4]), r[2][4], r[3][4])]
        assert r[6][0].startswith(f"{f['n_images']} {f['unit']}") and r[6][1] == f["n_images"]
        assert (r[7][0], r[7][1]) == (_expected_p(f["p"]), f["p"])
        assert (r[8][0], r[8][1]) == (_expected_p(f["q"]), f["q"])
        assert r[4][1] == f["effect"]
    heads = re.findall(r'title="sort by ([^"]+)"', page)
    assert heads == ["rank", "class", "cue", "kind", "effect", "95% CI", "n", "p", "q", "status"]
    assert "unbounded" in page or "+∞" in page  # a screened finding with an open interval


def test_p_and_q_format():
    """One formatter (probe.run.format) for every surface: the same q reads the same in the report, the gate, the
    notebook objects and compare."""
    from probe.run.format import effect, interval, number, pq

    assert [pq(v) for v in (None, 0.0, 0.00099, 0.001, 0.012345, 0.5, 1.0, float("nan"), "abc", True)] == [
        "–", "<0.001", "<0.001", "0.001", "0.0124", "0.5", "1", "–", "–", "–"]
    # printed numbers never cross the bars the raw ones do not (found by review, 7 December 2026): a q of 0.05004
    # printed "0.05" beside "q ≤ 0.05", an interval's low end of 0.1496 "0.15" beside a bar of 0.15 it does not clear,
    # an effect of 0.1496 "+0.15" beside "at least 0.15"
    assert pq(0.05004) == "0.0501" and pq(0.05) == "0.05" and pq(0.05000000000000001) == "0.05"
    assert interval(0.1496, 0.29) == "0.14 – 0.29" and interval(0.15, 0.2901) == "0.15 – 0.30"
    assert effect(0.1496) == "+0.1496" and effect(0.151) == "+0.15" and effect(-0.0499) == "-0.0499"
    assert effect(0.15) == "+0.15" and effect(0.14999999999999999) == "+0.15" and effect(0.33) == "+0.33"
    assert interval(None, None) == "unbounded" and interval(0.1, None) == "0.10 – +∞" and interval(None, 0.2) == "−∞ – 0.20"
    assert interval(float("-inf"), float("inf")) == "unbounded" and effect(0.4) == "+0.40" and number(0.834) == "0.83"
    # nor do they where 4 decimals still round onto the bar (0.14999 printed "+0.1500"), or onto a limit the caller
    # names from below (a gate's offender of 0.3004 printed "+0.30" beside "above |effect| 0.30")
    assert effect(0.14999) == "+0.14999" and effect(-0.04996) == "-0.04996" and effect(0.3004) == "+0.30"
    assert effect(0.3004, bars=(0.3,)) == "+0.3004" and effect(-0.2996, bars=(0.3,)) == "-0.2996"
    assert effect(0.3, bars=(0.3,)) == "+0.30" and effect(0.41, bars=(0.3,)) == "+0.41"
    assert effect(0.300000002, bars=(0.3,)) == "+0.300000002" and effect(-0.300000002, bars=(0.3,)) == "-0.300000002"
    from probe.analysis.finding import sentence
    from probe.report.render import _default_sentence

    assert "95% CI 0.12–+∞" in sentence("sufficiency", "star", "grass", 0.5, (0.12, float("inf")), 2,
                                        status="screened", extra={})  # one open end is not "unbounded"
    assert "+0.1496 (95% CI 0.14–0.30)" in _default_sentence({"effect": 0.1496, "ci_low": 0.1496, "ci_high": 0.2901})
    import probe.analysis.finding as finding
    import probe.comparison as compare
    import probe.explore.run as explore
    import probe.gate as gate
    import probe.report.render as render

    for module in (render, gate, compare, explore, finding):  # no surface keeps its own copy
        assert not any(hasattr(module, name) for name in ("fmt_p", "fmt_ci", "_q", "_p", "_pq", "_num")), module


def test_findings_page_filters_by_kind_class_and_cue_with_the_values_in_the_data(evil_run):
    _, run, _, _ = evil_run
    findings = json.loads((run / "findings.json").read_text())
    page = (run / "report" / "findings.html").read_text()
    selects = dict(re.findall(r'<select class="dt-facet" data-col="(\d)" data-facet="(\w+)"', page))
    assert sorted(selects.values()) == ["class", "cue", "kind"]
    options = {}
    for col, name in selects.items():
        block = page.split(f'data-facet="{name}"', 1)[1].split("</select>", 1)[0]
        options[name] = (int(col), [html.unescape(v) for v in re.findall(r'<option value="([^"]*)">', block)])
    kinds = [k for k in ("sufficiency", "necessity", "token-shift", "off-object") if any(f["kind"] == k for f in findings)]
    assert options["kind"][1] == ["", *kinds] and len(kinds) >= 2
    assert options["class"][1] == ["", *map(str, sorted({f["class_index"] for f in findings}))]
    assert options["cue"][1] == ["", *sorted({f["cue"] for f in findings}, key=lambda c: (c.lower(), c))]
    # each filter reads a column whose cells carry the same keys
    rows = json.loads(re.search(r'id="finding-data">(.*?)</script>', page, re.S).group(1))
    for name, (col, values) in options.items():
        assert {r[col][4] for r in rows} == set(values[1:]), name
    # class names in the class filter are untrusted: escaped
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;</option>" in page
    js = (run / "report" / "assets" / "report.js").read_text()
    assert "dt-facet" in js and "data-col" in js


def test_curve_caption_and_titles_name_the_stop_metric_and_the_objective(tmp_path):
    run = make_synthetic_run(tmp_path / "run", 1, images_per_kind=1, attributions=False, findings=False,
                             stop_metric="target_prob", objective="margin")
    render_report(run)
    page = next((run / "report" / "classes").glob("0-*.html")).read_text()
    caption = _section(page, "<figcaption>Per optimisation step", "</figcaption>")
    assert "early-stop threshold on the mean target probability (0.95)" in caption
    assert "accuracy threshold" not in caption and "margin loss" in caption
    assert 'alt="optimisation curves: margin loss' in page
    plain = make_synthetic_run(tmp_path / "plain", 1, images_per_kind=1, attributions=False, findings=False)
    render_report(plain)
    page = next((plain / "report" / "classes").glob("0-*.html")).read_text()
    caption = _section(page, "<figcaption>Per optimisation step", "</figcaption>")
    assert "early-stop threshold on the batch accuracy (0.7)" in caption and "cross-entropy loss" in caption
    assert "target probability" not in caption

    from probe.report.curves import CurvePlotter

    hist = [{"step": s, "loss": 1 - s / 5, "accuracy": s / 5, "mean_target_prob": s / 6} for s in range(4)]
    p = CurvePlotter()
    margin = p.plot(hist, 2, 0.95, loss_title="margin loss", stop_metric="target_prob")
    assert p.ax_loss.get_title() == "margin loss" and p.legend.get_texts()[-1].get_text() == "stop P > 0.95"
    ce = p.plot(hist, 2, 0.95)
    assert p.ax_loss.get_title() == "cross-entropy loss" and p.legend.get_texts()[-1].get_text() == "stop acc > 0.95"
    assert ce != margin
    p.plot(hist, 2, 0.95, loss_title="$\\alpha$ injected")
    assert p.ax_loss.get_title() == "loss"  # only our own titles reach matplotlib


def test_an_unmoved_token_is_said_so_on_its_page_and_in_the_class_table(evil_run):
    _, run, index, _ = evil_run
    moved = {}
    for cdir in (run / "classes").iterdir():
        m = json.loads((cdir / "metrics.json").read_text())
        moved[m["class_index"]] = (m.get("token_change") or {}).get("moved")
    assert moved == {0: True, 1: False, 2: True, 3: True, 4: None}  # 4 failed
    notice = "token unchanged: the classifier already accepts the baseline images"
    for i, flag in moved.items():
        page = next((run / "report" / "classes").glob(f"{i}-*.html")).read_text()
        assert (notice in page) == (flag is False), i
        if flag is not None:
            m = json.loads(next((run / "classes").glob(f"{i}-*")).joinpath("metrics.json").read_text())
            block = _section(page, '<dl class="facts tc-facts">', "</dl>")
            assert f"<dd>{'yes' if flag else 'no'}</dd>" in block
            assert f"{m['token_change']['relative']:.3f}" in block and f"{m['token_change']['cosine']:.3f}" in block
            assert "cosine to the initial word" in block
        else:
            assert "tc-facts" not in page
    text = index.read_text()
    assert "token moved" in _section(text, 'id="classes"', "</thead>")
    rows = json.loads(re.search(r'id="class-data">(.*?)</script>', text, re.S).group(1))
    assert [r[7][0] for r in rows] == ["yes", "no", "yes", "yes", "–"]
    assert [r[7][1] for r in rows] == [1, 0, 1, 1, None]
    # the analysis notes, escaped, in the run section
    run_section = text.split('id="metadata"', 1)[1]
    assert "class 1: token unchanged (the classifier already accepts the baseline images)" in run_section
    assert "analysis notes" in run_section


def test_analysis_notes_are_escaped(tmp_path):
    run = make_synthetic_run(tmp_path / "run", 2, images_per_kind=1, attributions=False)
    a = json.loads((run / "analysis.json").read_text())
    a["notes"].append(f"class 0: cue {XSS} skipped")
    a["rule"] = f"A rule {XSS}"
    (run / "analysis.json").write_text(json.dumps(a))
    text = render_report(run).read_text()
    assert XSS not in text and "cue &lt;script&gt;alert(1)&lt;/script&gt; skipped" in text
    assert "A rule &lt;script&gt;" in text


def test_counters_dropped_per_class_are_listed(tmp_path):
    run = make_synthetic_run(tmp_path / "run", 2, images_per_kind=1, attributions=False)
    analysis = json.loads((run / "analysis.json").read_text())
    analysis["dropped_counters"] = {"star": ["on grass", "on water"], "circle": []}
    (run / "analysis.json").write_text(json.dumps(analysis))
    text = render_report(run).read_text()
    assert "star: on grass, on water" in text and "none was dropped" not in text
    # an audit of 1000 classes: the rule box names a dozen classes and counts the rest
    analysis["dropped_counters"] = {f"class {i}": ["on grass"] for i in range(1000)}
    (run / "analysis.json").write_text(json.dumps(analysis))
    text = render_report(run).read_text()
    assert text.count(": on grass</span>") == 12 and "and in 988 more classes" in text
    # keyed by class index (since 8 December 2026: two ImageNet classes are "crane"): the index and the class's name
    labels = json.loads((run / "labels.json").read_text())
    analysis.update(dropped_counters={"1": ["on snow"]}, dropped_counters_keyed_by="class index")
    (run / "analysis.json").write_text(json.dumps(analysis))
    assert f"1 {labels[1]}: on snow" in render_report(run).read_text()


def test_a_findings_generator_base_rate_is_shown_and_a_damaged_one_is_not(tmp_path):
    """The generator-bias control beside a finding: how often the generator draws the cue for the class's plain
    prompt; a base rate that does not add up (more shown than images) is left out, never printed."""
    run = make_synthetic_run(tmp_path / "run", 2, images_per_kind=1, attributions=False)
    findings = json.loads((run / "findings.json").read_text())
    cue_findings = [f for f in findings if f["kind"] != "off-object"]
    cue_findings[0]["details"]["base_rate"] = {"shown": 3, "of": 12}
    cue_findings[1]["details"]["base_rate"] = {"shown": 9, "of": 2}
    (run / "findings.json").write_text(json.dumps(findings))
    (run / "findings.parquet").unlink(missing_ok=True)
    page = (render_report(run).parent / "findings.html").read_text() + render_report(run).read_text()
    pages = page + "".join(p.read_text() for p in (run / "report" / "classes").glob("*.html"))
    assert "generator draws it for the plain prompt in 3 of 12 images" in pages
    assert "in 9 of 2 images" not in pages


def test_a_discovered_cue_is_told_apart_with_why_it_was_proposed_and_its_text_is_escaped(tmp_path):
    """A finding on a cue nobody listed carries details.proposed (probe/analysis/discovery.py): the report marks it
    discovered, with the group, the reason and the shift; a listed cue gets no mark; a damaged record is left out."""
    run = make_synthetic_run(tmp_path / "run", 2, images_per_kind=1, attributions=False)
    findings = json.loads((run / "findings.json").read_text())
    cue_findings = [f for f in findings if f["kind"] != "off-object"]
    cue_findings[0]["details"]["proposed"] = {"group": "backgrounds", "reason": "nearest word '<b>grass</b>'",
                                              "shift": 0.42, "z": 4.1, "r": 0.61, "t": 2.8}
    cue_findings[1]["details"]["proposed"] = {"group": 7, "reason": None, "shift": "x"}
    (run / "findings.json").write_text(json.dumps(findings))
    (run / "findings.parquet").unlink(missing_ok=True)
    index = render_report(run)
    page = index.read_text() + "".join(p.read_text() for p in (run / "report" / "classes").glob("*.html"))
    assert 'class="discovered"' in page
    assert ("discovered (backgrounds): nearest word &#39;&lt;b&gt;grass&lt;/b&gt;&#39;; shift +0.42 (z 4.1), "
            "r with P(class) +0.61 (t 2.8)") in page
    assert "<b>grass</b>" not in page
    table = (run / "report" / "findings.html").read_text()
    # the findings table tells discovered cues from listed ones (its first page and its data hold the row once each)
    assert table.count(f'{cue_findings[0]["cue"]} (discovered)') == 2 and table.count(" (discovered)") == 2


def test_a_passing_findings_card_says_whether_its_interval_or_only_its_estimate_clears_the_bar(tmp_path):
    """The class summary's strong/moderate on every passing finding's card: a finding whose whole interval clears the
    bar is *strong*, one whose estimate alone does is *moderate* (the demo's false star/snow, 0.08-0.44, was shown as
    plainly passing); a finding that does not pass gets neither word."""
    run = make_synthetic_run(tmp_path / "run", 2, images_per_kind=1, attributions=False)
    findings = json.loads((run / "findings.json").read_text())
    cue = [f for f in findings if f["kind"] not in ("off-object", "token-shift")]
    cue[0].update(passes=True, status="passes", effect=0.40, ci_low=0.25, ci_high=0.55, sentence="strong one")
    cue[1].update(passes=True, status="passes", effect=0.26, ci_low=0.08, ci_high=0.44, sentence="moderate one")
    for f in findings:
        if f not in cue[:2]:
            f.update(passes=False, status="weak")
    (run / "findings.json").write_text(json.dumps(findings))
    (run / "findings.parquet").unlink(missing_ok=True)
    page = render_report(run).read_text()
    cards = re.findall(r'<li class="finding.*?</li>', page, re.S)
    strong = next(c for c in cards if "strong one" in c)
    moderate = next(c for c in cards if "moderate one" in c)
    assert 'class="bar-strength bs-strong"' in strong and "bs-moderate" not in strong
    assert 'class="bar-strength bs-moderate"' in moderate and "bs-strong" not in moderate
    # the overview lists passing findings only; the class pages list the others too, and those carry no strength
    others = [c for p in (run / "report" / "classes").glob("*.html")
              for c in re.findall(r'<li class="finding.*?</li>', p.read_text(), re.S)
              if "strong one" not in c and "moderate one" not in c]
    assert others and all("bar-strength" not in c for c in others)
    # the overview's card counts them apart, so a reader sees at once how many passing findings are claims and how
    # many are leads
    card = re.search(r'<div class="card findings-card">.*?</div></div>', page, re.S).group(0)
    assert re.search(r'<span class="strengths"[^>]*>1 strong · 1 moderate</span>', card), card
