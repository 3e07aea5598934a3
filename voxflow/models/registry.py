"""Model factory: ``build(name, feat_dim, embed_dim, **kwargs)`` and ``names()``."""

from typing import Callable, Dict, List, Optional

from torch import nn

from voxflow.errors import VoxflowError
from voxflow.models.catalog import FACTORIES
from voxflow.models.options import check_kwargs

_MODELS: Dict[str, Callable[..., nn.Module]] = dict(FACTORIES)


def register(name: str) -> Callable:
    """Decorator adding a model factory (taking feat_dim, embed_dim, **options) under ``name``; the built-in
    models are in :mod:`voxflow.models.catalog`."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = factory
        return factory

    return wrap


def names() -> List[str]:
    """The valid model names, sorted."""
    return sorted(_MODELS)


def build(name: str, feat_dim: int, embed_dim: Optional[int] = None, **kwargs) -> nn.Module:
    """Model ``name`` for ``feat_dim``-wide features; ``embed_dim=None`` keeps the paper's width."""
    factory = _MODELS.get(name)
    if factory is None:
        raise VoxflowError(f"unknown model {name!r}; valid: {', '.join(names())}")
    check_kwargs(factory, kwargs, f"model {name!r}", skip=("feat_dim", "embed_dim"))
    if embed_dim is not None:
        kwargs["embed_dim"] = int(embed_dim)
    return factory(feat_dim=int(feat_dim), **kwargs)

