"""Calibration plots as PNG bytes (matplotlib, imported lazily with the non-interactive Agg backend).

The functions return bytes and write nothing: the stage stores them through the artifact store.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from rluf_ray.conformal.calibration import Calibration


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported on first use: the package does not need it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def plot_surface(surfaces: dict[float, np.ndarray], values: list[float], cals: list[Calibration]) -> bytes:
    """Draw heat maps of the grid-search objective (mean set size) over (w1, w2), one per alpha.

    The chosen weights are marked with a red star.

    Args:
        surfaces: Alpha -> the objective, shape ``(V, V)`` (w1 on rows, w2 on columns).
        values: The V grid values of each weight (the chosen weights must be among them).
        cals: The calibration of each alpha, one per surface, in panel order.

    Returns:
        The PNG bytes.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(surfaces), figsize=(4.5 * len(surfaces), 4), squeeze=False)
    for ax, c in zip(axes[0], cals, strict=True):
        im = ax.imshow(surfaces[c.alpha], origin="lower", cmap="viridis")
        ticks = range(0, len(values), max(1, len(values) // 6))
        ax.set_xticks(list(ticks), [f"{values[t]:g}" for t in ticks])
        ax.set_yticks(list(ticks), [f"{values[t]:g}" for t in ticks])
        ax.set_xlabel("w2 (similarity)")
        ax.set_ylabel("w1 (entropy)")
        ax.set_title(f"alpha={c.alpha}: mean set size")
        ax.plot([values.index(c.w2)], [values.index(c.w1)], "r*", markersize=12)
        fig.colorbar(im, ax=ax)
    data = _png(fig)
    plt.close(fig)
    return data


def plot_hist(sizes: dict[float, np.ndarray]) -> bytes:
    """Draw a histogram of test-prompt set sizes per alpha.

    Args:
        sizes: Alpha -> the prediction set size (unique answers) of each test prompt, shape ``(N,)``.

    Returns:
        The PNG bytes.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    top = max((int(s.max()) for s in sizes.values() if s.size), default=0)
    bins = [b - 0.5 for b in range(top + 2)]
    for alpha, s in sorted(sizes.items()):
        ax.hist(s, bins=bins, alpha=0.5, label=f"alpha={alpha}")
    ax.set_xlabel("prediction set size (unique answers)")
    ax.set_ylabel("test prompts")
    ax.legend()
    data = _png(fig)
    plt.close(fig)
    return data
