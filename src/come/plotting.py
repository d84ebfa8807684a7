"""Figures drawn off-screen and written to files: one place for every plot.

Figures are built on ``matplotlib.figure.Figure`` directly, never through pyplot, so no global backend
is switched: a notebook's inline plots keep working after ``come`` has drawn.
"""

from __future__ import annotations

from pathlib import Path

from .metrics.intervals import error_bars


def subplots(*args, figsize: tuple[float, float] | None = None, **kwargs):
    """A new figure and its axes, as ``pyplot.subplots`` gives them."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Lay out and write a figure (creating the folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def bar_chart(entries: dict[str, dict], ylabel: str, path: str | Path, title: str | None = None,
              ylim: tuple[float, float] | None = None, chance: float | None = None) -> Path:
    """Bars of the ``mean`` of each entry with its ``ci95`` interval, optionally a dashed chance line."""
    names = list(entries)
    means = [entries[n]["mean"] for n in names]
    fig, ax = subplots(figsize=(1.15 * len(names) + 1.8, 3.2))
    ax.bar(names, means, yerr=error_bars([entries[n] for n in names]), capsize=3, color="#4c72b0")
    if chance is not None:
        ax.axhline(chance, color="grey", ls="--", label=f"chance {chance:.2f}")
        ax.legend(loc="upper left")
    ax.set_ylim(*(ylim or (min(means) - 3, max(means) + 2)))
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path, dpi=120)
