"""Look up only the history rows a model reads (``train.lookup_plan``).

A lifelong batch carries N = B x L history rows, but most encoders read a few of them: SIMHard
its K same-category rows, DIN the last ``max_len``, DMGIN its G x M group slots and the
candidate's group, CiUBM its top-K by content. :class:`LookupPlanner` asks the model which
rows (``LifelongCTRModel.history_rows``, from ids alone) and keeps only those in
``batch.items`` (``restrict_item_lookup``, recorded in ``batch.history_rows``): the item
EmbeddingBagCollection then reads, and its fused optimizer updates, B + R rows instead of
B + N, and the model places the R embeddings among zeros. Outputs and gradients are those of
the full lookup (rows the encoder never reads get no gradient either way).

The planner runs where batches enter the train/eval pipelines (on the host, before the copy to
the device), so ``batch.items`` stays a plain batch attribute that TorchRec's pipelines can
input-dist ahead of the forward pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from components.model import LifelongCTRModel
from pipelines.data.batch import Batch, restrict_item_lookup


class LookupPlanner:
    """``planner(batch) -> batch`` with only the rows ``model`` reads looked up.

    ``model`` is the unsharded :class:`LifelongCTRModel` (its head: encoder and group table);
    keep a reference from before ``DistributedModelParallel``, which shards only the tables.

    Example:
        >>> from components.model import ModelConfig, Vocab
        >>> from pipelines.data.batch import random_batch
        >>> model = LifelongCTRModel(ModelConfig(encoder="DIN"), Vocab(100, 500, 20, 6, 1))
        >>> batch = random_batch([500, 20], users=100, items=500, categories=20, behaviors=6,
        ...                      num_numeric=1)
        >>> planned = LookupPlanner(model)(batch)
        >>> planned.items.stride()  # 2 candidates + the last 50 and 20 history rows
        72
    """

    def __init__(self, model: LifelongCTRModel) -> None:
        self.model = model

    def __call__(self, batch: Batch) -> Batch:
        rows = self.model.history_rows(batch)
        return batch if rows is None else restrict_item_lookup(batch, rows)

    def over(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        """Every batch of ``batches``, planned, lazily."""
        for batch in batches:
            yield self(batch)
