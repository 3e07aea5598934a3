"""Scoring back-ends: cosine, LDA + PLDA, AS-Norm / S-Norm, logistic calibration.

Modules: ``cosine``, ``plda`` (with ``lda``), ``norm``, ``calibration``; ``pairs`` holds the
shared trial-lookup and bilinear-scoring machinery, ``npz`` the model-file format.
"""
