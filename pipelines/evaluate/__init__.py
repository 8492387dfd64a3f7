"""Evaluation: metrics (AUC, GAUC, logloss; :mod:`~pipelines.evaluate.metrics`), scoring a split
through the eval pipeline (:mod:`~pipelines.evaluate.evaluation`) and the no-model references
(:mod:`~pipelines.evaluate.floor`, :mod:`~pipelines.evaluate.repeat_count`).
"""
