"""voxflow: training and evaluating deep speaker embeddings as one reproducible DAG."""

__version__ = "0.1.0"
