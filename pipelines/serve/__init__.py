"""Serving: a trained checkpoint as a plain model (:mod:`~pipelines.serve.plain_model`), a
function of plain tensors (:mod:`~pipelines.serve.scorer`), its export
(:mod:`~pipelines.serve.export`, ``python -m pipelines.export``) and batch scoring
(:mod:`~pipelines.serve.score`, ``python -m pipelines.score``).
"""
