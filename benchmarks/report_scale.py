"""How long the report takes, and how big it is, for a 1000-class run.

    .venv/bin/python benchmarks/report_scale.py [--classes 1000] [--images 4] [--size 64] [--keep DIR]

Builds a synthetic run directory in the documented format (probe.report.synthetic),
renders the multi-page report twice (cold, then a re-render that reuses thumbnails
and curves) and the single-file export, and prints time and size of each.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from probe.report import render_report
from probe.report.synthetic import make_synthetic_run


def du(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files), len(files)


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def browser_open_ms(page: Path) -> float:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        times = []
        for _ in range(3):
            d.get(page.as_uri())
            times.append(d.execute_script(
                "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;"))
        return sorted(times)[1]
    finally:
        d.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--images", type=int, default=4, help="evaluation images per kind (baseline/token) and class")
    ap.add_argument("--size", type=int, default=64, help="generated image side in pixels (512 for real SD)")
    ap.add_argument("--no-single", action="store_true", help="skip the single-file export")
    ap.add_argument("--keep", type=Path, default=None, help="build the run here and keep it")
    ap.add_argument("--browser", action="store_true", help="also time opening index.html in headless Chromium")
    a = ap.parse_args()

    tmp = None if a.keep else Path(tempfile.mkdtemp(prefix="probe-report-scale-"))
    run = (a.keep or tmp) / "run"
    try:
        t = time.perf_counter()
        make_synthetic_run(run, a.classes, images_per_kind=a.images, image_size=a.size, failed=[3 % a.classes, a.classes // 2])
        run_bytes, run_files = du(run)
        print(f"synthetic run: {a.classes} classes x {2 * a.images} images of {a.size}px, "
              f"{run_files} files, {mb(run_bytes)}, built in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        index = render_report(run)
        cold = time.perf_counter() - t
        rep_bytes, rep_files = du(run / "report")
        t = time.perf_counter()
        render_report(run)
        warm = time.perf_counter() - t
        print(f"multi-page report: cold render {cold:.1f} s, re-render {warm:.1f} s; "
              f"{rep_files} files, {mb(rep_bytes)} in all")
        print(f"  index.html {index.stat().st_size / 1e3:.0f} kB, findings.html "
              f"{(run / 'report' / 'findings.html').stat().st_size / 1e3:.0f} kB, one class page "
              f"{next((run / 'report' / 'classes').glob('1-*.html')).stat().st_size / 1e3:.0f} kB")
        if a.browser:
            print(f"  index.html in headless Chromium: {browser_open_ms(index):.0f} ms to load "
                  "(navigation start -> load event, table built by JS)")
        if not a.no_single:
            t = time.perf_counter()
            single = render_report(run, single_file=True)
            print(f"single-file export: {time.perf_counter() - t:.1f} s, {mb(single.stat().st_size)}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
