"""One error family for everything probe reports to a user.

Every message is one line that names the problem (the argument and its value)
and the fix to try next. The CLI prints ``str(error)`` alone; set
``PROBE_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations


class ProbeError(Exception):
    """Base class: a problem with the user's input or environment, explained in one line."""


class ClassifierError(ProbeError):
    """The classifier file, its format, architecture or outputs are unusable."""


class LabelsError(ProbeError):
    """The labels file or the class selection does not fit the classifier."""


class GeneratorError(ProbeError):
    """The diffusion model cannot be found, loaded or run."""


class DeviceError(ProbeError):
    """The requested device (cuda, mps) is not available."""


class TokenError(ProbeError):
    """Optimising or loading a class token failed (e.g. the loss became NaN)."""


class RunError(ProbeError):
    """The run directory is unusable (wrong config for resume, unreadable artifacts)."""
