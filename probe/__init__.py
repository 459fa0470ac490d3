"""probe: audit what an image classifier has learned with discriminative class tokens.

The public API is imported lazily, so ``import probe`` and ``probe --help`` stay fast; the
heavy libraries (torch, diffusers, transformers) load on first use.
"""

from __future__ import annotations


from probe.errors import (
    ClassifierError,
    DeviceError,
    GeneratorError,
    LabelsError,
    ProbeError,
    RunError,
    TokenError,
)

__version__ = "0.1.0"

from probe.lazy import lazy_attributes

_LAZY = {
    "load_classifier": "probe.classifiers",
    "Classifier": "probe.classifiers",
    "DataConfig": "probe.classifiers",
    "select_classes": "probe.classifiers",
    "load_labels": "probe.classifiers",
    "load_generator": "probe.generators",
    "Generator": "probe.generators",
    "DEFAULT_GENERATOR": "probe.generators",
    "optimize_class_token": "probe.tokens",
    "evaluate_class_token": "probe.tokens",
    "TokenConfig": "probe.token_config",
    "ClassToken": "probe.tokens",
    "audit": "probe.auditing.loop",
    "AuditConfig": "probe.auditing.config",
    "AuditResult": "probe.auditing.loop",
    "analyze_run": "probe.analysis",
    "render_report": "probe.report",
    "compare": "probe.comparison",
    "check_run": "probe.gate",
    "CheckResult": "probe.gate",
    "GateConfig": "probe.gate",
    "generate_dataset": "probe.generate",
    "GenerateConfig": "probe.generate",
    "open_run": "probe.explore",
    "Run": "probe.explore",
    "Audit": "probe.explore",
    "AuditedRun": "probe.explore",
}

__all__ = [
    "ProbeError", "ClassifierError", "LabelsError", "GeneratorError", "DeviceError", "TokenError", "RunError",
    "__version__", *_LAZY,
]


__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__():
    return sorted(__all__)
