"""SpeechBrain's HyperPyYAML read as data, never executed.

Tags become dicts: ``!new:module.Class`` -> ``{"tag": "new:module.Class", "args": {...}}``, likewise ``!name:``,
``!apply:`` and ``!ref``. ``resolve`` replaces ``!ref <key>`` (a top-level or dotted key) by the value it names;
any other reference (arithmetic, string interpolation) is a VoxflowError naming the key that holds it.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from voxflow.errors import VoxflowError

_REF = re.compile(r"^<([A-Za-z_][\w.]*)>$")


class _HyperLoader(yaml.SafeLoader):
    """A YAML loader that turns every ``!tag`` into ``{"tag": ..., "args": ...}``."""


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return {"tag": suffix, "args": value}


_HyperLoader.add_multi_constructor("!", _tagged)


def read_hyperparams(path: Path) -> dict:
    """The top-level mapping of a HyperPyYAML file; unreadable or non-mapping files are a VoxflowError."""
    try:
        hyper = yaml.load(path.read_text(), Loader=_HyperLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise VoxflowError(f"speechbrain: {path} is not valid YAML: {exc}") from exc
    if not isinstance(hyper, dict):
        raise VoxflowError(f"speechbrain: {path}: expected a mapping of hyperparameters")
    return hyper


def is_tag(value, prefix: str) -> bool:
    return isinstance(value, dict) and set(value) == {"tag", "args"} and str(value["tag"]).startswith(prefix)


def resolve(value, top: dict, where: str, depth: int = 0):
    """``value`` with every ``!ref <key>`` inside it replaced by what ``key`` holds in ``top``."""
    if depth > 20:
        raise VoxflowError(f"{where}: !ref chain too deep (a reference cycle?)")
    if is_tag(value, "ref"):
        match = _REF.match(str(value["args"]).strip())
        if not match:
            raise VoxflowError(f"{where}: !ref {value['args']!r} is not supported (voxflow reads plain <key> "
                               "references only)")
        target = top
        for part in match[1].split("."):
            if not isinstance(target, dict) or part not in target:
                raise VoxflowError(f"{where}: !ref {value['args']} names no hyperparameter")
            target = target[part]
        return resolve(target, top, where, depth + 1)
    if isinstance(value, dict):
        return {k: resolve(v, top, f"{where}.{k}", depth) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, top, f"{where}[{i}]", depth) for i, v in enumerate(value)]
    return value


def new_object(hyper: dict, key: str, known: tuple[str, ...], where: str, required: bool = True) -> dict | None:
    """The resolved constructor arguments of ``key: !new:Class`` for a Class among ``known``; an absent key is
    None unless ``required``, any other class a VoxflowError listing the known ones."""
    if key not in hyper:
        if required:
            raise VoxflowError(f"{where}: no {key!r} (expected !new:{known[0]})")
        return None
    value = hyper[key]
    cls = str(value["tag"])[len("new:"):] if is_tag(value, "new:") else None
    if cls not in known:
        shown = f"!new:{cls}" if cls else repr(value)
        raise VoxflowError(f"{where}: {key} is {shown}, which voxflow cannot import; known: {', '.join(known)}")
    args = resolve(value["args"] or {}, hyper, f"{where}: {key}")
    if not isinstance(args, dict):
        raise VoxflowError(f"{where}: {key}: expected keyword arguments, got {args!r}")
    return args
