"""Report figures: training curves and diarization timelines (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from voxflow.utils.atomic import atomic_path  # noqa: E402


def plot_training_curves(logs: dict[str, pd.DataFrame], path: str | os.PathLike) -> None:
    """Loss, accuracy, validation EER, learning rate, margin and speed per epoch; stages in sequence."""
    fig, axes = plt.subplots(2, 3, figsize=(15, 7))
    for name, log in logs.items():
        x = range(1, len(log) + 1)
        for ax, col in zip(axes.flat, ("loss", "accuracy", "val_eer", "lr", "margin", "samples_per_s")):
            if col in log:
                ax.plot(x, log[col], marker="o", label=name)
            ax.set_title({"val_eer": "validation EER"}.get(col, col))
            ax.set_xlabel("epoch (all stages)")
    for boundary in _stage_boundaries(next(iter(logs.values()))) if logs else []:
        for ax in axes.flat:
            ax.axvline(boundary + 0.5, color="grey", lw=0.5, ls="--")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def _stage_boundaries(log: pd.DataFrame) -> list[int]:
    stages = log["stage"].tolist()
    return [i for i in range(1, len(stages)) if stages[i] != stages[i - 1]]


def plot_diarization(reference: pd.DataFrame, hypotheses: dict[str, pd.DataFrame], path: str | os.PathLike) -> None:
    """Per recording, the reference speaker turns above each system's hypothesis (RTTM tables)."""
    files = sorted(reference["file_id"].unique())
    rows = 1 + len(hypotheses)
    fig, axes = plt.subplots(len(files), 1, figsize=(12, 1.0 + 0.5 * rows * len(files)), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, file_id in zip(axes[:, 0], files):
        tracks = [("reference", reference)] + list(hypotheses.items())
        for y, (label, table) in enumerate(tracks):
            part = table[table.file_id == file_id]
            speakers = sorted(part.speaker.unique())
            for row in part.itertuples():
                ax.barh(y, row.duration, left=row.start, height=0.8,
                        color=cmap(speakers.index(row.speaker) % 10), edgecolor="none")
        ax.set_yticks(range(len(tracks)), [t[0] for t in tracks], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(file_id, fontsize=9)
        ax.set_xlabel("time (s)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
