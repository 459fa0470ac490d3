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


class AnalysisError(ProbeError):
    """An analysis input (run directory, cue list, setting, model output) is unusable."""


class RunError(ProbeError):
    """The run directory is unusable (wrong config for resume, unreadable artifacts)."""


def settings_from_dict(cls, data, what: str, error: type[ProbeError] = ProbeError):
    """The one policy every typed settings class (AuditConfig, TokenConfig, AnalysisConfig, GateConfig, ScaleConfig)
    reads a dict with, from config.json, a Ray worker's wire or a notebook: a JSON object whose keys are all fields
    of ``cls`` and hold every field without a default; anything else is one ``error`` naming the unknown or missing
    keys. Returns the checked dict (a copy)."""
    import dataclasses

    if data is not None and not isinstance(data, dict):
        raise error(f"{what} must be a JSON object of settings, not {type(data).__name__}")
    data = dict(data or {})
    fields = dataclasses.fields(cls)
    known = {f.name for f in fields}
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        raise error(f"{what}: unknown setting(s) {', '.join(unknown)}; the known ones are {', '.join(sorted(known))}")
    missing = [f.name for f in fields if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise error(f"{what}: {', '.join(missing)} missing; a saved settings object holds every required setting")
    return data
