"""The analysis seam's error (a ProbeError like every other user-facing error)."""

from __future__ import annotations

from probe.errors import ProbeError


class AnalysisError(ProbeError):
    """An analysis input (run directory, cue list, setting, model output) is unusable."""
