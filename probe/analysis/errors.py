"""The analysis seam's error (a ProbeError like every other user-facing error), defined with the others in
probe.errors so that the run records (probe.run.types) can raise it without importing the analysis."""

from __future__ import annotations

from probe.errors import AnalysisError

__all__ = ["AnalysisError"]
