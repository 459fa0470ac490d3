"""Optimisation curves (history.csv) drawn with matplotlib's Agg backend.

One Figure, its axes and its line artists are built once and reused for every
class (only the data changes): building a figure with ``tight_layout`` costs
about ten times more than drawing it, and a 1000-class report draws 1000.
"""

from __future__ import annotations

import io

__all__ = ["CurvePlotter"]


class CurvePlotter:
    """``plot(history, best_step, threshold) -> (png_bytes, width, height)``."""

    def __init__(self, width_in: float = 6.4, height_in: float = 2.4, dpi: int = 100):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        self.dpi = dpi
        fig = self.fig = Figure(figsize=(width_in, height_in), dpi=dpi)
        FigureCanvasAgg(fig)
        self.ax_loss, self.ax_acc = fig.subplots(1, 2)
        fig.subplots_adjust(left=0.075, right=0.985, bottom=0.19, top=0.89, wspace=0.2)
        (self.loss,) = self.ax_loss.plot([], [], color="#b4432f", lw=1.6, marker="o", ms=3)
        (self.acc,) = self.ax_acc.plot([], [], color="#2a6fb0", lw=1.6, marker="o", ms=3, label="batch accuracy")
        (self.prob,) = self.ax_acc.plot([], [], color="#3f9b5a", lw=1.4, ls="--", label="mean P(target)")
        self.thr = self.ax_acc.axhline(0.5, color="#888", lw=0.9, ls=":", label="stop threshold")
        self.best = [ax.axvline(0, color="#c9a227", lw=1.0) for ax in (self.ax_loss, self.ax_acc)]
        self.ax_loss.set_title("cross-entropy loss", fontsize=9)
        self.ax_acc.set_title("accuracy and mean target probability", fontsize=9)
        self.ax_acc.set_ylim(-0.03, 1.03)
        for ax in (self.ax_loss, self.ax_acc):
            ax.set_xlabel("step", fontsize=8, labelpad=2)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.25, lw=0.6)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
        self.legend = self.ax_acc.legend(fontsize=7, frameon=False, loc="lower right")

    def plot(self, history: list[dict], best_step: float | None = None, threshold: float | None = None):
        steps = [r.get("step") for r in history]
        if any(s is None for s in steps):
            steps = list(range(len(history)))

        def series(key):
            pts = [(s, r[key]) for s, r in zip(steps, history) if r.get(key) is not None]
            return [p[0] for p in pts], [p[1] for p in pts]

        dense = len(steps) >= 30
        for line, key in ((self.loss, "loss"), (self.acc, "accuracy"), (self.prob, "mean_target_prob")):
            line.set_data(*series(key))
        for line in (self.loss, self.acc):
            line.set_marker("" if dense else "o")
        self.thr.set_visible(threshold is not None)
        if threshold is not None:
            self.thr.set_ydata([threshold, threshold])
            self.thr.set_label(f"stop at {threshold:g}")
        for line in self.best:
            line.set_visible(best_step is not None)
            if best_step is not None:
                line.set_xdata([best_step, best_step])
        lo, hi = (min(steps), max(steps)) if steps else (0, 1)
        pad = max(0.5, (hi - lo) * 0.03)
        self.ax_loss.relim(visible_only=True)
        self.ax_loss.autoscale_view(scalex=False)
        for ax in (self.ax_loss, self.ax_acc):
            ax.set_xlim(lo - pad, hi + pad)
        self.legend.get_texts()[-1].set_text(self.thr.get_label() if threshold is not None else "")
        self.legend.legend_handles[-1].set_visible(threshold is not None)
        buf = io.BytesIO()
        self.fig.savefig(buf, format="png", dpi=self.dpi, pil_kwargs={"compress_level": 3})
        w, h = self.fig.canvas.get_width_height()
        return buf.getvalue(), int(w), int(h)
