"""Head factory: ``build_head(name, in_dim, num_classes, **kwargs)`` and ``head_names()``."""

from typing import Dict, List

from voxflow.errors import VoxflowError
from voxflow.losses.heads import AAMSoftmaxHead, AMSoftmaxHead, ASoftmaxHead, Head, SoftmaxHead
from voxflow.models.options import check_kwargs

HEADS: Dict[str, type] = {
    "softmax": SoftmaxHead,
    "asoftmax": ASoftmaxHead,
    "amsoftmax": AMSoftmaxHead,
    "aamsoftmax": AAMSoftmaxHead,
}


def head_names() -> List[str]:
    """The valid head names."""
    return list(HEADS)


def build_head(name: str, in_dim: int, num_classes: int, **kwargs) -> Head:
    """Head ``name`` mapping ``in_dim`` features to ``num_classes`` logits."""
    cls = HEADS.get(name)
    if cls is None:
        raise VoxflowError(f"unknown head {name!r}; valid: {', '.join(HEADS)}")
    check_kwargs(cls, kwargs, f"head {name!r}", skip=("in_dim", "num_classes"))
    return cls(int(in_dim), int(num_classes), **kwargs)
