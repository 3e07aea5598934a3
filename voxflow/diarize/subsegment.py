"""Wespeaker sub-segmentation: cut speech regions into overlapping fixed-length windows."""

from __future__ import annotations

import math

from voxflow.errors import VoxflowError

_EPS = 1e-9  # seconds; absorbs float error in (end - start) / shift


def subsegments(regions, window_s: float = 1.5, shift_s: float = 0.75) -> list[tuple[float, float]]:
    """Windows ``(start, end)`` over each region ``(start, end)``, in order.

    Windows start at region_start + i * shift_s and last window_s, truncated at the region end; they
    are emitted until one reaches the region end, so the last window ends exactly there and is longer
    than window_s - shift_s. A region no longer than window_s is a single segment.
    """
    if not (window_s > 0 and shift_s > 0):
        raise VoxflowError(f"window_s={window_s!r} and shift_s={shift_s!r} must be positive")
    out: list[tuple[float, float]] = []
    for i, region in enumerate(regions):
        try:
            start, end = (float(v) for v in region)
        except (TypeError, ValueError) as exc:
            raise VoxflowError(f"regions[{i}]: expected a (start, end) pair, got {region!r}") from exc
        if not (math.isfinite(start) and math.isfinite(end) and end > start):
            raise VoxflowError(f"regions[{i}]: need finite start < end, got ({start}, {end})")
        length = end - start
        n = 1 if length <= window_s + _EPS else 1 + math.ceil((length - window_s) / shift_s - _EPS)
        for j in range(n):
            s = start + j * shift_s
            out.append((s, end if j == n - 1 else min(s + window_s, end)))
    return out
