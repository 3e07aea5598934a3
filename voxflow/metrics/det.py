"""DET plots: miss vs false-alarm rate on normal-deviate (probit) axes, several systems overlaid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import norm

from voxflow.errors import VoxflowError
from voxflow.metrics.verification import _eer_from_points, _operating_points, validate_scores
from voxflow.utils.atomic import atomic_path

TICKS_PERCENT = (0.1, 0.5, 1, 2, 5, 10, 20, 40)
_LIMITS = (norm.ppf(0.0005), norm.ppf(0.5))  # axes span 0.05 % .. 50 %
_SUFFIXES = (".png", ".svg")


def _thin(x: np.ndarray, y: np.ndarray, step: float) -> np.ndarray:
    """Indices of points kept so that consecutive kept points are about ``step`` apart along the curve."""
    if len(x) <= 2:
        return np.arange(len(x))
    seg = np.hypot(np.diff(x), np.diff(y))
    arclen = np.r_[0.0, np.cumsum(seg)]
    bucket = np.floor(arclen / step)
    keep = np.r_[True, bucket[1:] != bucket[:-1]]
    keep[-1] = True
    return np.flatnonzero(keep)


def det_points(scores, labels) -> tuple[np.ndarray, np.ndarray, float]:
    """Probit-space DET curve (x = probit P_fa, y = probit P_miss, rates clipped to the axes) and the EER."""
    s, lab = validate_scores(scores, labels)
    points = _operating_points(s, lab)
    eer, _ = _eer_from_points(*points)
    _, p_fa, p_miss = points
    lo, hi = norm.cdf(_LIMITS[0] - 1.0), norm.cdf(_LIMITS[1] + 1.0)  # clip just outside the visible range
    x = norm.ppf(np.clip(p_fa, lo, hi))
    y = norm.ppf(np.clip(p_miss, lo, hi))
    keep = _thin(x, y, step=(_LIMITS[1] - _LIMITS[0]) / 2000.0)
    return x[keep], y[keep], eer


def plot_det(systems: dict, path: str | os.PathLike, title: str | None = None) -> None:
    """Plot the DET curves of ``systems`` ({name: (scores, labels)}) with EER points marked.

    Written atomically as PNG or SVG according to the suffix of ``path``.
    """
    target = Path(path)
    if target.suffix.lower() not in _SUFFIXES:
        raise VoxflowError(f"{target}: DET plot must be .png or .svg, got suffix {target.suffix!r}")
    if not systems:
        raise VoxflowError(f"{target}: no systems to plot")

    fig = Figure(figsize=(6.0, 6.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, (scores, labels) in systems.items():
        try:
            x, y, eer = det_points(scores, labels)
        except VoxflowError as exc:
            raise VoxflowError(f"{target}: system {name!r}: {exc}") from exc
        (line,) = ax.plot(x, y, linewidth=1.5, label=f"{name} (EER {100 * eer:.2f}%)")
        z = norm.ppf(eer) if eer > 0 else _LIMITS[0] - 1.0
        ax.plot([z], [z], marker="o", markersize=6, color=line.get_color(), linestyle="none")

    ticks = norm.ppf(np.asarray(TICKS_PERCENT) / 100.0)
    labels = [f"{t:g}" for t in TICKS_PERCENT]
    ax.plot(_LIMITS, _LIMITS, color="0.7", linewidth=0.8, linestyle="--")  # P_miss = P_fa
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlim(*_LIMITS)
    ax.set_ylim(*_LIMITS)
    ax.set_xlabel("False alarm rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.grid(True, linewidth=0.5, alpha=0.6)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=target.suffix.lower().lstrip("."), dpi=150)
