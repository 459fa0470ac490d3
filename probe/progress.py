"""Progress: rich bars for the audit (classes with ETA, the current class's step, loss and accuracy)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def warn(console: Console | None, message: str) -> None:
    (console or Console(stderr=True)).print("[yellow]warning:[/yellow] " + escape(message), highlight=False, markup=True)


class AuditProgress:
    """Two bars: classes done / total with ETA, and the current class's optimisation steps."""

    def __init__(self, total: int, done: int, max_steps: int, console: Console | None = None, enabled: bool = True):
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.max_steps = max_steps
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), console=self.console, disable=not enabled, transient=False,
        )
        self._total, self._done = total, done

    def __enter__(self):
        self.progress.__enter__()
        self.classes = self.progress.add_task("classes", total=self._total, completed=self._done)
        self.steps = self.progress.add_task("", total=self.max_steps, visible=False)
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start_class(self, index: int, name: str) -> None:
        self._label = escape(f"class {index} {name[:30]}")  # labels are untrusted: no rich markup
        self.progress.reset(self.steps, total=self.max_steps, visible=True, description=self._label)

    def step(self, record: dict) -> None:
        self.progress.update(self.steps, advance=1, description=(
            f"{self._label} loss {record['loss']:.3f} acc {record['accuracy']:.2f}"))

    def finish_class(self, index: int, name: str, ok: bool, detail: str = "") -> None:
        self.progress.update(self.steps, visible=False)
        self.progress.advance(self.classes)
        if self.enabled:
            mark = "[green]done[/green]" if ok else "[red]failed[/red]"
            self.progress.console.print(f"{mark} " + escape(f"class {index} {name!r}: {detail}"), markup=True, highlight=False)
