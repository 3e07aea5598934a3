"""Keyword-argument validation shared by the model, pooling and head factories."""

import inspect
from typing import Any, Iterable, Mapping

from voxflow.errors import VoxflowError


def accepted_kwargs(factory: Any, skip: Iterable[str] = ()) -> list[str]:
    """Names of the keyword parameters of ``factory`` (a class or function), minus ``skip``."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    params = inspect.signature(target).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in kinds and p.name not in ("self", *skip)]


def check_kwargs(factory: Any, kwargs: Mapping[str, Any], what: str, skip: Iterable[str] = ()) -> None:
    """Raise VoxflowError naming every key of ``kwargs`` that ``factory`` does not take."""
    valid = accepted_kwargs(factory, skip)
    unknown = [key for key in kwargs if key not in valid]
    if unknown:
        raise VoxflowError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for {what}; valid: {', '.join(valid) or '(none)'}"
        )
