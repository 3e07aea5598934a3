"""voxflow: training and evaluating deep speaker embeddings as one reproducible DAG.

``voxflow.load_model(path)`` (``voxflow.api``) loads an exported model; it is imported on first use, so that
``import voxflow`` stays light (no torch).
"""

__version__ = "0.1.0"
__all__ = ["load_model"]


def __getattr__(name):
    if name == "load_model":
        from voxflow.api import load_model

        return load_model
    raise AttributeError(f"module 'voxflow' has no attribute {name!r}")
