"""Optimisation curves (history.csv) drawn with matplotlib's Agg backend.

A 1000-class report draws 1000 of these, and a full matplotlib draw (ticks,
text layout) costs ~40-90 ms. So axis limits are snapped to "nice" buckets
(x: 0..10/20/50/100.. steps, loss: 0..1/2/2.5/5..), the static part of the
figure (axes, ticks, titles, legend, threshold) is drawn once per bucket, and
each class only blits its lines onto a copy of that background (a few ms).
Snapped limits also make curves of different classes comparable at a glance.
"""

from __future__ import annotations

import io
import math

__all__ = ["CurvePlotter", "nice_ceiling", "FINE", "COARSE", "LOSS_TITLES", "STOP_LABELS"]


FINE = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
COARSE = (1.0, 2.0, 5.0, 10.0)


def nice_ceiling(x: float, ladder: tuple[float, ...] = FINE) -> float:
    """Smallest ``m x 10^k`` (m from ``ladder``) that is >= x (x > 0)."""
    if not x > 0 or not math.isfinite(x):
        return 1.0
    k = math.floor(math.log10(x))
    for m in ladder:
        v = m * 10.0**k
        if v >= x * (1 - 1e-9):
            return v
    return 10.0 ** (k + 1)


LOSS_TITLES = {"cross_entropy": "cross-entropy loss", "margin": "margin loss"}
STOP_LABELS = {"accuracy": "acc", "target_prob": "P"}  # short: the legend has little room


class CurvePlotter:
    """``plot(history, best_step, threshold, loss_title=..., stop_metric=...) -> (png_bytes, width, height)``.

    ``loss_title`` names the objective the loss curve shows; ``stop_metric`` ("accuracy" or
    "target_prob") names what the dotted early-stop threshold applies to in the legend.
    """

    STYLE = 5  # bump when the drawing changes: cached curve PNGs are keyed on it

    def __init__(self, width_in: float = 6.4, height_in: float = 2.4, dpi: int = 100):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        self.dpi = dpi
        fig = self.fig = Figure(figsize=(width_in, height_in), dpi=dpi)
        self.canvas = FigureCanvasAgg(fig)
        self.ax_loss, self.ax_acc = fig.subplots(1, 2)
        fig.subplots_adjust(left=0.075, right=0.985, bottom=0.19, top=0.89, wspace=0.2)
        (self.loss,) = self.ax_loss.plot([], [], color="#b4432f", lw=1.6, marker="o", ms=3)
        (self.acc,) = self.ax_acc.plot([], [], color="#2a6fb0", lw=1.6, marker="o", ms=3, label="accuracy")
        (self.prob,) = self.ax_acc.plot([], [], color="#3f9b5a", lw=1.4, ls="--", label="mean P(target)")
        self.thr = self.ax_acc.axhline(0.5, color="#888", lw=0.9, ls=":", label="stop threshold")
        self.best = [ax.axvline(0, color="#c9a227", lw=1.2) for ax in (self.ax_loss, self.ax_acc)]
        self.ax_loss.set_title(LOSS_TITLES["cross_entropy"], fontsize=9)
        # the legend sits above the axes, where no curve can run through it (lines are blitted on top)
        self.ax_acc.set_ylim(-0.03, 1.03)
        for ax in (self.ax_loss, self.ax_acc):
            ax.set_xlabel("step", fontsize=8, labelpad=2)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.25, lw=0.6)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
        self.legend = self.ax_acc.legend(fontsize=7, frameon=False, loc="lower center", ncol=3,
                                         bbox_to_anchor=(0.5, 0.99), borderaxespad=0.2, handlelength=1.5,
                                         columnspacing=0.8, handletextpad=0.5)
        self.dynamic = [self.loss, self.acc, self.prob, *self.best]
        for a in self.dynamic:
            a.set_animated(True)  # left out of full draws; blitted per class
        self._backgrounds: dict[tuple, object] = {}

    def _background(self, key: tuple):
        x_hi, loss_lo, loss_hi, threshold, loss_title, stop_metric = key
        pad = max(0.5, x_hi * 0.02)
        for ax in (self.ax_loss, self.ax_acc):  # limits set every time: the blitted lines use them
            ax.set_xlim(-pad, x_hi + pad)
        span = loss_hi - loss_lo
        self.ax_loss.set_ylim(loss_lo - 0.03 * span, loss_hi + 0.03 * span)
        bg = self._backgrounds.get(key)
        if bg is None:
            self.thr.set_visible(threshold is not None)
            self.legend.legend_handles[-1].set_visible(threshold is not None)
            stop = STOP_LABELS.get(stop_metric, STOP_LABELS["accuracy"])
            self.legend.get_texts()[-1].set_text("" if threshold is None else f"stop {stop} > {threshold:g}")  # tokens.py stops on score > threshold
            self.ax_loss.set_title(loss_title, fontsize=9)
            if threshold is not None:
                self.thr.set_ydata([threshold, threshold])
            self.canvas.draw()
            bg = self._backgrounds[key] = self.canvas.copy_from_bbox(self.fig.bbox)
        return bg

    def plot(self, history: list[dict], best_step: float | None = None, threshold: float | None = None, *,
             loss_title: str = LOSS_TITLES["cross_entropy"], stop_metric: str = "accuracy"):
        from PIL import Image

        # only our own titles reach matplotlib (its mathtext would interpret "$" in arbitrary text)
        if loss_title not in LOSS_TITLES.values():
            loss_title = "loss"

        steps = [r.get("step") for r in history]
        if any(s is None for s in steps):
            steps = list(range(len(history)))

        def series(key):
            pts = [(s, r[key]) for s, r in zip(steps, history) if r.get(key) is not None and math.isfinite(r[key])]
            return [p[0] for p in pts], [p[1] for p in pts]

        data = {line: series(key) for line, key in
                ((self.loss, "loss"), (self.acc, "accuracy"), (self.prob, "mean_target_prob"))}
        losses = data[self.loss][1]
        x_hi = nice_ceiling(max([*steps, best_step or 0, 1]))
        loss_hi = nice_ceiling(max(losses)) if losses and max(losses) > 0 else 1.0
        loss_lo = 0.0 if not losses or min(losses) >= 0 else -nice_ceiling(-min(losses))
        key = (x_hi, loss_lo, loss_hi, threshold, loss_title, stop_metric)
        bg = self._background(key)
        self.canvas.restore_region(bg)
        dense = len(steps) >= 30
        for line, (x, y) in data.items():
            line.set_data(x, y)
            if line is not self.prob:
                line.set_marker("" if dense else "o")
        for line in self.best:
            line.set_visible(best_step is not None)
            if best_step is not None:
                line.set_xdata([best_step, best_step])
        for a in self.dynamic:
            if a.get_visible():
                a.axes.draw_artist(a)
        w, h = self.canvas.get_width_height()
        img = Image.frombuffer("RGBA", (w, h), self.canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
        # a line plot has few colours: a 64-colour palette is visually identical and ~3x smaller
        img = img.quantize(64, method=Image.Quantize.FASTOCTREE)
        buf = io.BytesIO()
        img.save(buf, format="PNG", compress_level=6)
        return buf.getvalue(), int(w), int(h)
