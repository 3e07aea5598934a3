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


# A-softmax's lambda annealing (SphereFace): meaningless for the other heads.
ASOFTMAX_ONLY = ("lambda_base", "lambda_min", "gamma", "power", "anneal")


def build_head(name: str, in_dim: int, num_classes: int, where: str = "", **kwargs) -> Head:
    """Head ``name`` mapping ``in_dim`` features to ``num_classes`` logits; ``where`` prefixes errors."""
    prefix = f"{where}: " if where else ""
    cls = HEADS.get(name)
    if cls is None:
        raise VoxflowError(f"{prefix}unknown head {name!r}; valid: {', '.join(HEADS)}")
    misplaced = [key for key in ASOFTMAX_ONLY if key in kwargs and name != "asoftmax"]
    if misplaced:
        raise VoxflowError(f"{prefix}{', '.join(misplaced)}: A-softmax's lambda annealing, which head {name!r} does "
                           "not have; remove the key(s) or use name: asoftmax")
    check_kwargs(cls, kwargs, f"{prefix}head {name!r}", skip=("in_dim", "num_classes"))
    return cls(int(in_dim), int(num_classes), **kwargs)
