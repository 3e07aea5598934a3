"""Margin schedule (Wespeaker eq. 3): initial margin, then a ramp, then the final margin."""

import math

from torch import nn

from voxflow.errors import VoxflowError

LOG_FLOOR = 1e-3  # the log ramp is 1 - 10^(-3 p), rescaled to reach exactly 1 at p = 1


class MarginScheduler:
    """``value(epoch)``: ``initial_margin`` before ``start_epoch``, ``final_margin`` from
    ``end_epoch`` on, and in between a ramp in the progress ``p = (epoch - start) / (end - start)``:

    * ``linear``: ``p``;
    * ``log``: ``(1 - LOG_FLOOR ** p) / (1 - LOG_FLOOR)``, fast first then saturating (the shape
      of Wespeaker's "exp" increase, reaching 0.969 of the way at p = 0.5).

    ``epoch`` may be fractional (epoch + batch / batches_per_epoch) for per-step updates.
    """

    MODES = ("linear", "log")

    def __init__(
        self,
        final_margin: float,
        start_epoch: float,
        end_epoch: float,
        mode: str = "linear",
        initial_margin: float = 0.0,
    ):
        if mode not in self.MODES:
            raise VoxflowError(f"margin scheduler mode={mode!r}; valid: {', '.join(self.MODES)}")
        if end_epoch < start_epoch:
            raise VoxflowError(f"margin scheduler end_epoch={end_epoch} is before start_epoch={start_epoch}")
        self.final_margin = float(final_margin)
        self.initial_margin = float(initial_margin)
        self.start_epoch = float(start_epoch)
        self.end_epoch = float(end_epoch)
        self.mode = mode

    def progress(self, epoch: float) -> float:
        """Fraction of the ramp done at ``epoch``, in [0, 1]."""
        if epoch < self.start_epoch:
            return 0.0
        if epoch >= self.end_epoch:
            return 1.0
        p = (epoch - self.start_epoch) / (self.end_epoch - self.start_epoch)
        if self.mode == "log":
            return (1.0 - math.pow(LOG_FLOOR, p)) / (1.0 - LOG_FLOOR)
        return p

    def value(self, epoch: float) -> float:
        return self.initial_margin + (self.final_margin - self.initial_margin) * self.progress(epoch)

    def apply(self, head: nn.Module, epoch: float) -> float:
        """Write ``value(epoch)`` into ``head.margin`` and return it."""
        if not hasattr(head, "margin"):
            raise VoxflowError(f"margin scheduler: head {type(head).__name__} has no margin to schedule")
        margin = self.value(epoch)
        head.margin = margin
        return margin
