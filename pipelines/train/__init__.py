"""Training: the trainer (:mod:`~pipelines.train.trainer`, ``python -m pipelines.train``), its
dataclass config (:mod:`~pipelines.train.config`), model construction and sharding
(:mod:`~pipelines.train.model_setup`, :mod:`~pipelines.train.model_wrapper`), DCP checkpoints
(:mod:`~pipelines.train.checkpoint`), the lookup plan (:mod:`~pipelines.train.lookup_plan`),
process groups (:mod:`~pipelines.train.distributed`) and run provenance
(:mod:`~pipelines.train.provenance`), peak memory (:mod:`~pipelines.train.memory`). Importing the package imports none of them.
"""
