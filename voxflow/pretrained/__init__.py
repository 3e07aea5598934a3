"""Pretrained models from other toolkits, written as voxflow models (``voxflow model import``).

Each source is a module of this package with ``import_source(source, out_dir) -> dict``: it maps the source's
weights onto a network of voxflow's registry and writes it with ``voxflow.pretrained.common.write_model``.
``voxflow`` (module ``native``) re-imports a model of an earlier voxflow run, to fine-tune or re-export it.
"""

from __future__ import annotations

import importlib
import os

from voxflow.errors import VoxflowError

SOURCES = ("wespeaker", "speechbrain", "resemblyzer", "voxflow")
_MODULES = {"voxflow": "native"}


def import_model(kind: str, source: str | os.PathLike | None, out_dir: str | os.PathLike) -> dict:
    """Import the model at ``source`` (a file or directory of toolkit ``kind``) into ``out_dir``; its meta."""
    if kind not in SOURCES:
        raise VoxflowError(f"unknown model source {kind!r}; known: {', '.join(SOURCES)}")
    return importlib.import_module(f"voxflow.pretrained.{_MODULES.get(kind, kind)}").import_source(source, out_dir)
