"""Overlap assignment: a sub-segment whose second-closest speaker is nearly as close as its own also gives
that second speaker its stretch of time, so output turns of two speakers may overlap."""

from __future__ import annotations

import numpy as np

from voxflow.cluster.kmeans import normalize_rows
from voxflow.errors import VoxflowError


def centroid_similarities(X, labels) -> np.ndarray:
    """(N, K) cosine similarity of each (length-normalised) embedding to each cluster's centre, clusters
    0..K-1. A centre is the mean of the cluster's more typical half (members at least as similar to the
    cluster's mean as its median member), so the two-voice windows a cluster holds do not pull it towards
    the other voice."""
    Xn = normalize_rows(np.asarray(X, dtype=np.float64))
    labels = np.asarray(labels)
    centres = []
    for k in range(int(labels.max()) + 1):
        members = Xn[labels == k]
        sim = members @ normalize_rows(members.mean(axis=0, keepdims=True))[0]
        centres.append(members[sim >= np.median(sim)].mean(axis=0))
    return Xn @ normalize_rows(np.stack(centres)).T


def second_speakers(X, labels, margin: float) -> np.ndarray:
    """Per sub-segment, the cluster it also belongs to (-1: none): its second-closest cluster mean when that is
    within cosine similarity ``margin`` of its own cluster's mean (a window spanning two voices lies between
    their clusters). Needs two clusters or more; with one, all -1."""
    if not (margin is not None and np.isfinite(margin) and margin >= 0):
        raise VoxflowError(f"overlap_margin={margin!r} must be a finite number >= 0")
    labels = np.asarray(labels)
    out = np.full(len(labels), -1, dtype=np.int64)
    if len(labels) == 0 or labels.max() < 1:
        return out
    sims = centroid_similarities(X, labels)
    own = sims[np.arange(len(labels)), labels]
    sims[np.arange(len(labels)), labels] = -np.inf
    other = np.argmax(sims, axis=1)
    near = sims[np.arange(len(labels)), other] >= own - margin
    out[near] = other[near]
    return out


def merge_pieces(pieces, merge_gap_s: float) -> list[tuple[float, float, int]]:
    """Pieces (start, end, speaker) united per speaker (pieces closer than ``merge_gap_s`` joined), by start."""
    out = []
    for k in sorted({p[2] for p in pieces}):
        spans = sorted((a, b) for a, b, s in pieces if s == k and b > a)
        merged: list[list[float]] = []
        for a, b in spans:
            if merged and a - merged[-1][1] < merge_gap_s:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out += [(a, b, k) for a, b in merged]
    return sorted(out, key=lambda p: (p[0], p[1], p[2]))
