"""Tables and bar charts of a cell experiment (``experiments.cells``): every bar carries
its 95 % interval, and a published number, where the paper gives one, is drawn beside ours
as a hollow marker (it comes from another dataset and scale: compare signs and orderings,
not levels)."""

from __future__ import annotations

from typing import Mapping, Sequence


def format_cells(cells: Mapping[str, Mapping[str, Mapping]], scores: Sequence[str], *,
                 percent: Sequence[str] = ("linear", "knn")) -> str:
    """A text table: one line per cell, ``value ± 1.96·stderr`` per score (accuracies in
    %, where the score's name is in ``percent`` or starts with ``train_acc``/``test_acc``;
    information in nats)."""
    def pct(name: str) -> bool:
        return name in percent or name.startswith(("train_acc", "test_acc"))

    width = max(len(c) for c in cells) + 2
    head = "".join(f"{s[:22]:>24}" for s in scores)
    lines = [f"{'cell':<{width}}{head}"]
    for cell, vals in cells.items():
        parts = []
        for s in scores:
            if s not in vals:
                parts.append(f"{'-':>24}")
                continue
            f = 100.0 if pct(s) else 1.0
            v, h = vals[s]["value"] * f, 1.959963984540054 * vals[s]["stderr"] * f
            parts.append(f"{v:>15.2f} ± {h:<6.2f}")
        lines.append(f"{cell:<{width}}" + "".join(parts))
    return "\n".join(lines)


def bar_panel(ax, cells: Mapping[str, Mapping[str, Mapping]], groups: Sequence[str],
              series: Sequence[str], cell_name, score: str, *, scale: float = 1.0,
              published: Mapping[tuple[str, str], float] | None = None,
              title: str = "", ylabel: str = "") -> None:
    """Grouped bars of ``score``: one group per ``groups`` item, one bar per ``series``
    item, the cell of (group, series) named by ``cell_name(group, series)``; error bars
    are 95 % intervals; ``published[(group, series)]`` is drawn as a hollow diamond."""
    import numpy as np

    n = len(series)
    w = 0.8 / n
    x = np.arange(len(groups))
    for j, s in enumerate(series):
        vals, errs, pos = [], [], []
        for i, g in enumerate(groups):
            c = cells.get(cell_name(g, s), {}).get(score)
            if c is None:
                continue
            vals.append(c["value"] * scale)
            errs.append(1.959963984540054 * c["stderr"] * scale)
            pos.append(x[i] + (j - (n - 1) / 2) * w)
        bars = ax.bar(pos, vals, w * 0.9, yerr=errs, capsize=3, label=s)
        for i, g in enumerate(groups):
            p = (published or {}).get((g, s))
            if p is not None:
                ax.plot(x[i] + (j - (n - 1) / 2) * w, p * scale, marker="D", mfc="none",
                        mec="k", ms=7, ls="none",
                        color=bars.patches[0].get_facecolor() if bars.patches else "k")
    ax.set_xticks(x, groups, fontsize=8)
    ax.set(title=title, ylabel=ylabel)
    ax.axhline(0, color="0.6", lw=0.8)


__all__ = ["bar_panel", "format_cells"]
