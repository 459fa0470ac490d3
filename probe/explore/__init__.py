"""Investigate runs from Python and Jupyter: a run as an object, an audit as an object, ad-hoc cue tests.

    run = probe.open_run("runs/demo")       # no models needed; displays itself
    run.summary, run.findings                # pandas DataFrames
    run.classes["star"].gallery(overlay="integrated_gradients")
    audit = probe.Audit(classifier, generator)
    result = audit.run(classes=["star"], out="runs/nb")
    result.test_cue("star", "on grass")      # the audit's procedure and statistics for one hypothesis
"""

from probe.explore.audit import Audit, AuditedRun
from probe.explore.run import ClassView, Gallery, Run, open_run

__all__ = ["Audit", "AuditedRun", "ClassView", "Gallery", "Run", "open_run"]
