"""Quality benchmark: every model variant trained the same way on a dataset, several seeds.

``python -m benchmarks.quality`` runs :mod:`benchmarks.quality.run`. The parts:
:mod:`~benchmarks.quality.variants` (the models and their overrides),
:mod:`~benchmarks.quality.data` (datasets, content, the no-model references),
:mod:`~benchmarks.quality.plan` (which runs, at which rates), :mod:`~benchmarks.quality.run`
(the child processes and the resumable results file) and :mod:`~benchmarks.quality.report`
(the choice of rate, tables and plot).
"""
