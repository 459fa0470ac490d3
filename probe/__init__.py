"""probe: audit what an image classifier has learned with discriminative class tokens."""

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

__all__ = [
    "ProbeError",
    "ClassifierError",
    "LabelsError",
    "GeneratorError",
    "DeviceError",
    "TokenError",
    "RunError",
    "__version__",
]
