"""Figures rendered to PNG bytes on matplotlib's Agg canvas (no pyplot, no global backend switch)."""

from __future__ import annotations

import io
from pathlib import Path

DPI = 110


def new_figure(figsize: tuple[float, float] = (11.0, 4.2)):
    """A matplotlib ``Figure`` on its own Agg canvas, laid out with ``constrained``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported when used (slow import)
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_png(data: bytes, path: str | Path) -> Path:
    """Write PNG bytes to ``path`` (parents created)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out
