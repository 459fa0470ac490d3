"""Progress: rich bars for the audit (classes with ETA, the current class's step, loss and accuracy)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from probe.display import terminal_safe


def quiet_hf_libraries() -> None:
    """probe draws its own progress; transformers' and diffusers' loading bars and notices would drown it (and
    "Loading weights: 100%" printed under ``--quiet``). One switch for the classifier, generator and concept loaders."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        import diffusers
    except ImportError:  # pragma: no cover - diffusers is a dependency; the classifier loaders do without it
        return
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def warn(console: Console | None, message: str) -> None:
    """One warning line; the message may carry run paths and labels, so control characters are made visible."""
    (console or Console(stderr=True)).print("[yellow]warning:[/yellow] " + escape(terminal_safe(message)), highlight=False,
                                           markup=True, soft_wrap=True)


class AuditProgress:
    """Two bars: classes done / total with ETA, and the current class's optimisation steps."""

    def __init__(self, total: int, done: int, max_steps: int, console: Console | None = None, enabled: bool = True,
                 workers: str = ""):
        self.enabled = enabled
        self.workers = workers  # "2 Ray workers": the classes bar says who works on them
        self.failed = 0
        self.console = console or Console(stderr=True)
        self.max_steps = max_steps
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("eta"), TimeRemainingColumn(), console=self.console, disable=not enabled, transient=False,
        )
        self._total, self._done = total, done

    def __enter__(self):
        self.progress.__enter__()
        self.classes = self.progress.add_task(self._classes_label(), total=self._total, completed=self._done)
        self.steps = self.progress.add_task("", total=self.max_steps, visible=False)
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start_class(self, index: int, name: str) -> None:
        self._label = escape(terminal_safe(f"class {index} {name[:30]}"))  # untrusted: no markup, no escape codes
        self.progress.reset(self.steps, total=self.max_steps, visible=True, description=self._label)

    def in_flight(self, running: list[tuple[int, str]]) -> None:
        """Several workers at once (Ray): the second bar names the classes in flight instead of one class's steps."""
        names = ", ".join(escape(terminal_safe(f"{i} {n[:20]}")) for i, n in running[:6]) + (" ..." if len(running) > 6 else "")
        self.progress.update(self.steps, total=None, completed=0, visible=bool(running), description=f"running: {names}")

    def note(self, message: str) -> None:
        """One line above the bars (a lost worker, a retry)."""
        if self.enabled:
            self.progress.console.print("[yellow]" + escape(terminal_safe(message)) + "[/yellow]", markup=True,
                                        highlight=False)

    def step(self, record: dict) -> None:
        self.progress.update(self.steps, advance=1, description=(
            f"{self._label} loss {record['loss']:.3f} acc {record['accuracy']:.2f}"))

    def _classes_label(self) -> str:
        parts = ["classes"] + ([escape(self.workers)] if self.workers else []) + \
            ([f"[red]{self.failed} failed[/red]"] if self.failed else [])
        return " · ".join(parts)

    def finish_metrics(self, metrics: dict) -> None:
        """``finish_class`` from a class's metrics.json content (done or failed)."""
        name = str(metrics.get("class_name") or "")
        if metrics.get("status") == "done":
            detail = f"{metrics['baseline']['accuracy']:.2f} -> {metrics['token']['accuracy']:.2f}"
            self.finish_class(metrics["class_index"], name, ok=True, detail=detail)
        else:
            self.finish_class(metrics["class_index"], name, ok=False, detail=str(metrics.get("error") or "")[:120])

    def finish_class(self, index: int, name: str, ok: bool, detail: str = "") -> None:
        self.progress.update(self.steps, visible=False)
        if not ok:
            self.failed += 1
        self.progress.update(self.classes, advance=1, description=self._classes_label())
        if self.enabled:
            mark = "[green]done[/green]" if ok else "[red]failed[/red]"
            self.progress.console.print(f"{mark} " + escape(terminal_safe(f"class {index} {name!r}: {detail}")), markup=True,
                                        highlight=False)
