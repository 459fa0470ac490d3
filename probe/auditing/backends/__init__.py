"""Backends: who runs the classes of an audit. A registry, looked up by ``--backend`` (``ScaleConfig.backend``).

Every backend is constructed with the run's settings and what it may reuse, and has one verb:
``backend.run(todo, bar) -> interrupted`` runs the class indices in ``todo`` through
``probe.auditing.class_run.run_class``, writes summary.csv as classes finish and reports to ``bar``
(probe.progress.AuditProgress). The local backend is defined here; others are imported only when asked for,
so that a missing optional dependency (Ray) costs nothing until it is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from probe.auditing.class_run import run_class
from probe.errors import RunError

__all__ = ["Models", "LocalBackend", "BACKENDS", "get_backend", "finish"]


@dataclass
class Models:
    """The models the driver loaded: the local backend runs on them; the Ray backend's workers load their own."""

    classifier: object
    generator: object
    eval_classifier: object | None = None


class LocalBackend:
    """The classes in turn, in this process, with the step bar of the class being learned."""

    def __init__(self, config, token_config, run, labels: list[str], models: Models):
        self.config, self.token_config, self.run_dir, self.labels, self.models = config, token_config, run, labels, models

    def run(self, todo: list[int], bar) -> bool:
        m = self.models
        for index in todo:
            bar.start_class(index, self.labels[index])
            try:
                metrics = run_class(self.run_dir, self.config, self.token_config, m.classifier, m.generator,
                                    m.eval_classifier, index, self.labels[index], on_step=bar.step)
            except KeyboardInterrupt:
                return True
            finally:
                self.run_dir.write_summary()
            finish(bar, index, self.labels[index], metrics)
        return False


def finish(bar, index: int, label: str, metrics: dict | None) -> None:
    """Report a class to the progress bars: its result, or (None) that another process holds its claim."""
    if metrics is None:
        bar.note(f"class {index} {label!r} is being written by another probe process; left to it")
    else:
        bar.finish_metrics(metrics)


#: name -> the backend class, or "module:Class" imported on first use
BACKENDS: dict[str, object] = {"local": LocalBackend, "ray": "probe.auditing.backends.ray:RayBackend"}


def get_backend(name: str):
    """The backend class registered as ``name``."""
    entry = BACKENDS.get(name)
    if entry is None:
        raise RunError(f"--backend {name!r} is unknown; use one of {', '.join(BACKENDS)}")
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(import_module(module), attr)
    return entry
