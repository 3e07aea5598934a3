"""Classification heads (softmax, A-, AM-, AAM-softmax) and the margin scheduler."""

from voxflow.losses.heads import AAMSoftmaxHead, AMSoftmaxHead, ASoftmaxHead, Head, SoftmaxHead
from voxflow.losses.registry import build_head, head_names
from voxflow.losses.scheduler import MarginScheduler

__all__ = [
    "AAMSoftmaxHead",
    "AMSoftmaxHead",
    "ASoftmaxHead",
    "Head",
    "MarginScheduler",
    "SoftmaxHead",
    "build_head",
    "head_names",
]
