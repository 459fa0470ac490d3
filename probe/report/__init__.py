"""The HTML report: ``render_report(run_dir)`` turns a run directory's saved
artifacts into an offline report (no models, no network).

>>> from probe.report import render_report
>>> render_report("runs/demo")            # runs/demo/report/index.html
>>> render_report("runs/demo", single_file=True)   # one self-contained HTML file
"""

from probe.report.data import ClassData, RunData, load_run, rank_findings
from probe.report.render import ReportError, render_report, template_dir
from probe.report.slug import slugify

__all__ = [
    "render_report",
    "ReportError",
    "load_run",
    "RunData",
    "ClassData",
    "rank_findings",
    "slugify",
    "template_dir",
]
