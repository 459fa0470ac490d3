"""The report in a real browser: headless Debian Chromium driven by Selenium.

Needs ``apt-get install -y chromium chromium-driver`` (driver at /usr/bin/chromedriver).
Screenshots go to test-artifacts/ (git-ignored) for a human to look at.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from probe.report import render_report
from probe.report.synthetic import make_synthetic_run

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("PROBE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PROBE_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def driver():
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()) or not Path(CHROMEDRIVER).is_file():
        pytest.skip(f"headless Chromium not installed ({CHROMIUM}, {CHROMEDRIVER}); "
                    "apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which(CHROMIUM) or CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1000", "--hide-scrollbars", "--disable-extensions"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    run = make_synthetic_run(root / "run", 8, labels=[XSS, "../../x", "star", "circle", "square", "triangle",
                                                      "hexagon", "ring"], failed=[5], incomplete=[7],
                             images_per_kind=4, image_size=96)
    return run, render_report(run), render_report(run, single_file=True)


def severe_logs(d) -> list[dict]:
    return [e for e in d.get_log("browser") if e["level"] == "SEVERE"]


def wait_images(d, timeout=10.0, some: bool = True):
    """Load every <img> that is not hidden (lazy ones too) and return those that failed to decode; ``some``: the
    page must show at least one (a synthetic run's index has no finding evidence, so it shows none)."""
    d.execute_script("document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; });")
    js = """return Array.from(document.images).filter(i => i.offsetParent !== null || i.getClientRects().length)
              .map(i => [i.currentSrc || i.src, i.complete, i.naturalWidth]);"""
    deadline = time.time() + timeout
    while True:
        imgs = d.execute_script(js)
        if all(c for _, c, _ in imgs) or time.time() > deadline:
            break
        time.sleep(0.1)
    assert imgs or not some, "no visible images on the page"
    return [src[:120] for src, complete, w in imgs if not complete or w == 0]


def broken_links(d) -> list[str]:
    hrefs = d.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href);")
    bad = []
    for h in hrefs:
        u = urlparse(h)
        if u.scheme != "file":
            bad.append(h)  # the report is offline: no http(s) links at all
        elif not Path(unquote(u.path)).is_file():
            bad.append(h)
    return bad


def test_index_class_page_and_overlay_in_chromium(driver, report):
    from selenium.webdriver.common.by import By

    run, index, _ = report
    ARTIFACTS.mkdir(exist_ok=True)
    driver.get(index.as_uri())
    assert "probe audit report" in driver.title
    assert severe_logs(driver) == []
    assert wait_images(driver, some=False) == []
    assert broken_links(driver) == []
    # JS took over the class table: 8 rows, sorting by token accuracy puts failed/incomplete (no value) last
    rows = driver.find_elements(By.CSS_SELECTOR, "#classes tbody tr")
    assert len(rows) == 8
    th = driver.find_elements(By.CSS_SELECTOR, "#classes thead th")[4]
    th.find_element(By.TAG_NAME, "button").click()
    assert th.get_attribute("aria-sort") == "descending"
    statuses = [r.find_elements(By.TAG_NAME, "td")[2].text for r in driver.find_elements(By.CSS_SELECTOR, "#classes tbody tr")]
    assert statuses[-2:] and set(statuses[-2:]) == {"failed", "incomplete"}
    # the XSS label is displayed as text, never executed
    names = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#classes td.name a")]
    assert XSS in names
    driver.find_element(By.CSS_SELECTOR, ".dt-filter").send_keys("star")
    assert [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#classes td.name a")] == ["star"]
    driver.save_screenshot(str(ARTIFACTS / "report-index.png"))

    # click through to a class page
    driver.find_element(By.LINK_TEXT, "star").click()
    assert driver.current_url.endswith("/classes/2-star.html")
    assert "star" in driver.find_element(By.TAG_NAME, "h1").text
    assert severe_logs(driver) == []
    assert wait_images(driver) == []
    assert broken_links(driver) == []
    driver.save_screenshot(str(ARTIFACTS / "report-class.png"))

    # toggle an attribution overlay on, then off
    overlays = driver.find_elements(By.CSS_SELECTOR, "img.ov")
    assert overlays and not any(o.is_displayed() for o in overlays)
    btn = driver.find_element(By.XPATH, "//div[@class='overlay-tools']/button[normalize-space()='grad cam']")
    btn.click()
    assert btn.get_attribute("aria-pressed") == "true"
    mid = btn.get_attribute("data-m")
    shown = [o for o in overlays if o.is_displayed()]
    assert shown and all(o.get_attribute("data-m") == mid for o in shown)
    assert len(shown) == 8  # 4 baseline + 4 token images
    assert wait_images(driver) == []
    driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.CSS_SELECTOR, ".galleries"))
    driver.save_screenshot(str(ARTIFACTS / "report-class-overlay.png"))
    driver.find_element(By.XPATH, "//div[@class='overlay-tools']/button[normalize-space()='none']").click()
    assert not any(o.is_displayed() for o in overlays)

    # a failed class shows its error
    driver.get(next((index.parent / "classes").glob("5-*.html")).as_uri())
    assert "loss became NaN" in driver.find_element(By.CSS_SELECTOR, ".notice.error").text
    assert severe_logs(driver) == []


def test_single_file_report_in_chromium(driver, report):
    from selenium.webdriver.common.by import By

    _, _, single = report
    driver.get(single.as_uri())
    assert severe_logs(driver) == []
    home = driver.find_element(By.ID, "top")
    assert home.is_displayed() and not driver.find_element(By.ID, "c2").is_displayed()
    assert wait_images(driver, some=False) == []
    driver.find_element(By.LINK_TEXT, "star").click()
    assert driver.current_url.endswith("#c2")
    assert driver.find_element(By.ID, "c2").is_displayed() and not home.is_displayed()
    assert wait_images(driver) == []
    page = driver.find_element(By.ID, "c2")
    # the section wrappers must not inherit subtitle styles: headings look as in the multi-page report
    h2 = page.find_element(By.TAG_NAME, "h2")
    assert driver.execute_script("const s = getComputedStyle(arguments[0]); return [s.color, s.fontSize];", h2) == [
        "rgb(28, 34, 48)", "17px"]
    page.find_element(By.XPATH, ".//button[normalize-space()='occlusion']").click()
    assert any(o.is_displayed() for o in page.find_elements(By.CSS_SELECTOR, "img.ov"))
    assert wait_images(driver) == []
    assert severe_logs(driver) == []
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "report-single-file.png"))


def _table_rows(d) -> list[list[str]]:
    return [[td.text for td in tr.find_elements("tag name", "td")]
            for tr in d.find_elements("css selector", ".findings-page .dtable tbody tr")]


def test_findings_page_filters_by_kind_and_sorts_by_q_in_chromium(driver, report):
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from probe.run.format import effect as fmt_effect, pq as fmt_p

    run, index, _ = report
    findings = json.loads((run / "findings.json").read_text())
    driver.get((index.parent / "findings.html").as_uri())
    assert severe_logs(driver) == []
    assert len(_table_rows(driver)) == len(findings)
    heads = [th.text for th in driver.find_elements(By.CSS_SELECTOR, ".findings-page thead th")]
    col = {h: i for i, h in enumerate(heads)}
    assert {"kind", "class", "cue", "effect", "p", "q", "status"} <= set(col)

    # the kind filter: only that kind's rows remain, and the count says so
    kind = Select(driver.find_element(By.CSS_SELECTOR, "select.dt-facet[data-facet=kind]"))
    offered = [o.get_attribute("value") for o in kind.options][1:]
    assert len(offered) >= 2
    for k in offered:
        kind.select_by_value(k)
        rows = _table_rows(driver)
        expected = [f for f in findings if f["kind"] == k]
        assert rows and len(rows) == len(expected)
        assert {r[col["kind"]] for r in rows} == {k}
        assert driver.find_element(By.CSS_SELECTOR, ".findings-page .dt-count").text == \
            f"{len(expected)} of {len(findings)} rows"
    # kind and class together
    k = offered[0]
    kind.select_by_value(k)
    cls = Select(driver.find_element(By.CSS_SELECTOR, "select.dt-facet[data-facet=class]"))
    ci = next(f["class_index"] for f in findings if f["kind"] == k)
    cls.select_by_value(str(ci))
    rows = _table_rows(driver)
    assert len(rows) == sum(f["kind"] == k and f["class_index"] == ci for f in findings)
    kind.select_by_value("")
    cls.select_by_value("")
    assert len(_table_rows(driver)) == len(findings)

    # sorting by q: smallest first, findings without a q (never confirmed) last
    qh = driver.find_elements(By.CSS_SELECTOR, ".findings-page thead th")[col["q"]]
    qh.find_element(By.TAG_NAME, "button").click()
    assert qh.get_attribute("aria-sort") == "ascending"
    qs = sorted((f["q"] for f in findings), key=lambda q: (q is None, q or 0))
    assert any(q is None for q in qs) and any(q is not None for q in qs)
    assert [r[col["q"]] for r in _table_rows(driver)] == [fmt_p(q) for q in qs]
    qh.find_element(By.TAG_NAME, "button").click()
    assert qh.get_attribute("aria-sort") == "descending"
    desc = sorted((f["q"] for f in findings if f["q"] is not None), reverse=True) + [None] * qs.count(None)
    assert [r[col["q"]] for r in _table_rows(driver)] == [fmt_p(q) for q in desc]
    # and by effect, numerically (largest first)
    eh = driver.find_elements(By.CSS_SELECTOR, ".findings-page thead th")[col["effect"]]
    eh.find_element(By.TAG_NAME, "button").click()
    effects = sorted((f["effect"] for f in findings), reverse=True)
    assert [r[col["effect"]] for r in _table_rows(driver)] == [fmt_effect(e) for e in effects]  # the one formatter
    assert severe_logs(driver) == []
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "report-findings.png"))


def test_content_security_policy_blocks_an_injected_inline_script(driver, report):
    """Defence in depth: were a label ever rendered unescaped, the page's CSP still refuses to run it."""
    run, index, _ = report
    page = next((index.parent / "classes").glob("2-*.html"))
    tampered = page.with_name("tampered.html")
    html = page.read_text(encoding="utf-8")
    tampered.write_text(html.replace("<main>", "<main><script>document.title = 'pwned';</script>", 1), encoding="utf-8")
    try:
        driver.get(tampered.as_uri())
        assert driver.title != "pwned"
        # our own script file still runs under the same policy: the overlay buttons work
        from selenium.webdriver.common.by import By

        btn = driver.find_element(By.XPATH, "//div[@class='overlay-tools']/button[normalize-space()='occlusion']")
        btn.click()
        assert btn.get_attribute("aria-pressed") == "true"
        logs = severe_logs(driver)
        assert logs and all("Content Security Policy" in e["message"] for e in logs)
    finally:
        tampered.unlink()


def test_the_readme_demo_report_after_a_move_in_chromium(driver, readme_demo, tmp_path):
    """The newcomer's path: the README's `probe demo` report, moved elsewhere, opens with every image and overlay."""
    from selenium.webdriver.common.by import By

    original, moved = tmp_path / "original" / "demo", tmp_path / "copied" / "demo"
    shutil.copytree(readme_demo / "runs" / "demo", original)  # the shared run itself is never changed
    shutil.copytree(original, moved)
    shutil.rmtree(original / "report")  # nothing may point back at the original
    driver.get((moved / "report" / "index.html").as_uri())
    assert "probe audit report" in driver.title
    assert severe_logs(driver) == []
    assert wait_images(driver) == []
    assert broken_links(driver) == []
    driver.get((moved / "report" / "classes" / "3-star.html").as_uri())
    assert severe_logs(driver) == []
    assert wait_images(driver) == []
    buttons = driver.find_elements(By.CSS_SELECTOR, "div.overlay-tools button[data-m^=m]")
    assert buttons, "the README demo's class page has no attribution overlays"
    buttons[0].click()
    shown = [o for o in driver.find_elements(By.CSS_SELECTOR, "img.ov") if o.is_displayed()]
    assert shown and wait_images(driver) == []
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "readme-demo-star.png"))
